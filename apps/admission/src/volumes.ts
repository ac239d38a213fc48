import { LocalVolumes, RedisVolumes, type Volume, type VolumeCounters } from '@paidrelay/bus';
import type { CounterWindow } from '@paidrelay/pricing';
import type { Logger } from 'pino';

/** A read of a shared counter waits this long for Redis (the pay page and invoices are not held up longer). */
export const COUNTER_TIMEOUT_MS = 500;
/** Counts Redis did not take are sent again this often. */
const RETRY_MS = 1_000;
/** Counters remembered (last totals and unsent counts); the oldest go first. */
const MAX_KEYS = 50_000;

const ZERO: Volume = { events: 0, bytes: 0 };
const plus = (a: Volume, b: Volume): Volume => ({ events: a.events + b.events, bytes: a.bytes + b.bytes });

/**
 * The spam pricing's shared counters as the admission API sees them: read at each price (an
 * await on Redis, bounded by COUNTER_TIMEOUT_MS) and added to when an admission is paid. The
 * relay's gate counts writes in the same counters (RedisVolumes: `add(k, w, 0, 0)` reads them).
 *
 * While Redis is down it errs on the side of charging: a read answers the last total it saw
 * (never 0 when one was seen) plus what was counted here since, and a count Redis did not take
 * is kept and sent again (a count whose reply timed out may be counted twice: a higher price,
 * never a lower one). Without REDIS_URL the counters are this process's own.
 */
export class SharedCounters {
  private readonly known = new Map<string, Volume>();
  private readonly unsent = new Map<string, { w: CounterWindow; v: Volume }>();
  private readonly timer: NodeJS.Timeout;

  constructor(
    /** Also what the relay-wide load level is read from (app.ts). */
    readonly store: VolumeCounters,
    private readonly log: Logger,
  ) {
    this.timer = setInterval(() => void this.retry(), RETRY_MS);
    this.timer.unref();
  }

  /** `prefix`: REDIS_PREFIX (the relay's gate counts under the same keys). */
  static open(redisUrl: string | undefined, prefix: string, log: Logger): SharedCounters {
    const store = redisUrl
      ? new RedisVolumes(redisUrl, log, { timeoutMs: COUNTER_TIMEOUT_MS, prefix: `${prefix}vol:` })
      : new LocalVolumes();
    return new SharedCounters(store, log);
  }

  /** Every replica's total on this counter, or the last one seen while Redis does not answer. */
  async read(key: string, w: CounterWindow): Promise<Volume> {
    const total = await this.add(key, w, ZERO);
    return plus(total ?? this.known.get(key) ?? ZERO, this.unsent.get(key)?.v ?? ZERO);
  }

  /** Adds to a counter; kept and sent again if Redis does not take it now. */
  async count(key: string, w: CounterWindow, v: Volume): Promise<void> {
    if ((await this.add(key, w, v)) === undefined) this.keep(key, w, v);
  }

  /** One run of the counter script (RedisVolumes bounds it by COUNTER_TIMEOUT_MS); undefined when it failed. */
  private async add(key: string, w: CounterWindow, v: Volume): Promise<Volume | undefined> {
    if (!this.store.usable()) return undefined;
    try {
      const total = await this.store.add(key, w, v.events, v.bytes);
      this.remember(this.known, key, total);
      return total;
    } catch (err) {
      this.log.debug({ err, key }, 'shared counters: no answer, using the last total seen');
      return undefined;
    }
  }

  private keep(key: string, w: CounterWindow, v: Volume): void {
    this.remember(this.unsent, key, { w, v: plus(this.unsent.get(key)?.v ?? ZERO, v) });
  }

  private remember<T>(m: Map<string, T>, key: string, value: T): void {
    m.delete(key);
    m.set(key, value);
    if (m.size > MAX_KEYS) m.delete(m.keys().next().value as string);
  }

  private async retry(): Promise<void> {
    for (const [key, { w, v }] of [...this.unsent]) {
      if (!this.store.usable()) return;
      this.unsent.delete(key);
      await this.count(key, w, v);
    }
  }

  async close(): Promise<void> {
    clearInterval(this.timer);
    await this.retry();
    await this.store.close();
  }
}
