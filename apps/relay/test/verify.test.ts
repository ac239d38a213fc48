/**
 * The signature worker pool on its own: a worker that dies is reported (the relay logs it),
 * its batch is answered with an error rather than a verdict, and a new worker takes over.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MAX_LATER_PER_BATCH, VerifyPool } from '../src/verify.ts';
import { newKey, sign, until } from './harness.ts';

type Internals = {
  workers: { worker: { terminate(): Promise<number>; threadId: number; postMessage(msg: unknown): void } }[];
  inflight: Map<number, unknown>;
};

describe('VerifyPool', () => {
  const errors: Error[] = [];
  let pool: VerifyPool;
  beforeAll(async () => {
    pool = await VerifyPool.start(1, (err) => errors.push(err));
  });
  afterAll(() => pool.close());

  it('sends a batch as one string of fixed-width records and answers each item of it', async () => {
    const k = newKey();
    const good = sign(k.sk, { content: 'one' });
    const other = sign(newKey().sk, { content: 'two' });
    const flip = (hex: string) => hex.replace(/^./, (c) => (c === '0' ? '1' : '0'));
    const worker = (pool as unknown as Internals).workers[0].worker;
    const sent: unknown[] = [];
    const post = worker.postMessage.bind(worker);
    worker.postMessage = (msg: unknown) => {
      sent.push(msg);
      post(msg);
    };
    try {
      // One tick: one batch. Items that cannot be records (wrong widths) are answered at once and
      // take no place in it, so they cannot shift the records after them.
      const items = [
        good,
        { ...good, sig: flip(good.sig) },
        { ...good, id: good.id.slice(2) },
        { ...good, sig: `${good.sig}00` },
        { ...good, pubkey: good.pubkey.toUpperCase() },
        other,
        { ...other, pubkey: good.pubkey },
        { ...good, id: 'zz'.repeat(32) },
        other,
      ];
      const verdicts = await Promise.all(items.map((ev) => pool.verify(ev)));
      expect(verdicts).toEqual([true, false, false, false, false, true, false, false, true]);
      expect(sent).toHaveLength(1);
      const { records } = sent[0] as { records: unknown };
      expect(typeof records).toBe('string');
      expect((records as string).length).toBe(7 * 256);
      expect((records as string).slice(0, 256)).toBe(good.id + good.pubkey + good.sig);
    } finally {
      worker.postMessage = post;
    }
  });

  it('reports a worker that dies, once; fails its batch; replaces it', async () => {
    const k = newKey();
    const good = sign(k.sk, { content: 'checked' });
    expect(await pool.verify(good)).toBe(true);
    const internals = pool as unknown as Internals;
    const crashed = internals.workers[0].worker.threadId;
    // Enough work that batches are still with the worker when it dies.
    const inFlight = Array.from({ length: 4096 }, () => pool.verify(good).then(String, (err: Error) => err.message));
    await new Promise((r) => setImmediate(r)); // the first batch has been sent
    expect(internals.inflight.size).toBe(1);
    await internals.workers[0].worker.terminate();
    const answers = new Set(await Promise.all(inFlight));
    expect(answers.has('signature worker crashed: signature worker exited with code 1')).toBe(true);
    expect(answers.has('false')).toBe(false); // never a verdict it did not reach
    await until(() => internals.workers.length === 1 && internals.workers[0].worker.threadId !== crashed);
    expect(errors).toHaveLength(1);
    expect(errors[0].message).toMatch(/signature worker exited with code 1/);
    expect(await pool.verify(good)).toBe(true);
    expect(await pool.verify({ ...good, sig: good.sig.replace(/^./, (c) => (c === '0' ? '1' : '0')) })).toBe(false);
  });
  it('checks events marked `later` after every other waiting event: a flood cannot delay a paying writer', async () => {
    const k = newKey();
    const flood = Array.from({ length: 700 }, (_, i) => sign(k.sk, { content: `flood ${i}` }));
    const paying = sign(newKey().sk, { content: 'paid' });
    const order: string[] = [];
    // One tick: 700 marked `later`, then one without. A batch holds 256 records.
    const all = [
      ...flood.map((ev) => pool.verify(ev, true).then((ok) => order.push(ok ? 'flood' : 'bad'))),
      pool.verify(paying).then((ok) => order.push(ok ? 'paying' : 'bad')),
    ];
    await Promise.all(all);
    expect(order).not.toContain('bad');
    // Answered with the first batch, not after the 700 queued before it.
    expect(order.indexOf('paying')).toBeLessThan(256);
  });
  it('puts at most MAX_LATER_PER_BATCH `later` events in a batch, and 256 others in one', async () => {
    const sizes: number[] = [];
    const own = await VerifyPool.start(
      1,
      (err) => errors.push(err),
      (n) => sizes.push(n),
    );
    try {
      const k = newKey();
      const flood = Array.from({ length: 100 }, (_, i) => sign(k.sk, { content: `flood ${i}` }));
      const oks = await Promise.all(flood.map((ev) => own.verify(ev, true)));
      expect(oks.every(Boolean)).toBe(true);
      // A worker busy with a flood's batch keeps a paying writer's signature waiting only that long.
      expect(sizes).toEqual([32, 32, 32, 4]);
      expect(MAX_LATER_PER_BATCH).toBe(32);
      sizes.length = 0;
      const paying = Array.from({ length: 256 }, (_, i) => sign(k.sk, { content: `paid ${i}` }));
      expect((await Promise.all(paying.map((ev) => own.verify(ev)))).every(Boolean)).toBe(true);
      expect(sizes).toEqual([256]);
    } finally {
      await own.close();
    }
  });
});
