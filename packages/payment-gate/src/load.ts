import type { VolumeCounters, VolumeWindow } from '@paidrelay/bus';
import { nextLoadLevel, type SurgePolicy } from '@paidrelay/pricing';
import type { Logger } from 'pino';

/** The relay-wide write counter: every replica's stored writes, in 10 slots of one second. */
export const LOAD_KEY = 'load';
export const LOAD_WINDOW: VolumeWindow = { slotSeconds: 1, slots: 10 };

/**
 * Writes per second over a window whose last slot is still filling: the full slots plus the
 * elapsed part of the current one (`nowSeconds` on the local clock; the store's differs by
 * little). Without that, a steady rate would read up to a slot's share too low.
 */
export function windowRate(events: number, w: VolumeWindow, nowSeconds: number): number {
  const elapsed = (nowSeconds % w.slotSeconds) / w.slotSeconds;
  const seconds = (w.slots - 1 + Math.max(0.1, elapsed)) * w.slotSeconds;
  return Math.max(0, events) / seconds;
}

/** This replica's own writes in the window, in memory (the estimate while the store is out). */
class LocalRing {
  private readonly slots = new Map<number, number>();
  constructor(private readonly w: VolumeWindow) {}

  add(nowSeconds: number, events: number): void {
    const cur = Math.floor(nowSeconds / this.w.slotSeconds);
    this.slots.set(cur, (this.slots.get(cur) ?? 0) + events);
  }

  total(nowSeconds: number): number {
    const cur = Math.floor(nowSeconds / this.w.slotSeconds);
    let sum = 0;
    for (const [slot, n] of this.slots) {
      if (slot <= cur - this.w.slots) this.slots.delete(slot);
      else sum += n;
    }
    return sum;
  }
}

export type LoadMonitorOptions = {
  /** Seconds (unix, fractional); injected by tests. */
  now?: () => number;
  /** Between evaluations (default 1 s). */
  tickMs?: number;
  window?: VolumeWindow;
};

/**
 * The relay-wide load level (surge.ts nextLoadLevel): every replica counts the writes it stores
 * into one shared counter, and once a second each reads every replica's rate from it and steps
 * its level. All replicas read the same total, so they agree within a second.
 *
 * The policy is read at each evaluation (admins change it at run time); no policy or a capacity
 * of 0: level 0 and nothing is sent. While the store is unusable the level errs on the side of
 * charging: it may rise (on this replica's own rate times the replicas last seen) but it never
 * falls, since the other replicas' writes are unknown; it falls again once the store answers.
 */
export class LoadMonitor {
  private current = 0;
  private rate = 0;
  private evaluated = 0;
  private pending = 0;
  private timer: NodeJS.Timeout | undefined;
  private ticking: Promise<void> | undefined;
  private readonly local: LocalRing;
  private readonly now: () => number;
  private readonly tickMs: number;
  private readonly w: VolumeWindow;

  constructor(
    private readonly store: VolumeCounters,
    private readonly policy: () => SurgePolicy | undefined,
    private readonly replicas: () => number,
    private readonly log: Logger,
    opts: LoadMonitorOptions = {},
  ) {
    this.now = opts.now ?? (() => Date.now() / 1000);
    this.tickMs = opts.tickMs ?? 1_000;
    this.w = opts.window ?? LOAD_WINDOW;
    this.local = new LocalRing(this.w);
  }

  /** The level the gate multiplies by (2^level). */
  get level(): number {
    return this.current;
  }

  /** Writes per second of every replica at the last evaluation (an estimate while the store is out). */
  get writesPerSecond(): number {
    return this.rate;
  }

  /** Evaluations so far (tests and metrics count them instead of timing them). */
  get evaluations(): number {
    return this.evaluated;
  }

  /** This replica stored `events` writes. */
  count(events = 1): void {
    if (!this.on()) return;
    this.local.add(this.now(), events);
    this.pending += events;
  }

  start(): void {
    this.timer = setInterval(() => void this.tick(), this.tickMs);
    this.timer.unref?.();
  }

  /** One evaluation: the shared rate read (this replica's writes sent with it), the level stepped. */
  tick(): Promise<void> {
    this.ticking ??= this.evaluate().finally(() => (this.ticking = undefined));
    return this.ticking;
  }

  async close(): Promise<void> {
    clearInterval(this.timer);
    await this.ticking;
  }

  private on(): SurgePolicy | undefined {
    const p = this.policy();
    return p && p.capacityPerSecond > 0 ? p : undefined;
  }

  private async evaluate(): Promise<void> {
    const policy = this.on();
    this.evaluated++;
    if (!policy) {
      this.current = 0;
      this.rate = 0;
      this.pending = 0;
      return;
    }
    const shared = await this.sharedRate();
    if (shared !== undefined) {
      this.rate = shared;
      this.current = nextLoadLevel(this.current, shared, policy);
      return;
    }
    this.rate = windowRate(this.local.total(this.now()), this.w, this.now()) * Math.max(1, this.replicas());
    this.current = Math.max(this.current, nextLoadLevel(this.current, this.rate, policy));
  }

  /** Every replica's rate, or undefined while the store cannot say. */
  private async sharedRate(): Promise<number | undefined> {
    if (!this.store.usable()) return undefined;
    // Writes counted while the store was out are sent only as far as they are still in the
    // window: an outage's backlog must not read as a burst once it is back.
    const sent = Math.min(this.pending, this.local.total(this.now()));
    this.pending = 0;
    try {
      const total = await this.store.add(LOAD_KEY, this.w, sent, 0);
      return windowRate(total.events, this.w, this.now());
    } catch (err) {
      this.pending += sent;
      this.log.debug({ err }, 'load: shared write rate unavailable, level kept or raised on the local rate');
      return undefined;
    }
  }
}
