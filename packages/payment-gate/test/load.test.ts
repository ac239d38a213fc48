import { describe, expect, it } from 'vitest';
import { pino } from 'pino';
import { LocalVolumes, type VolumeCounters, type VolumeWindow } from '@paidrelay/bus';
import { DEFAULT_SURGE, type SurgePolicy } from '@paidrelay/pricing';
import { LoadMonitor, windowRate } from '../src/load.ts';

/**
 * The load monitor on a fake clock, ticked by hand: evaluations are counted, never timed. The
 * shared counter is LocalVolumes on the same clock (the store every replica would share); a
 * switch plays the store being out.
 */

const log = pino({ level: 'silent' });

class Switchable implements VolumeCounters {
  down = false;
  adds = 0;
  constructor(private readonly inner: VolumeCounters) {}
  usable() {
    return !this.down;
  }
  add(key: string, w: VolumeWindow, events: number, bytes: number) {
    this.adds++;
    return this.inner.add(key, w, events, bytes);
  }
  top(group: string, w: VolumeWindow, limit: number) {
    return this.inner.top(group, w, limit);
  }
  replicas(id: string, s: number) {
    return this.inner.replicas(id, s);
  }
  close() {
    return this.inner.close();
  }
}

function setup(capacity = 10, maxMultiplier = 1024) {
  const clock = { t: 1_000.5 };
  const now = () => clock.t;
  const store = new Switchable(new LocalVolumes(now));
  let policy: SurgePolicy | undefined = { ...DEFAULT_SURGE, capacityPerSecond: capacity, maxMultiplier };
  const replicas = { n: 1 };
  const monitor = (s: VolumeCounters = store) =>
    new LoadMonitor(
      s,
      () => policy,
      () => replicas.n,
      log,
      { now },
    );
  const m = monitor();
  /** One second: `writes` stored on `on`, then each monitor evaluates. */
  const second = async (writes: number, on: LoadMonitor = m, all: LoadMonitor[] = [m]) => {
    clock.t += 1;
    on.count(writes);
    for (const x of all) await x.tick();
  };
  return { clock, store, m, monitor, second, replicas, setPolicy: (p: SurgePolicy | undefined) => (policy = p) };
}

describe('windowRate', () => {
  it('divides by the full slots and the elapsed part of the current one', () => {
    const w = { slotSeconds: 1, slots: 10 };
    expect(windowRate(95, w, 1_000.5)).toBeCloseTo(10);
    expect(windowRate(90, w, 1_000.999)).toBeCloseTo(9, 1);
    expect(windowRate(-3, w, 1_000.5)).toBe(0);
  });
});

describe('load monitor', () => {
  it('rises one step per evaluation at 90% of capacity, holds between 60% and 90%, falls one per evaluation under 60%', async () => {
    const { m, second } = setup(10);
    const levels: number[] = [];
    // 10 writes a second: the window fills, and from the ninth second the rate is at capacity.
    for (let i = 0; i < 12; i++) {
      await second(10);
      levels.push(m.level);
    }
    expect(levels).toEqual([0, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4]);
    expect(m.writesPerSecond).toBeCloseTo(100 / 9.5);
    // Between the two shares (6.5 to 8.5 a second, back and forth): no flapping, the level holds.
    for (let i = 0; i < 10; i++) await second(i % 2 ? 9 : 7); // the window drains to 80 in 10 s
    const held = m.level;
    for (let i = 0; i < 30; i++) {
      await second(i % 2 ? 8 : 7);
      expect(m.writesPerSecond).toBeGreaterThanOrEqual(6);
      expect(m.writesPerSecond).toBeLessThan(9);
      expect(m.level).toBe(held);
    }
    expect(held).toBeGreaterThan(0);
    // Quiet: once the rate is under 60%, one step down per evaluation, to 0 and no lower.
    let evaluationsDown = 0;
    let levelWhenLow = -1;
    while (m.level > 0) {
      await second(0);
      if (m.writesPerSecond < 6) {
        if (levelWhenLow < 0) levelWhenLow = m.level + 1;
        evaluationsDown++;
      }
    }
    expect(evaluationsDown).toBe(levelWhenLow);
    await second(0);
    expect(m.level).toBe(0);
  });

  it('stops at the cap of the multiplier (maxMultiplier 2: level 1)', async () => {
    const { m, second } = setup(5, 2);
    for (let i = 0; i < 20; i++) await second(10);
    expect(m.level).toBe(1);
  });

  it('two replicas on one shared counter read the same rate and step to the same level', async () => {
    const { m, monitor, second } = setup(10);
    const b = monitor();
    const levels: [number, number][] = [];
    // All the writes on the first replica; the second stores none.
    for (let i = 0; i < 12; i++) {
      await second(12, m, [m, b]);
      levels.push([m.level, b.level]);
    }
    expect(b.writesPerSecond).toBeCloseTo(m.writesPerSecond);
    for (const [x, y] of levels) expect(y).toBe(x);
    expect(b.level).toBeGreaterThan(0);
  });

  it('is off with no policy or no capacity: level 0, the store not asked; the policy is read at each evaluation', async () => {
    const { m, store, second, setPolicy } = setup(0);
    for (let i = 0; i < 5; i++) await second(100);
    expect(m.level).toBe(0);
    expect(store.adds).toBe(0);
    // An admin sets a capacity: counted and priced from the next evaluations.
    setPolicy({ ...DEFAULT_SURGE, capacityPerSecond: 10 });
    for (let i = 0; i < 12; i++) await second(20);
    expect(m.level).toBeGreaterThan(0);
    expect(m.evaluations).toBe(17);
    // Switched off again: level 0 at the next evaluation.
    setPolicy(undefined);
    await second(20);
    expect(m.level).toBe(0);
  });

  it('while the store is out the level is never lowered, may rise on the local rate times the replicas, and falls once it is back', async () => {
    const { m, store, second, replicas } = setup(10);
    for (let i = 0; i < 12; i++) await second(10);
    const before = m.level;
    expect(before).toBe(4);
    store.down = true;
    // Nothing written here for a long while: the other replicas' writes are unknown, the level
    // never falls (it still rises while this replica's own last seconds are over capacity).
    const during: number[] = [];
    for (let i = 0; i < 30; i++) {
      await second(0);
      during.push(m.level);
    }
    expect(Math.min(...during)).toBeGreaterThanOrEqual(before);
    expect(new Set(during.slice(10)).size).toBe(1);
    // Written here at 6 a second with 2 replicas seen: estimated 12 a second, over capacity: up.
    replicas.n = 2;
    for (let i = 0; i < 12; i++) await second(6);
    expect(m.level).toBeGreaterThan(during[29]);
    expect(m.writesPerSecond).toBeCloseTo((60 / 9.5) * 2);
    const high = m.level;
    // Back: the backlog of the outage is sent only as far as it is still in the window (60, not 78).
    store.down = false;
    await second(6);
    expect(m.writesPerSecond).toBeCloseTo(60 / 9.5);
    expect(m.level).toBe(high); // 6.3 a second: between the shares
    while (m.level > 0) await second(0);
    expect(m.level).toBe(0);
  });
});
