import type { HoldItem } from '@paidrelay/db';
import type { Logger } from 'pino';

/** Held events waiting for their batch: enough for a burst, bounded so a flood cannot grow memory. */
const HOLD_QUEUE_MAX_BYTES = 8 * 1024 * 1024;
/**
 * Events per batch, and the pause between batches while more wait: a flood's opening burst of
 * refusals (hundreds held within a second) is written in short transactions with room between
 * them, so the paying writers' group commits are not stuck behind one long one on Postgres and
 * the event loop (each batch's parameters are built there). Still thousands of holds a second
 * while the writer is quiet.
 */
export const HOLD_BATCH_MAX = 100;
export const HOLD_PAUSE_MS = 20;
/**
 * The longest a batch waits for the relay's writer to have no group commit in flight (see
 * `beforeBatch`): a writer busy all the time still lets a batch through this often, so held
 * events are never starved (a hundred every quarter second, at worst).
 */
export const HOLD_MAX_DEFER_MS = 250;

export type HoldQueueOptions = {
  /** Events queued at most, by the bytes `add` is told. */
  maxBytes?: number;
  /**
   * Resolves when a batch may start: the relay's writer has no group commit in flight, so a
   * batch on Postgres does not slow a paying write's OK (on one core they share it all).
   * A group commit never waits for a batch; it may overlap one already started.
   */
  beforeBatch?: () => Promise<void>;
  /** How long a batch waits for `beforeBatch` before it goes anyway. */
  maxDeferMs?: number;
};

/**
 * Refused events on their way to `held_events`, written in batches, one transaction each: the
 * refusal is answered at once and costs no transaction of its own. When a flood fills the
 * queue, further events are not held (their refusal stands, with its pay URL; they can be sent
 * again after paying). A failed batch is logged and dropped: holding is a convenience.
 */
export class HoldQueue {
  private items: HoldItem[] = [];
  /** What `add` was told each item weighs, given back when its batch is done. */
  private sizes: number[] = [];
  private bytes = 0;
  private running?: Promise<void>;
  private readonly maxBytes: number;
  private readonly beforeBatch?: () => Promise<void>;
  private readonly maxDeferMs: number;

  constructor(
    private readonly write: (items: HoldItem[]) => Promise<void>,
    private readonly log: Logger,
    { maxBytes = HOLD_QUEUE_MAX_BYTES, beforeBatch, maxDeferMs = HOLD_MAX_DEFER_MS }: HoldQueueOptions = {},
  ) {
    this.maxBytes = maxBytes;
    this.beforeBatch = beforeBatch;
    this.maxDeferMs = maxDeferMs;
  }

  add(item: HoldItem, bytes: number): boolean {
    if (this.bytes + bytes > this.maxBytes) return false;
    this.items.push(item);
    this.sizes.push(bytes);
    this.bytes += bytes;
    this.running ??= this.run();
    return true;
  }

  private async run(): Promise<void> {
    // Let the refusals of this turn join the batch.
    await new Promise((r) => setImmediate(r));
    while (this.items.length > 0) {
      // Taken after the wait: refusals that came during it join this batch.
      if (this.beforeBatch) await atMost(this.beforeBatch(), this.maxDeferMs);
      const batch = this.items.splice(0, HOLD_BATCH_MAX);
      const sizes = this.sizes.splice(0, batch.length);
      try {
        await this.write(batch);
      } catch (err) {
        this.log.warn({ err, events: batch.length }, 'could not hold refused events');
      } finally {
        for (const n of sizes) this.bytes -= n;
      }
      if (this.items.length > 0) await new Promise((r) => setTimeout(r, HOLD_PAUSE_MS));
    }
    this.running = undefined;
  }

  /** Resolves when everything queued so far has been written (or has failed). */
  async drain(): Promise<void> {
    while (this.running) await this.running;
  }
}

/** Resolves when `p` settles (a failure too: it only delays) or after `ms`, whichever comes first. */
function atMost(p: Promise<void>, ms: number): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  const bound = new Promise<void>((r) => {
    timer = setTimeout(r, ms);
  });
  return Promise.race([p.catch(() => {}), bound]).finally(() => clearTimeout(timer));
}
