import { monitorEventLoopDelay } from 'node:perf_hooks';
import { Worker } from 'node:worker_threads';
import { RelayClient, type NostrEvent } from './client.ts';
import { ANSWERED, DELIVERED, READY, type ReceiverJob, type ReceiverResult } from './fanout-worker.ts';
import { perSecond, ReasonTally, round, Samples, summarize, type Summary } from './stats.ts';

export type FanoutOptions = {
  url: string;
  subscribers: number;
  /** Pre-signed events, each tagged ['t', tTag], content `fanout <runId> <seq>`. */
  events: NostrEvent[];
  runId: string;
  tTag: string;
  /** Events published per second. */
  rate: number;
  /** Every n-th subscriber filters by author instead of by tag (0: none). */
  authorFilterEvery: number;
  /** How long to wait for stragglers after the last publish. */
  drainMs: number;
  /** Subscribers per loopback source address (below the relay's per-address connection limit). */
  perAddress: number;
  /**
   * Subscribers on `ws` clients (RelayClient) instead of raw sockets (RawSubscriber, the
   * default): `ws` costs the bench several times more per delivery.
   */
  wsSubscribers?: boolean;
  /** Threads the subscribers are spread over (default 2), besides the publisher's. */
  receivers?: number;
};

export type FanoutResult = {
  subscribers: number;
  subscribers_ready: number;
  subscribers_by_author: number;
  subscribe_seconds: number;
  receiving_threads: number;
  events: number;
  events_accepted: number;
  events_unacknowledged: number;
  target_rate: number;
  publish_seconds: number;
  publish_rate: number;
  publish_ack_ms: Summary;
  publish_refusals: Record<string, { count: number; example: string }>;
  expected_deliveries: number;
  delivered: number;
  missing: number;
  duplicates: number;
  subscribers_complete: number;
  subscribers_dropped: number;
  deliveries_per_s: number;
  delivery_ms: Summary;
  /** Event-loop delay of the bench process meanwhile: high values mean the bench, not the relay, was the bottleneck. */
  bench_loop_delay_ms: { p50: number; p99: number; max: number };
};

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * The i-th source address of a spread of loopback addresses (127.20.0.1, 127.20.0.2, ...): a
 * relay limits connections per address (200 by default), and every 127/8 address reaches it.
 */
export function sourceAddress(i: number): string {
  return `127.20.${Math.floor(i / 250)}.${(i % 250) + 1}`;
}

/**
 * Opens `n` connections, `perAddress` from each source address in turn (counting from
 * connection number `first`, to continue a spread), at most `parallel` handshakes at a time. On a failure every connection opened so far is closed and the error
 * says how far it got (the file-descriptor limit, the relay's connection limit...).
 */
export async function connectSpread<T extends { terminate(): void } = RelayClient>(
  url: string,
  n: number,
  perAddress: number,
  parallel = 50,
  first = 0,
  open: (url: string, timeoutMs: number, localAddress: string) => Promise<T> = RelayClient.connect as never,
): Promise<T[]> {
  const out: T[] = new Array(n);
  let next = 0;
  let opened = 0;
  let failure: Error | null = null;
  const worker = async () => {
    while (next < n && !failure) {
      const i = next++;
      try {
        out[i] = await open(url, 10_000, sourceAddress(Math.floor((first + i) / perAddress)));
        opened++;
      } catch (err) {
        failure ??= err as Error;
      }
    }
  };
  // Every worker stops at the first failure; once they all have, nothing is left half-open.
  await Promise.all(Array.from({ length: Math.min(parallel, n) }, worker));
  if (failure) {
    for (const c of out) c?.terminate();
    throw new Error(`opened ${opened} of ${n} connections, then: ${(failure as Error).message}`);
  }
  return out;
}

/**
 * `subscribers` connections each hold one REQ that matches every published event, spread over
 * `receivers` threads of their own (fanout-worker.ts); one more connection, on this thread,
 * publishes at a fixed rate. Delivery latency is publish send → receipt at a subscriber (one
 * process, one clock: absolute times, the send time kept by sequence number, which the event's
 * content carries).
 */
export async function runFanout(opts: FanoutOptions): Promise<FanoutResult> {
  const n = opts.events.length;
  const sendTimesShared = new SharedArrayBuffer(8 * n);
  const sendTimes = new Float64Array(sendTimesShared);
  const threads = Math.max(1, Math.min(opts.receivers ?? 2, opts.subscribers));
  const counters: Int32Array[] = [];
  const receivers: Worker[] = [];
  const subT0 = performance.now();
  const publisher = await RelayClient.connect(opts.url);
  try {
    // Each thread opens and subscribes its share; then every subscription's EOSE (nothing is
    // stored for this run's tag yet) or CLOSED is awaited.
    await Promise.all(
      Array.from({ length: threads }, (_, t) => {
        const first = Math.floor((t * opts.subscribers) / threads);
        const count = Math.floor(((t + 1) * opts.subscribers) / threads) - first;
        const shared = new SharedArrayBuffer(4 * 3);
        counters.push(new Int32Array(shared));
        const job: ReceiverJob = {
          url: opts.url,
          first,
          count,
          perAddress: opts.perAddress,
          events: n,
          marker: `"fanout ${opts.runId} `,
          publisherPubkey: opts.events[0].pubkey,
          tTag: opts.tTag,
          authorFilterEvery: opts.authorFilterEvery,
          sendTimes: sendTimesShared,
          counters: shared,
          ws: opts.wsSubscribers === true,
        };
        const w = startReceiver(job);
        receivers.push(w);
        return new Promise<void>((resolve, reject) => {
          w.once('message', (m: { connected?: boolean; error?: string }) => (m.connected ? resolve() : reject(new Error(m.error))));
          w.once('error', reject);
        });
      }),
    );
    const sum = (i: number) => counters.reduce((a, c) => a + Atomics.load(c, i), 0);
    const answerDeadline = performance.now() + 30_000;
    while (sum(ANSWERED) < opts.subscribers && performance.now() < answerDeadline) await sleep(20);
    const ready = sum(READY);
    const subscribeSeconds = (performance.now() - subT0) / 1000;
    process.stderr.write(
      `[bench] fan-out: ${ready}/${opts.subscribers} subscribers ready in ${subscribeSeconds.toFixed(1)} s (${threads} receiving threads)\n`,
    );

    // Publish at a fixed rate, catching up if a timer fires late.
    const loop = monitorEventLoopDelay({ resolution: 10 });
    loop.enable();
    const acks = new Samples();
    const refusals = new ReasonTally();
    const accepted = new Uint8Array(n);
    let okCount = 0;
    const interval = 1000 / opts.rate;
    const acked: Promise<void>[] = [];
    const t0 = performance.now();
    const firstSend = performance.timeOrigin + t0;
    for (let i = 0; i < n; i++) {
      const due = t0 + i * interval;
      const wait = due - performance.now();
      if (wait > 1) await sleep(wait);
      const ev = opts.events[i];
      sendTimes[i] = performance.timeOrigin + performance.now();
      acked.push(
        publisher.publish(ev).then((r) => {
          acks.push(r.ms);
          if (r.ok) {
            accepted[i] = 1;
            okCount++;
          } else refusals.add(r.message);
        }),
      );
    }
    const publishMs = performance.now() - t0;

    // Wait for the OKs and the deliveries still on their way: until every accepted event reached
    // every ready subscriber, or nothing has arrived for 3 s, or drainMs has passed.
    let acksDone = false;
    void Promise.all(acked).then(() => (acksDone = true));
    const drainDeadline = performance.now() + opts.drainMs;
    let lastCount = -1;
    let lastAcks = -1;
    let quietSince = performance.now();
    while (performance.now() < drainDeadline) {
      const delivered = sum(DELIVERED);
      if (acksDone && delivered >= ready * okCount) break;
      if (delivered !== lastCount || acks.length !== lastAcks) {
        lastCount = delivered;
        lastAcks = acks.length;
        quietSince = performance.now();
      } else if (performance.now() - quietSince > 3000) break;
      await sleep(50);
    }
    loop.disable();
    const delivered = sum(DELIVERED);
    const expected = ready * okCount;
    const results = await Promise.all(
      receivers.map(
        (w) =>
          new Promise<ReceiverResult>((resolve, reject) => {
            w.once('message', (m: { result?: ReceiverResult; error?: string }) =>
              m.result ? resolve(m.result) : reject(new Error(m.error)),
            );
            w.postMessage(accepted);
          }),
      ),
    );
    const lastReceipt = Math.max(0, ...results.map((r) => r.lastReceipt));
    const latencies = new Float64Array(results.reduce((a, r) => a + r.latencies.length, 0));
    let at = 0;
    for (const r of results) {
      latencies.set(r.latencies, at);
      at += r.latencies.length;
    }

    return {
      subscribers: opts.subscribers,
      subscribers_ready: ready,
      subscribers_by_author: results.reduce((a, r) => a + r.byAuthor, 0),
      subscribe_seconds: round(subscribeSeconds, 2),
      receiving_threads: threads,
      events: n,
      events_accepted: okCount,
      events_unacknowledged: n - acks.length,
      target_rate: opts.rate,
      publish_seconds: round(publishMs / 1000, 3),
      publish_rate: perSecond(n, publishMs),
      publish_ack_ms: acks.summary(),
      publish_refusals: refusals.toJSON(),
      expected_deliveries: expected,
      delivered,
      missing: Math.max(0, expected - delivered),
      duplicates: results.reduce((a, r) => a + r.duplicates, 0),
      subscribers_complete: results.reduce((a, r) => a + r.complete, 0),
      subscribers_dropped: results.reduce((a, r) => a + r.dropped, 0),
      deliveries_per_s: perSecond(delivered, (lastReceipt || performance.timeOrigin + performance.now()) - firstSend),
      delivery_ms: summarize(latencies),
      bench_loop_delay_ms: {
        p50: round(loop.percentile(50) / 1e6),
        p99: round(loop.percentile(99) / 1e6),
        max: round(loop.max / 1e6),
      },
    };
  } finally {
    publisher.close();
    await Promise.all(receivers.map((w) => w.terminate()));
  }
}

/** A receiving thread (fanout-worker.ts), under tsx as this process is. */
function startReceiver(job: ReceiverJob): Worker {
  const bootstrap = `
    const { register } = await import(${JSON.stringify(import.meta.resolve('tsx/esm/api'))});
    register();
    await import(${JSON.stringify(new URL('./fanout-worker.ts', import.meta.url).href)});
  `;
  return new Worker(bootstrap, { eval: true, type: 'module', workerData: { fanoutReceiver: job } } as never);
}
