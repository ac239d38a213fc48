import { parentPort, workerData } from 'node:worker_threads';
import { RelayClient, type Filter, type SubHandlers } from './client.ts';
import { connectSpread } from './fanout.ts';
import { RawSubscriber } from './raw-subscriber.ts';
import { Samples } from './stats.ts';

/**
 * One receiving thread of the fan-out phase (fanout.ts): its share of the subscribers, each with
 * one REQ, counting deliveries and their latency. Send times come from the publishing thread
 * through shared memory, as absolute times (`timeOrigin + now()`: one clock for every thread of
 * the process); live counts go back the same way (Atomics), the latencies at the end.
 */
export type ReceiverJob = {
  url: string;
  /** This thread's subscribers: numbers `first` .. `first + count - 1` of the whole spread. */
  first: number;
  count: number;
  perAddress: number;
  /** Events to be published: the content of number `seq` carries `marker` then `seq`. */
  events: number;
  marker: string;
  publisherPubkey: string;
  tTag: string;
  authorFilterEvery: number;
  /** Float64Array of absolute send times by sequence number, written by the publisher. */
  sendTimes: SharedArrayBuffer;
  /** Int32Array: [delivered, ready (EOSE), answered (EOSE or CLOSED)] for this thread. */
  counters: SharedArrayBuffer;
  /** `ws` clients instead of raw sockets. */
  ws: boolean;
};

/** What a receiving thread needs of a subscriber: either client. */
type Subscriber = {
  subscribe(subId: string, filters: Filter[], handlers: SubHandlers): void;
  close(): void;
  readonly droppedByRelay: boolean;
};
export type ReceiverResult = {
  byAuthor: number;
  duplicates: number;
  /** Subscribers that got every event of `accepted`. */
  complete: number;
  dropped: number;
  /** Absolute time of the last delivery (0: none). */
  lastReceipt: number;
  latencies: Float64Array;
};
export const DELIVERED = 0;
export const READY = 1;
export const ANSWERED = 2;

const now = () => performance.timeOrigin + performance.now();

async function run(job: ReceiverJob): Promise<void> {
  const sendTimes = new Float64Array(job.sendTimes);
  const counters = new Int32Array(job.counters);
  const marker = Buffer.from(job.marker);
  const n = job.events;
  const latency = new Samples();
  let duplicates = 0;
  let lastReceipt = 0;
  let byAuthor = 0;
  const subs: Subscriber[] = job.ws
    ? await connectSpread(job.url, job.count, job.perAddress, 50, job.first, RelayClient.connect)
    : await connectSpread(job.url, job.count, job.perAddress, 50, job.first, RawSubscriber.connect);
  const got = subs.map(() => new Uint8Array(n));
  subs.forEach((client, k) => {
    const i = job.first + k;
    const mine = got[k];
    const useAuthor = job.authorFilterEvery > 0 && i % job.authorFilterEvery === job.authorFilterEvery - 1;
    if (useAuthor) byAuthor++;
    const filter: Filter = useAuthor ? { authors: [job.publisherPubkey], kinds: [1] } : { kinds: [1], '#t': [job.tTag] };
    client.subscribe('fan', [filter], {
      onEvent: (raw) => {
        const t = now();
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
        Atomics.add(counters, DELIVERED, 1);
        lastReceipt = t;
        if (sendTimes[seq] > 0) latency.push(t - sendTimes[seq]);
      },
      onEose: () => {
        Atomics.add(counters, READY, 1);
        Atomics.add(counters, ANSWERED, 1);
      },
      onClosed: () => Atomics.add(counters, ANSWERED, 1),
    });
  });
  parentPort!.once('message', (accepted: Uint8Array) => {
    const complete = got.filter((g) => g.every((x, seq) => x === 1 || accepted[seq] !== 1)).length;
    const dropped = subs.filter((c) => c.droppedByRelay).length;
    for (const c of subs) c.close();
    const latencies = latency.values().slice();
    const result: ReceiverResult = { byAuthor, duplicates, complete, dropped, lastReceipt, latencies };
    parentPort!.postMessage({ result }, [latencies.buffer]);
  });
  parentPort!.postMessage({ connected: true });
}

if (parentPort && (workerData as { fanoutReceiver?: ReceiverJob } | undefined)?.fanoutReceiver) {
  run((workerData as { fanoutReceiver: ReceiverJob }).fanoutReceiver).catch((err: unknown) =>
    parentPort!.postMessage({ error: (err as Error).message }),
  );
}
