import { storeEvents, type Database, type Schema, type StoreOutcome } from '@paidrelay/db';
import { kindClass, type NostrEvent } from '@paidrelay/nostr';
import type { Kysely } from 'kysely';
import type { Logger } from 'pino';
import type { Metrics } from './metrics.ts';

export type WriteOutcome = StoreOutcome | { status: 'unpaid'; message: string };

/** Takes a price from a prepaid balance inside the caller's transaction; false when it is too low. */
export type Debit = (trx: Kysely<Schema>, pubkey: string, eventId: string, amountMsat: number, now: number) => Promise<boolean>;

type Job = {
  event: NostrEvent;
  raw: string;
  charge?: number;
  resolve: (o: WriteOutcome) => void;
  reject: (e: Error) => void;
};

class Unpaid extends Error {
  constructor(readonly job: Job) {
    super('unpaid');
  }
}

const retryable = (err: unknown) => ['40001', '40P01'].includes((err as { code?: string } | null)?.code ?? '');

/**
 * Group commit: writes that arrive while a transaction is running wait for the next one,
 * so a burst of concurrent EVENTs costs a handful of transactions, not one each.
 * A promise resolves only after its transaction has committed. A paid write is debited in
 * the same transaction that stores it, so a debit and its event commit or vanish together.
 */
export class GroupCommitWriter {
  private queue: Job[] = [];
  private running = 0;
  private idle: (() => void)[] = [];

  /**
   * `concurrency` transactions may be in flight at once: while one waits on the database the
   * next batch is already on its way (the store's per-author locks keep them consistent, as
   * they do for several replicas).
   */
  constructor(
    private readonly db: Database,
    private readonly maxBatch: number,
    private readonly metrics: Metrics,
    private readonly log: Logger,
    private readonly debit?: Debit,
    private readonly concurrency = 1,
  ) {}

  /** `charge` (msat) is debited from the author's balance if, and only if, the event is stored. */
  write(event: NostrEvent, raw: string, charge?: number): Promise<WriteOutcome> {
    return new Promise((resolve, reject) => {
      this.queue.push({ event, raw, charge, resolve, reject });
      if (this.running < this.concurrency) void this.run();
    });
  }

  private async run(): Promise<void> {
    this.running++;
    while (this.queue.length > 0) {
      let batch = this.queue.splice(0, this.maxBatch);
      const end = this.metrics.commitDuration.startTimer();
      this.metrics.commitBatch.observe(batch.length);
      for (let attempt = 1; batch.length > 0; attempt++) {
        try {
          const outcomes = await this.commit(batch);
          for (let i = 0; i < batch.length; i++) batch[i].resolve(outcomes[i]);
          break;
        } catch (err) {
          if (err instanceof Unpaid) {
            // The balance went below the price since the gate looked: refuse that one, retry the rest.
            err.job.resolve({ status: 'unpaid', message: 'blocked: payment required: balance too low for this event' });
            batch = batch.filter((j) => j !== err.job);
            continue;
          }
          if (retryable(err) && attempt < 4) continue;
          this.log.error({ err: (err as Error).message, batch: batch.length }, 'store: commit failed');
          for (const j of batch) j.reject(err as Error);
          break;
        }
      }
      end();
    }
    this.running--;
    if (this.running === 0) for (const r of this.idle.splice(0)) r();
  }

  private async commit(batch: Job[]): Promise<WriteOutcome[]> {
    const now = Math.floor(Date.now() / 1000);
    const charged = batch.some((j) => j.charge !== undefined);
    const storable = batch.filter((j) => kindClass(j.event.kind) !== 'ephemeral');
    const items = storable.map((j) => ({ event: j.event, raw: j.raw }));
    if (!charged) {
      const stored = await storeEvents(this.db.kysely, items, now);
      return batch.map((j) => stored[storable.indexOf(j)] ?? { status: 'stored' });
    }
    return this.db.kysely.transaction().execute(async (trx) => {
      const stored = await storeEvents(trx, items, now);
      const outcomes: WriteOutcome[] = batch.map((j) => {
        const i = storable.indexOf(j);
        return i < 0 ? { status: 'stored' } : stored[i];
      });
      for (let i = 0; i < batch.length; i++) {
        const j = batch[i];
        if (j.charge === undefined || outcomes[i].status !== 'stored') continue;
        if (!this.debit || !(await this.debit(trx, j.event.pubkey, j.event.id, j.charge, now))) throw new Unpaid(j);
      }
      return outcomes;
    });
  }

  /** Resolves when every write handed in so far has been committed or failed. */
  drain(): Promise<void> {
    if (this.running === 0 && this.queue.length === 0) return Promise.resolve();
    return new Promise((r) => this.idle.push(r));
  }
}
