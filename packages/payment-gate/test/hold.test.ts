/**
 * The held-event queue (hold.ts): a burst is written in short batches with a pause between them
 * (a flood's opening burst must not be one long transaction that paying writers wait behind),
 * all of it, in order, within the memory bound. The writer is the test's: only the queue is tested.
 */
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
      100,
    );
    expect(q.add(item(1), 60)).toBe(true);
    expect(q.add(item(2), 60)).toBe(false);
    await q.drain();
    expect(q.add(item(3), 60)).toBe(true);
    await q.drain();
    expect(written).toEqual([1]);
  });
});
