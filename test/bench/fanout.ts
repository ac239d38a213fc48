import { monitorEventLoopDelay } from 'node:perf_hooks';
import { RelayClient, type Filter, type NostrEvent, type SubHandlers } from './client.ts';
import { RawSubscriber } from './raw-subscriber.ts';
import { perSecond, ReasonTally, round, Samples, type Summary } from './stats.ts';

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
};

/** What fan-out needs of a subscriber: either client. */
type Subscriber = {
  subscribe(subId: string, filters: Filter[], handlers: SubHandlers): void;
  close(): void;
  terminate(): void;
  readonly droppedByRelay: boolean;
};

export type FanoutResult = {
  subscribers: number;
  subscribers_ready: number;
  subscribers_by_author: number;
  subscribe_seconds: number;
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
 * `subscribers` connections each hold one REQ that matches every published event; one more
 * connection publishes at a fixed rate. Delivery latency is publish send → receipt at a
 * subscriber (one process, one clock: the send time is kept by sequence number, which the
 * event's content carries).
 */
export async function runFanout(opts: FanoutOptions): Promise<FanoutResult> {
  const n = opts.events.length;
  const publisherPubkey = opts.events[0].pubkey;
  const sendTimes = new Float64Array(n);
  const latency = new Samples();
  const marker = Buffer.from(`"fanout ${opts.runId} `);
  let delivered = 0;
  let duplicates = 0;
  let firstSend = 0;
  let lastReceipt = 0;

  const subT0 = performance.now();
  const subs: Subscriber[] = opts.wsSubscribers
    ? await connectSpread(opts.url, opts.subscribers, opts.perAddress)
    : await connectSpread(opts.url, opts.subscribers, opts.perAddress, 50, 0, RawSubscriber.connect);
  const publisher = await RelayClient.connect(opts.url);
  const got = subs.map(() => new Uint8Array(n));
  let ready = 0;
  let byAuthor = 0;
  try {
    // Subscribe everyone and wait for every EOSE (nothing is stored for this run's tag yet).
    await new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, 30_000);
      let answered = 0;
      const answer = () => {
        if (++answered === subs.length) {
          clearTimeout(timer);
          resolve();
        }
      };
      subs.forEach((client, i) => {
        const mine = got[i];
        const useAuthor = opts.authorFilterEvery > 0 && i % opts.authorFilterEvery === opts.authorFilterEvery - 1;
        if (useAuthor) byAuthor++;
        const filter: Filter = useAuthor ? { authors: [publisherPubkey], kinds: [1] } : { kinds: [1], '#t': [opts.tTag] };
        client.subscribe('fan', [filter], {
          onEvent: (raw) => {
            const now = performance.now();
            const at = raw.indexOf(marker);
            if (at < 0) return;
            let seq = 0;
            for (let p = at + marker.length, c = raw[p]; c >= 0x30 && c <= 0x39; c = raw[++p]) seq = seq * 10 + (c - 0x30);
            if (seq >= n) return;
            if (mine[seq]) {
              duplicates++;
              return;
            }
            mine[seq] = 1;
            delivered++;
            lastReceipt = now;
            if (sendTimes[seq] > 0) latency.push(now - sendTimes[seq]);
          },
          onEose: () => {
            ready++;
            answer();
          },
          onClosed: answer,
        });
      });
    });
    const subscribeSeconds = (performance.now() - subT0) / 1000;
    process.stderr.write(`[bench] fan-out: ${ready}/${subs.length} subscribers ready in ${subscribeSeconds.toFixed(1)} s\n`);

    // Publish at a fixed rate, catching up if a timer fires late.
    const loop = monitorEventLoopDelay({ resolution: 10 });
    loop.enable();
    const acks = new Samples();
    const refusals = new ReasonTally();
    const okIds = new Set<string>();
    const interval = 1000 / opts.rate;
    const acked: Promise<void>[] = [];
    const t0 = performance.now();
    firstSend = t0;
    for (let i = 0; i < n; i++) {
      const due = t0 + i * interval;
      const wait = due - performance.now();
      if (wait > 1) await sleep(wait);
      const ev = opts.events[i];
      sendTimes[i] = performance.now();
      acked.push(
        publisher.publish(ev).then((r) => {
          acks.push(r.ms);
          if (r.ok) okIds.add(ev.id);
          else refusals.add(r.message);
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
      if (acksDone && delivered >= ready * okIds.size) break;
      if (delivered !== lastCount || acks.length !== lastAcks) {
        lastCount = delivered;
        lastAcks = acks.length;
        quietSince = performance.now();
      } else if (performance.now() - quietSince > 3000) break;
      await sleep(50);
    }
    const expected = ready * okIds.size;
    loop.disable();

    return {
      subscribers: subs.length,
      subscribers_ready: ready,
      subscribers_by_author: byAuthor,
      subscribe_seconds: round(subscribeSeconds, 2),
      events: n,
      events_accepted: okIds.size,
      events_unacknowledged: n - acks.length,
      target_rate: opts.rate,
      publish_seconds: round(publishMs / 1000, 3),
      publish_rate: perSecond(n, publishMs),
      publish_ack_ms: acks.summary(),
      publish_refusals: refusals.toJSON(),
      expected_deliveries: expected,
      delivered,
      missing: Math.max(0, expected - delivered),
      duplicates,
      subscribers_complete: got.filter((g) => g.every((x, i) => x === 1 || !okIds.has(opts.events[i].id))).length,
      subscribers_dropped: subs.filter((c) => c.droppedByRelay).length,
      deliveries_per_s: perSecond(delivered, (lastReceipt || performance.now()) - firstSend),
      delivery_ms: latency.summary(),
      bench_loop_delay_ms: {
        p50: round(loop.percentile(50) / 1e6),
        p99: round(loop.percentile(99) / 1e6),
        max: round(loop.max / 1e6),
      },
    };
  } finally {
    publisher.close();
    for (const s of subs) s.close();
  }
}
