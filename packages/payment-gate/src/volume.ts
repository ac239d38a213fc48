import type { Volume, VolumeCounters, VolumeWindow } from '@paidrelay/bus';
import type { Logger } from 'pino';

type Entry = {
  w: VolumeWindow;
  /** The ranked group the counter is in (VolumeCounters.add), if any. */
  group?: string;
  /** The total of every replica at the last reply, and when it came (ms). */
  shared: Volume;
  sharedAt: number;
  /** Counted here and not yet sent. */
  pending: Volume;
  /** Sent, and not yet in `shared` (its reply is awaited): still part of the view. */
  inflight: Volume;
  /** A reply is awaited. */
  asking: boolean;
  /** Last read by the gate (ms): only counters in use are refreshed. */
  viewedAt: number;
};

/** Counters read in the last second are refreshed once a second; the replica count too. */
const REFRESH_MS = 1_000;
const ZERO: Volume = { events: 0, bytes: 0 };
const plus = (a: Volume, b: Volume, times = 1): Volume => ({ events: a.events + b.events * times, bytes: a.bytes + b.bytes * times });
const isZero = (v: Volume): boolean => v.events === 0 && v.bytes === 0;

/**
 * This replica's view of the shared volume counters, read synchronously by the gate (the pure
 * pricing function takes volume as an input). A count is sent with the next flush (every
 * `flushMs`, one script run per counter), whose reply is every replica's total; between flushes
 * the view is that total plus what this replica counted since. A counter is first asked for when
 * this replica first counts in it, so a sender's volume on the other replicas arrives within a
 * round trip of its first write here (that write is decided without it).
 *
 * While the store is unusable, counts stay pending (sent when it is back: nothing is forgotten)
 * and the view multiplies them by the replicas last seen, erring on the side of charging: N
 * replicas never mean N allowances. A total older than its window is dropped from the view.
 */
export class VolumeTracker {
  private readonly entries = new Map<string, Entry>();
  private replicas = 1;
  private replicasAt = 0;
  private timer: NodeJS.Timeout | undefined;
  private flushing: Promise<void> | undefined;

  constructor(
    private readonly store: VolumeCounters,
    private readonly instanceId: string,
    private readonly log: Logger,
    private readonly flushMs = 100,
    private readonly maxKeys = 200_000,
  ) {}

  start(): void {
    this.timer = setInterval(() => void this.flush(), this.flushMs);
    this.timer.unref?.();
  }

  /** Replicas that counted in the last 10 s, as last seen (1 until the store answers). */
  get replicasSeen(): number {
    return this.replicas;
  }

  /**
   * Every replica's volume on this counter, as far as this one knows. `now` (ms): a caller
   * reading several counters for one decision reads the clock once. The volume returned is
   * not to be changed (it may be this tracker's own).
   */
  view(key: string, w: VolumeWindow, now = Date.now()): Volume {
    // Nothing is asked for a counter this replica has not counted in: a flood of fresh keys that
    // are all refused costs no Redis traffic. Its first count asks for the shared total.
    const e = this.entries.get(key);
    if (!e) return ZERO;
    e.viewedAt = now;
    // A counter back in use after a pause is asked for at once: the writes after this one see
    // what the other replicas counted meanwhile (this one is decided on the last total known).
    if (now - e.sharedAt >= REFRESH_MS) void this.send(key, e);
    const fresh = now - e.sharedAt < w.slotSeconds * w.slots * 1000;
    const shared = fresh ? e.shared : ZERO;
    // Nothing counted here since the last total (a flood's network counters, mostly): that total.
    if (isZero(e.pending) && isZero(e.inflight)) return shared;
    return plus(shared, plus(e.pending, e.inflight), this.store.usable() ? 1 : this.replicas);
  }

  /** `group`: the counter is ranked in that group (top senders: VolumeCounters.top). */
  count(key: string, w: VolumeWindow, events: number, bytes: number, group?: string): void {
    const e = this.entry(key, w, group);
    if (events !== 0 || bytes !== 0) e.pending = plus(e.pending, { events, bytes });
  }

  private entry(key: string, w: VolumeWindow, group?: string): Entry {
    let e = this.entries.get(key);
    if (!e) {
      e = { w, group, shared: ZERO, sharedAt: 0, pending: ZERO, inflight: ZERO, asking: false, viewedAt: 0 };
      this.entries.set(key, e);
      if (this.entries.size > this.maxKeys) this.entries.delete(this.entries.keys().next().value as string);
      void this.send(key, e);
    }
    return e;
  }

  private async send(key: string, e: Entry): Promise<void> {
    if (e.asking || !this.store.usable()) return;
    e.asking = true;
    const sent = e.pending;
    e.pending = ZERO;
    e.inflight = sent;
    try {
      e.shared = await this.store.add(key, e.w, sent.events, sent.bytes, e.group);
      e.sharedAt = Date.now();
    } catch (err) {
      e.pending = plus(e.pending, sent);
      this.log.debug({ err, key }, 'volume counters: count kept for the next flush');
    } finally {
      e.inflight = ZERO;
      e.asking = false;
    }
  }

  /** Sends every pending count (and refreshes totals of counters in use); one at a time. */
  flush(): Promise<void> {
    this.flushing ??= (async () => {
      if (!this.store.usable()) return;
      const sends: Promise<void>[] = [];
      const now = Date.now();
      for (const [key, e] of this.entries) {
        const idle = e.pending.events === 0 && e.pending.bytes === 0;
        // Forgotten once its window has passed unused; never before its first total has come back.
        const unused = now - Math.max(e.sharedAt, e.viewedAt) > e.w.slotSeconds * e.w.slots * 1000;
        if (idle && !e.asking && e.sharedAt > 0 && unused) this.entries.delete(key);
        else if (!idle || (now - e.viewedAt < REFRESH_MS && now - e.sharedAt >= REFRESH_MS)) sends.push(this.send(key, e));
      }
      if (now - this.replicasAt >= REFRESH_MS) {
        this.replicasAt = now;
        const seen = this.store.replicas(this.instanceId, 10);
        sends.push(
          seen.then(
            (n) => void (this.replicas = Math.max(1, n)),
            () => {},
          ),
        );
      }
      await Promise.all(sends);
    })().finally(() => (this.flushing = undefined));
    return this.flushing;
  }

  async close(): Promise<void> {
    clearInterval(this.timer);
    await this.flush();
  }
}
