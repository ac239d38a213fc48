import { storeEvents, type Database, type Schema, type StoreOutcome } from '@paidrelay/db';
import { kindClass, type NostrEvent } from '@paidrelay/nostr';
import type { Kysely } from 'kysely';
import type { Logger } from 'pino';
import type { Metrics } from './metrics.ts';

/** `unpaid`: the author's balance, read under lock at commit time, did not cover the price. */
export type WriteOutcome = StoreOutcome | { status: 'unpaid'; balanceMsat: number };

/**
 * How the writer takes prices from prepaid balances inside its transaction (the payment gate
 * provides it; an open relay has none). `cover` locks the payers' balances for the
 * transaction and says which charges they cover; `debit` then takes each covered one whose
 * event is stored.
 */
export interface Charges {
  cover(trx: Kysely<Schema>, charges: { pubkey: string; amountMsat: number }[]): Promise<{ covered: boolean; balanceMsat: number }[]>;
  debit(trx: Kysely<Schema>, pubkey: string, eventId: string, amountMsat: number, now: number): Promise<boolean>;
}

type Job = {
  event: NostrEvent;
  raw: string;
  charge?: number;
  resolve: (o: WriteOutcome) => void;
  reject: (e: Error) => void;
};

const retryable = (err: unknown) => ['40001', '40P01'].includes((err as { code?: string } | null)?.code ?? '');

const CONNECTION_MESSAGES = [
  'Connection terminated', // ...unexpectedly, ...due to connection timeout
  'Query read timeout',
  'timeout exceeded when trying to connect',
  'not queryable', // Client has encountered a connection error and is not queryable
];

/**
 * The database cannot be reached (as opposed to one statement failing): a socket error, pg's
 * own client-side timeouts, or a server-side connection class (08xxx, shutting down, too many
 * connections). Not a statement timeout (57014): that is one slow statement.
 */
export function isConnectionError(err: unknown): boolean {
  const e = err as { code?: unknown; message?: unknown } | null;
  const code = typeof e?.code === 'string' ? e.code : '';
  if (/^E[A-Z]+$/.test(code)) return true; // ECONNREFUSED, ECONNRESET, ETIMEDOUT, EPIPE, ...
  if (code.startsWith('08') || ['57P01', '57P02', '57P03', '53300'].includes(code)) return true;
  const message = typeof e?.message === 'string' ? e.message : '';
  return CONNECTION_MESSAGES.some((m) => message.includes(m));
}

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
      for (let attempt = 1; ; attempt++) {
        try {
          const outcomes = await this.commit(batch);
          this.metrics.commitTransactions.inc({ result: 'committed' });
          for (let i = 0; i < batch.length; i++) batch[i].resolve(outcomes[i]);
          break;
        } catch (err) {
          this.metrics.commitTransactions.inc({ result: 'rolled_back' });
          // Serialization failures and deadlocks are retried a bounded number of times; nothing else is.
          if (retryable(err) && attempt < 4) continue;
          // The database is unreachable: the writes queued behind this batch are answered now
          // too, instead of each batch waiting out the timeouts again against the same outage.
          const waiting = isConnectionError(err) ? this.queue.splice(0) : [];
          this.log.error({ err: (err as Error).message, batch: batch.length, queued: waiting.length }, 'store: commit failed');
          for (const j of batch) j.reject(err as Error);
          for (const j of waiting) j.reject(err as Error);
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
    if (!charged) {
      const stored = await storeEvents(this.db.kysely, storable.map((j) => ({ event: j.event, raw: j.raw })), now);
      return batch.map((j) => stored[storable.indexOf(j)] ?? { status: 'stored' });
    }
    return this.db.kysely.transaction().execute(async (trx) => {
      const chargedJobs = batch.filter((j) => j.charge !== undefined);
      const covered = this.charges
        ? await this.charges.cover(trx, chargedJobs.map((j) => ({ pubkey: j.event.pubkey, amountMsat: j.charge! })))
        : chargedJobs.map(() => ({ covered: false, balanceMsat: 0 }));
      const unpaid = new Map<Job, number>();
      chargedJobs.forEach((j, i) => !covered[i].covered && unpaid.set(j, covered[i].balanceMsat));
      const paidStorable = storable.filter((j) => !unpaid.has(j));
      const stored = await storeEvents(trx, paidStorable.map((j) => ({ event: j.event, raw: j.raw })), now);
      const outcomes: WriteOutcome[] = batch.map((j) => {
        const balance = unpaid.get(j);
        if (balance !== undefined) return { status: 'unpaid', balanceMsat: balance };
        const i = paidStorable.indexOf(j);
        return i < 0 ? { status: 'stored' } : stored[i];
      });
      for (let i = 0; i < batch.length; i++) {
        const j = batch[i];
        if (j.charge === undefined || outcomes[i].status !== 'stored') continue;
        // Covered under lock, so this cannot fail on the balance; if it does, nothing commits.
        if (!(await this.charges!.debit(trx, j.event.pubkey, j.event.id, j.charge, now))) throw new Error('a covered debit failed');
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
