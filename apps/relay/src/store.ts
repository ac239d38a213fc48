import { atomically, isConnectionError, storeEvents, type Database, type Schema, type StoreOutcome } from '@paidrelay/db';
import { kindClass, nowSeconds, type NostrEvent } from '@paidrelay/nostr';
import type { Kysely } from 'kysely';
import type { Logger } from 'pino';
import type { Metrics } from './metrics.ts';

/** `unpaid`: the author's balance, read under lock at commit time, did not cover the price. */
export type WriteOutcome = StoreOutcome | { status: 'unpaid'; balanceMsat: number };

/**
 * How the writer takes prices from prepaid balances inside its transaction (the payment gate
 * provides it; an open relay has none). `cover` locks the payers' balances for the
 * transaction and says which charges they cover; `debit` then takes, in one statement, every
 * covered one whose event is stored, and throws if a balance cannot pay after all.
 */
export interface Charges {
  cover(trx: Kysely<Schema>, charges: { pubkey: string; amountMsat: number }[]): Promise<{ covered: boolean; balanceMsat: number }[]>;
  debit(trx: Kysely<Schema>, items: { pubkey: string; eventId: string; amountMsat: number }[], now: number): Promise<unknown[]>;
}

type Job = {
  event: NostrEvent;
  raw: string;
  charge?: number;
  resolve: (o: WriteOutcome) => void;
  reject: (e: Error) => void;
};

/**
 * Group commit: writes that arrive while a transaction is running wait for the next one,
 * so a burst of concurrent EVENTs costs a handful of transactions, not one each.
 * A promise resolves only after its transaction has committed. A paid write is debited in
 * the same transaction that stores it, so a debit and its event commit or vanish together;
 * a balance that cannot pay fails its own event, never the batch.
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
    private readonly charges?: Charges,
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
      const batch = this.queue.splice(0, this.maxBatch);
      const end = this.metrics.commitDuration.startTimer();
      this.metrics.commitBatch.observe(batch.length);
      // One transaction per batch; a deadlock or serialization failure runs it again (a bounded
      // number of times, see atomically), nothing else does.
      let attempts = 0;
      try {
        const outcomes = await atomically(this.db.kysely, (trx) => {
          attempts++;
          return this.commit(trx, batch);
        });
        this.metrics.commitTransactions.inc({ result: 'committed' });
        if (attempts > 1) this.metrics.commitTransactions.inc({ result: 'rolled_back' }, attempts - 1);
        for (let i = 0; i < batch.length; i++) batch[i].resolve(outcomes[i]);
      } catch (err) {
        this.metrics.commitTransactions.inc({ result: 'rolled_back' }, Math.max(attempts, 1));
        // The database is unreachable: the writes queued behind this batch are answered now
        // too, instead of each batch waiting out the timeouts again against the same outage.
        const waiting = isConnectionError(err) ? this.queue.splice(0) : [];
        this.log.error({ err, batch: batch.length, queued: waiting.length }, 'store: commit failed');
        for (const j of batch) j.reject(err as Error);
        for (const j of waiting) j.reject(err as Error);
      }
      end();
    }
    this.running--;
    if (this.running === 0) for (const r of this.idle.splice(0)) r();
  }

  /** One batch in the writer's transaction: charges covered first, then the events, then the debits. */
  private async commit(trx: Kysely<Schema>, batch: Job[]): Promise<WriteOutcome[]> {
    const now = nowSeconds();
    const charged = batch.filter((j) => j.charge !== undefined);
    const unpaid = new Map<Job, number>();
    if (charged.length > 0) {
      const covered = this.charges
        ? await this.charges.cover(
            trx,
            charged.map((j) => ({ pubkey: j.event.pubkey, amountMsat: j.charge! })),
          )
        : charged.map(() => ({ covered: false, balanceMsat: 0 }));
      charged.forEach((j, i) => !covered[i].covered && unpaid.set(j, covered[i].balanceMsat));
    }
    const storable = batch.filter((j) => kindClass(j.event.kind) !== 'ephemeral' && !unpaid.has(j));
    const stored = await storeEvents(
      trx,
      storable.map((j) => ({ event: j.event, raw: j.raw })),
      now,
    );
    const storedOf = new Map(storable.map((j, i) => [j, stored[i]]));
    const outcomes: WriteOutcome[] = batch.map((j) => {
      const balance = unpaid.get(j);
      if (balance !== undefined) return { status: 'unpaid', balanceMsat: balance };
      return storedOf.get(j) ?? { status: 'stored' }; // an ephemeral event is only charged
    });
    const debits = batch.flatMap((j, i) =>
      j.charge !== undefined && outcomes[i].status === 'stored'
        ? [{ pubkey: j.event.pubkey, eventId: j.event.id, amountMsat: j.charge }]
        : [],
    );
    // One round trip for the whole batch. Covered under lock, so it cannot fail on the balance;
    // if it does, it throws and nothing commits.
    if (debits.length > 0) await this.charges!.debit(trx, debits, now);
    return outcomes;
  }

  /**
   * Resolves at once when no transaction is in flight, else when the writer next has none (its
   * queue is empty then too). For work that should not share the database with a group
   * commit: it waits for a quiet moment, and a busy writer may not give one (bound the wait).
   */
  whenIdle(): Promise<void> {
    if (this.running === 0) return Promise.resolve();
    return new Promise((r) => this.idle.push(r));
  }

  /** Resolves when every write handed in so far has been committed or failed. */
  drain(): Promise<void> {
    if (this.running === 0 && this.queue.length === 0) return Promise.resolve();
    return new Promise((r) => this.idle.push(r));
  }
}
