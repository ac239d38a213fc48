import { storeEvents, type Database, type StoreOutcome } from '@paidrelay/db';
import type { NostrEvent } from '@paidrelay/nostr';
import type { Logger } from 'pino';
import type { Metrics } from './metrics.ts';

type Job = { event: NostrEvent; raw: string; resolve: (o: StoreOutcome) => void; reject: (e: Error) => void };

/**
 * Group commit: writes that arrive while a transaction is running wait for the next one,
 * so a burst of concurrent EVENTs costs a handful of transactions, not one each.
 * A promise resolves only after its transaction has committed.
 */
export class GroupCommitWriter {
  private queue: Job[] = [];
  private running = false;
  private idle: (() => void)[] = [];

  constructor(
    private readonly db: Database,
    private readonly maxBatch: number,
    private readonly metrics: Metrics,
    private readonly log: Logger,
  ) {}

  write(event: NostrEvent, raw: string): Promise<StoreOutcome> {
    return new Promise((resolve, reject) => {
      this.queue.push({ event, raw, resolve, reject });
      if (!this.running) void this.run();
    });
  }

  private async run(): Promise<void> {
    this.running = true;
    while (this.queue.length > 0) {
      const batch = this.queue.splice(0, this.maxBatch);
      const end = this.metrics.commitDuration.startTimer();
      try {
        const outcomes = await storeEvents(
          this.db.kysely,
          batch.map((j) => ({ event: j.event, raw: j.raw })),
          Math.floor(Date.now() / 1000),
        );
        for (let i = 0; i < batch.length; i++) batch[i].resolve(outcomes[i]);
      } catch (err) {
        this.log.error({ err: (err as Error).message, batch: batch.length }, 'store: commit failed');
        for (const j of batch) j.reject(err as Error);
      } finally {
        end();
        this.metrics.commitBatch.observe(batch.length);
      }
    }
    this.running = false;
    for (const r of this.idle.splice(0)) r();
  }

  /** Resolves when every write handed in so far has been committed or failed. */
  drain(): Promise<void> {
    if (!this.running && this.queue.length === 0) return Promise.resolve();
    return new Promise((r) => this.idle.push(r));
  }
}
