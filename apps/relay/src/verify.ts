import { availableParallelism } from 'node:os';
import { Worker } from 'node:worker_threads';
import type { NostrEvent } from '@paidrelay/nostr';

type Waiter = { resolve: (ok: boolean) => void; reject: (err: Error) => void };
type Slot = { worker: Worker; busy: boolean };
type Pending = { resolvers: Waiter[]; slot: Slot };

const MAX_BATCH = 256;
/**
 * Events of the later lane in one batch at most: a worker busy with a flood's batch makes the
 * next paying writer's signature wait for it, and the batch's answers continue on the event loop
 * all at once (each to its refusal and hold), so both are kept short.
 */
export const MAX_LATER_PER_BATCH = 32;

/**
 * A batch goes to a worker as one string of fixed-width records, `id | pubkey | sig` in hex
 * (64 + 64 + 128 characters), not as an array of objects: cloning one flat string is a copy,
 * where the structured clone of 256 objects writes every key and value one by one, on the event
 * loop. The worker cuts the records apart again (verify-worker.ts).
 */
export const RECORD_CHARS = 256;

/** The item's record, or undefined when its fields do not have the record's widths (then it cannot be valid). */
export function sigRecord(ev: Pick<NostrEvent, 'id' | 'pubkey' | 'sig'>): string | undefined {
  const { id, pubkey, sig } = ev;
  if (typeof id !== 'string' || typeof pubkey !== 'string' || typeof sig !== 'string') return undefined;
  if (id.length !== 64 || pubkey.length !== 64 || sig.length !== 128) return undefined;
  return id + pubkey + sig;
}

/** The worker's side: a batch's string of records cut back into the items the verifier takes. */
export function sigItems(records: string): { id: string; pubkey: string; sig: string }[] {
  const n = Math.floor(records.length / RECORD_CHARS);
  const items = new Array<{ id: string; pubkey: string; sig: string }>(n);
  for (let i = 0, o = 0; i < n; i++, o += RECORD_CHARS) {
    items[i] = { id: records.slice(o, o + 64), pubkey: records.slice(o + 64, o + 128), sig: records.slice(o + 128, o + RECORD_CHARS) };
  }
  return items;
}

/**
 * `true` in the bundles scripts/build.ts writes (esbuild `define`), undeclared from source. Tested
 * inline, so the bundle drops the from-source branch.
 */
declare const __PAIDRELAY_BUNDLE__: boolean | undefined;

/**
 * Built (`pnpm build`), the worker is plain JavaScript: apps/relay/dist/verify-worker.js. In a
 * bundle `import.meta.url` still names this source file (scripts/build.ts keeps it so), hence
 * `../dist/`; the all-in-one bundle of the admission app uses the relay's worker the same way.
 * From source (tsx, vitest) the worker is TypeScript: tsx is registered inside it, so it runs
 * the same under tsx and vitest.
 */
function startWorker(): Worker {
  if (typeof __PAIDRELAY_BUNDLE__ !== 'undefined' && __PAIDRELAY_BUNDLE__)
    return new Worker(new URL('../dist/verify-worker.js', import.meta.url));
  const bootstrap = `
      const { register } = await import('tsx/esm/api');
      register();
      await import(${JSON.stringify(new URL('./verify-worker.ts', import.meta.url).href)});
    `;
  return new Worker(bootstrap, { eval: true, type: 'module' } as never);
}

/** Records (see RECORD_CHARS) waiting for a worker, and who waits for each. */
type Lane = { records: string[]; resolvers: Waiter[] };

/**
 * Signature checks run on worker threads, never on the event loop. Calls made in the same
 * tick are sent together as one batch; each worker gets the next batch as soon as it is free.
 * Two lanes: events the payment gate would refuse (a free flood's, within its address's unpaid
 * budget) go into a batch only after every other waiting event, so a flood's opening burst
 * cannot delay a paying writer's signature.
 */
export class VerifyPool {
  private workers: Slot[] = [];
  private readonly first: Lane = { records: [], resolvers: [] };
  private readonly later: Lane = { records: [], resolvers: [] };
  private closing = false;
  private inflight = new Map<number, Pending>();
  private nextBatch = 1;
  private scheduled = false;
  backend = 'unknown';

  private constructor(
    private readonly onError: (err: Error) => void,
    private readonly onBatch?: (size: number) => void,
  ) {}

  /**
   * `onError` hears of every worker that crashed or exited (its batch is answered `error:`, and
   * it is replaced) and of a replacement that could not start (tried again every second).
   */
  static async start(threads: number, onError: (err: Error) => void, onBatch?: (size: number) => void): Promise<VerifyPool> {
    const pool = new VerifyPool(onError, onBatch);
    const n = threads > 0 ? threads : Math.max(1, availableParallelism() - 1);
    await Promise.all(Array.from({ length: n }, () => pool.spawn()));
    return pool;
  }

  private spawn(): Promise<void> {
    const worker = startWorker();
    const slot: Slot = { worker, busy: false };
    return new Promise((resolve, reject) => {
      worker.once('error', reject);
      worker.on('message', (msg: { ready?: boolean; backend?: string; batch?: number; ok?: Uint8Array }) => {
        if (msg.ready) {
          this.backend = msg.backend ?? 'unknown';
          this.workers.push(slot);
          worker.off('error', reject);
          worker.on('error', (err) => this.failWorker(slot, err));
          // A worker that exits without an error event (killed, or process.exit) would leave its batch unanswered.
          worker.on('exit', (code) => this.failWorker(slot, new Error(`signature worker exited with code ${code}`)));
          resolve();
          return;
        }
        const pending = this.inflight.get(msg.batch!);
        if (!pending) return;
        this.inflight.delete(msg.batch!);
        slot.busy = false;
        for (let i = 0; i < pending.resolvers.length; i++) pending.resolvers[i].resolve(msg.ok![i] === 1);
        this.dispatch();
      });
    });
  }

  private failWorker(slot: Slot, err: Error): void {
    // A crashed worker fails its batch (those events are answered `error:`, not `invalid:`: their
    // signatures were never checked) and is replaced.
    if (this.closing || !this.workers.includes(slot)) return; // closing, or already handled (error, then exit)
    this.onError(err);
    this.workers = this.workers.filter((w) => w !== slot);
    for (const [id, p] of this.inflight) {
      if (p.slot === slot) {
        this.inflight.delete(id);
        for (const r of p.resolvers) r.reject(new Error(`signature worker crashed: ${err.message}`));
      }
    }
    this.respawn();
  }

  private respawn(): void {
    this.spawn().then(
      () => this.dispatch(),
      (err: Error) => {
        this.onError(err);
        setTimeout(() => this.respawn(), 1000).unref();
      },
    );
  }

  /** `later`: after every event waiting without it (see the class). */
  verify(ev: Pick<NostrEvent, 'id' | 'pubkey' | 'sig'>, later = false): Promise<boolean> {
    const record = sigRecord(ev);
    if (record === undefined) return Promise.resolve(false);
    const lane = later ? this.later : this.first;
    return new Promise((resolve, reject) => {
      lane.records.push(record);
      lane.resolvers.push({ resolve, reject });
      if (!this.scheduled) {
        this.scheduled = true;
        setImmediate(() => {
          this.scheduled = false;
          this.dispatch();
        });
      }
    });
  }

  private dispatch(): void {
    for (const slot of this.workers) {
      if (this.first.records.length + this.later.records.length === 0) return;
      if (slot.busy) continue;
      const records = this.first.records.splice(0, MAX_BATCH);
      const resolvers = this.first.resolvers.splice(0, records.length);
      const room = Math.min(MAX_BATCH - records.length, MAX_LATER_PER_BATCH);
      if (room > 0) {
        records.push(...this.later.records.splice(0, room));
        resolvers.push(...this.later.resolvers.splice(0, room));
      }
      const batch = this.nextBatch++;
      this.inflight.set(batch, { resolvers, slot });
      slot.busy = true;
      this.onBatch?.(records.length);
      slot.worker.postMessage({ batch, records: records.join('') });
    }
  }

  async close(): Promise<void> {
    this.closing = true;
    await Promise.all(this.workers.map((w) => w.worker.terminate()));
    this.workers = [];
  }
}
