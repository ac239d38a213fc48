/**
 * The held-event queue (hold.ts): a burst is written in short batches with a pause between them
 * (a flood's opening burst must not be one long transaction that paying writers wait behind),
 * all of it, in order, within the memory bound; each batch waits for the relay's writer to be
 * idle, a bounded time. The writer and the idle signal are the test's: only the queue is tested.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import pino from 'pino';
import { describe, expect, it } from 'vitest';
import type { HoldItem } from '@paidrelay/db';
import { HOLD_BATCH_MAX, HOLD_PAUSE_MS, HoldQueue } from '../src/hold.ts';

const item = (i: number): HoldItem => ({
  id: String(i).padStart(64, '0'),
  pubkey: 'a'.repeat(64),
  kind: 1,
  raw: `{"n":${i}}`,
  amountMsat: 1000,
});

describe('HoldQueue', () => {
  it('writes a burst in batches of at most HOLD_BATCH_MAX, pausing between them, every event once and in order', async () => {
    const batches: { ids: string[]; start: number; end: number }[] = [];
    const q = new HoldQueue(
      async (items) => {
        const start = performance.now();
        await new Promise((r) => setTimeout(r, 5));
        batches.push({ ids: items.map((it) => it.id), start, end: performance.now() });
      },
      pino({ level: 'silent' }),
    );
    for (let i = 0; i < 250; i++) expect(q.add(item(i), 10)).toBe(true);
    await q.drain();
    expect(HOLD_BATCH_MAX).toBe(100);
    expect(batches.map((b) => b.ids.length)).toEqual([100, 100, 50]);
    expect(batches.flatMap((b) => b.ids)).toEqual(Array.from({ length: 250 }, (_, i) => item(i).id));
    // A pause between batches (a lower bound: timers never fire early), none after the last.
    for (let i = 1; i < batches.length; i++) expect(batches[i].start - batches[i - 1].end).toBeGreaterThanOrEqual(HOLD_PAUSE_MS - 1);
  });

  it('refuses what does not fit in its bytes, and takes more once written; a failed batch is dropped, not retried', async () => {
    let fail = true;
    const written: number[] = [];
    const q = new HoldQueue(
      async (items) => {
        if (fail) {
          fail = false;
          throw new Error('database away');
        }
        written.push(items.length);
      },
      pino({ level: 'silent' }),
      { maxBytes: 100 },
    );
    expect(q.add(item(1), 60)).toBe(true);
    expect(q.add(item(2), 60)).toBe(false);
    await q.drain();
    expect(q.add(item(3), 60)).toBe(true);
    await q.drain();
    expect(written).toEqual([1]);
  });

  /** A `beforeBatch` the test opens by hand: each call waits for the next `open()`. */
  function handGate() {
    const waiting: (() => void)[] = [];
    return {
      beforeBatch: () => new Promise<void>((r) => waiting.push(r)),
      calls: () => waiting.length,
      open: () => waiting.shift()?.(),
    };
  }

  it('starts no batch while the writer is busy, one as soon as it is idle, and drains only when all is written', async () => {
    const gate = handGate();
    const written: number[] = [];
    const q = new HoldQueue(async (items) => void written.push(items.length), pino({ level: 'silent' }), {
      beforeBatch: gate.beforeBatch,
      maxDeferMs: 60_000,
    });
    for (let i = 0; i < 150; i++) q.add(item(i), 10);
    let drained = false;
    const drain = q.drain().then(() => (drained = true));
    await sleep(50);
    expect(gate.calls()).toBe(1);
    expect(written).toEqual([]);
    gate.open();
    // The first batch is written, then the second waits for the writer again (after the pause).
    await sleep(HOLD_PAUSE_MS + 30);
    expect(written).toEqual([100]);
    expect(gate.calls()).toBe(1);
    expect(drained).toBe(false);
    gate.open();
    await drain;
    expect(written).toEqual([100, 50]);
  });

  it('lets a batch go after maxDeferMs when the writer is never idle, so held events are not starved', async () => {
    const starts: number[] = [];
    const added = performance.now();
    const q = new HoldQueue(async () => void starts.push(performance.now()), pino({ level: 'silent' }), {
      beforeBatch: () => new Promise<void>(() => {}),
      maxDeferMs: 40,
    });
    for (let i = 0; i < 150; i++) q.add(item(i), 10);
    await q.drain();
    expect(starts).toHaveLength(2);
    // Each batch waited its bound (timers never fire early), and no longer than a generous margin.
    expect(starts[0] - added).toBeGreaterThanOrEqual(39);
    expect(starts[1] - starts[0]).toBeGreaterThanOrEqual(HOLD_PAUSE_MS + 39);
    expect(starts[1] - added).toBeLessThan(2_000);
  });

  it('takes a failed idle signal as leave to go', async () => {
    const written: number[] = [];
    const q = new HoldQueue(async (items) => void written.push(items.length), pino({ level: 'silent' }), {
      beforeBatch: () => Promise.reject(new Error('writer gone')),
      maxDeferMs: 60_000,
    });
    q.add(item(1), 10);
    await q.drain();
    expect(written).toEqual([1]);
  });
});
