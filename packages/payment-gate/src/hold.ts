import type { HoldItem } from '@paidrelay/db';
import type { Logger } from 'pino';

/** Held events waiting for their batch: enough for a burst, bounded so a flood cannot grow memory. */
const HOLD_QUEUE_MAX_BYTES = 8 * 1024 * 1024;
const HOLD_BATCH_MAX = 500;

/**
 * Refused events on their way to `held_events`, written in batches, one transaction each: the
 * refusal is answered at once and costs no transaction of its own. When a flood fills the
 * queue, further events are not held (their refusal stands, with its pay URL; they can be sent
 * again after paying). A failed batch is logged and dropped: holding is a convenience.
 */
export class HoldQueue {
  private items: HoldItem[] = [];
  private bytes = 0;
  private running?: Promise<void>;

  constructor(
    private readonly write: (items: HoldItem[]) => Promise<void>,
    private readonly log: Logger,
    private readonly maxBytes = HOLD_QUEUE_MAX_BYTES,
  ) {}

  add(item: HoldItem, bytes: number): boolean {
    if (this.bytes + bytes > this.maxBytes) return false;
    this.items.push(item);
    this.bytes += bytes;
    this.running ??= this.run();
    return true;
  }

  private async run(): Promise<void> {
    // Let the refusals of this turn join the batch.
    await new Promise((r) => setImmediate(r));
    while (this.items.length > 0) {
      const batch = this.items.splice(0, HOLD_BATCH_MAX);
      try {
        await this.write(batch);
      } catch (err) {
        this.log.warn({ err, events: batch.length }, 'could not hold refused events');
      } finally {
        for (const it of batch) this.bytes -= Buffer.byteLength(it.raw);
      }
    }
    this.running = undefined;
  }

  /** Resolves when everything queued so far has been written (or has failed). */
  async drain(): Promise<void> {
    while (this.running) await this.running;
  }
}
