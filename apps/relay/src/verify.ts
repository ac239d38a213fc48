import { availableParallelism } from 'node:os';
import { Worker } from 'node:worker_threads';
import type { NostrEvent } from '@paidrelay/nostr';

type Item = { id: string; pubkey: string; sig: string };
type Waiter = { resolve: (ok: boolean) => void; reject: (err: Error) => void };
type Pending = { items: Item[]; resolvers: Waiter[] };

const MAX_BATCH = 256;

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

/**
 * Signature checks run on worker threads, never on the event loop. Calls made in the same
 * tick are sent together as one batch; each worker gets the next batch as soon as it is free.
 */
export class VerifyPool {
  private workers: { worker: Worker; busy: boolean }[] = [];
  private queue: Item[] = [];
  private resolvers: Waiter[] = [];
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
    const slot = { worker, busy: false };
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

  private failWorker(slot: { worker: Worker; busy: boolean }, err: Error): void {
    // A crashed worker fails its batch (those events are answered `error:`, not `invalid:`: their
    // signatures were never checked) and is replaced.
    if (this.closing || !this.workers.includes(slot)) return; // closing, or already handled (error, then exit)
    this.onError(err);
    this.workers = this.workers.filter((w) => w !== slot);
    for (const [id, p] of this.inflight) {
      if ((p as Pending & { slot?: unknown }).slot === slot) {
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

  verify(ev: Pick<NostrEvent, 'id' | 'pubkey' | 'sig'>): Promise<boolean> {
    return new Promise((resolve, reject) => {
      this.queue.push({ id: ev.id, pubkey: ev.pubkey, sig: ev.sig });
      this.resolvers.push({ resolve, reject });
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
      if (this.queue.length === 0) return;
      if (slot.busy) continue;
      const items = this.queue.splice(0, MAX_BATCH);
      const resolvers = this.resolvers.splice(0, items.length);
      const batch = this.nextBatch++;
      const pending: Pending & { slot?: unknown } = { items, resolvers, slot };
      this.inflight.set(batch, pending);
      slot.busy = true;
      this.onBatch?.(items.length);
      slot.worker.postMessage({ batch, items });
    }
  }

  async close(): Promise<void> {
    this.closing = true;
    await Promise.all(this.workers.map((w) => w.worker.terminate()));
    this.workers = [];
  }
}
