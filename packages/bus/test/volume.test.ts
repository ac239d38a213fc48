import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { pino } from 'pino';
import { createClient } from 'redis';
import { LocalVolumes, RANK_KEEP, RedisVolumes, type VolumeCounters } from '../src/index.ts';

const log = pino({ level: 'silent' });
const redisUrl = process.env.TEST_REDIS_URL;
if (process.env.CI && !redisUrl) throw new Error('CI must set TEST_REDIS_URL');

async function until(pred: () => boolean, ms = 5000) {
  const end = Date.now() + ms;
  while (!pred()) {
    if (Date.now() > end) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 10));
  }
}

describe('local volume counters', () => {
  it('sum the window and forget slots that left it', async () => {
    let now = 1_000;
    const v = new LocalVolumes(() => now);
    const w = { slotSeconds: 10, slots: 3 };
    expect(await v.add('k', w, 1, 100)).toEqual({ events: 1, bytes: 100 });
    now += 10;
    expect(await v.add('k', w, 2, 50)).toEqual({ events: 3, bytes: 150 });
    expect(await v.add('other', w, 1, 1)).toEqual({ events: 1, bytes: 1 });
    now += 20; // the first slot is out of the window, the second still in it
    expect(await v.add('k', w, 0, 0)).toEqual({ events: 2, bytes: 50 });
    now += 10;
    expect(await v.add('k', w, 0, 0)).toEqual({ events: 0, bytes: 0 });
  });

  it('keep at most maxKeys counters, dropping the least recently used', async () => {
    const v = new LocalVolumes(() => 0, 2);
    const w = { slotSeconds: 60, slots: 60 };
    await v.add('a', w, 1, 0);
    await v.add('b', w, 1, 0);
    await v.add('a', w, 1, 0);
    await v.add('c', w, 1, 0); // drops b, the least recently used
    expect((await v.add('a', w, 0, 0)).events).toBe(2);
    expect((await v.add('b', w, 0, 0)).events).toBe(0);
  });

  it('rank a group\u2019s members over the window, heaviest first, with their sums', async () => {
    let now = 1_000;
    const v = new LocalVolumes(() => now);
    const w = { slotSeconds: 10, slots: 3 };
    await v.add('w:heavy', w, 5, 500, 'w:');
    await v.add('w:light', w, 1, 900, 'w:');
    await v.add('n:net', w, 50, 0); // not in the group
    now += 10;
    await v.add('w:heavy', w, 4, 400, 'w:');
    await v.add('w:mid', w, 3, 30, 'w:');
    expect(await v.top('w:', w, 10)).toEqual([
      { member: 'heavy', events: 9, bytes: 900 },
      { member: 'mid', events: 3, bytes: 30 },
      { member: 'light', events: 1, bytes: 900 },
    ]);
    expect((await v.top('w:', w, 1)).map((r) => r.member)).toEqual(['heavy']);
    now += 20; // the first slot has left the window
    expect(await v.top('w:', w, 10)).toEqual([
      { member: 'heavy', events: 4, bytes: 400 },
      { member: 'mid', events: 3, bytes: 30 },
    ]);
  });
});

describe.runIf(redisUrl)('redis volume counters', () => {
  const stores: VolumeCounters[] = [];
  const raw = createClient({ url: redisUrl });
  raw.on('error', () => {});
  beforeAll(async () => {
    await raw.connect();
  });
  afterAll(async () => {
    await Promise.all(stores.map((s) => s.close()));
    await raw.quit();
  });
  const open = async (prefix: string) => {
    const s = new RedisVolumes(redisUrl as string, log, { prefix, timeoutMs: 1_000 });
    stores.push(s);
    await until(() => s.usable());
    return s;
  };

  it('two replicas add to one counter, and it empties when the window has passed', async () => {
    const prefix = `test:vol:${randomBytes(6).toString('hex')}:`;
    const [a, b] = [await open(prefix), await open(prefix)];
    const w = { slotSeconds: 1, slots: 2 };
    expect(await a.add('pk', w, 1, 300)).toEqual({ events: 1, bytes: 300 });
    expect(await b.add('pk', w, 2, 200)).toEqual({ events: 3, bytes: 500 });
    expect(await a.add('net', w, 5, 0)).toEqual({ events: 5, bytes: 0 });
    // Quiet for longer than the window: the sender's count falls back to nothing.
    await new Promise((r) => setTimeout(r, 2_100));
    expect(await b.add('pk', w, 0, 0)).toEqual({ events: 0, bytes: 0 });
    expect(await a.add('pk', w, 1, 10)).toEqual({ events: 1, bytes: 10 });
  });

  it('ranks a group over two replicas: the heaviest member first, with the summed volume; bounded per slot', async () => {
    const prefix = `test:vol:${randomBytes(6).toString('hex')}:`;
    const [a, b] = [await open(prefix), await open(prefix)];
    const w = { slotSeconds: 60, slots: 60 };
    await a.add('w:60:heavy', w, 7, 700, 'w:60:');
    await b.add('w:60:heavy', w, 5, 500, 'w:60:');
    await b.add('w:60:light', w, 2, 20, 'w:60:');
    await a.add('w:60:unranked', w, 100, 0); // counted, not ranked
    await a.add('w:60:gone', w, 3, 3, 'w:60:');
    await a.add('w:60:gone', w, -3, -3, 'w:60:'); // taken back: nothing left
    expect(await b.top('w:60:', w, 10)).toEqual([
      { member: 'heavy', events: 12, bytes: 1_200 },
      { member: 'light', events: 2, bytes: 20 },
    ]);
    expect(await a.top('w:60:', w, 1)).toEqual([{ member: 'heavy', events: 12, bytes: 1_200 }]);
    // Another window shape is ranked apart (its slot numbers mean other times).
    expect(await a.top('w:60:', { slotSeconds: 1, slots: 10 }, 10)).toEqual([]);
    // A slot's set keeps the RANK_KEEP heaviest members.
    const many = Array.from({ length: RANK_KEEP + 50 }, (_, i) => a.add(`w:60:m${i}`, w, 1, 1, 'w:60:'));
    await Promise.all(many);
    // (Two sets if the minute turned meanwhile: none is over the bound either way.)
    const sets = await raw.keys(`${prefix}top:60/60:w:60:*`);
    const sizes = await Promise.all(sets.map((k) => raw.zCard(k)));
    expect(Math.max(...sizes)).toBeLessThanOrEqual(RANK_KEEP);
    expect(sizes.reduce((x, y) => x + y, 0)).toBeGreaterThanOrEqual(RANK_KEEP);
    expect((await a.top('w:60:', w, 2))[0]).toEqual({ member: 'heavy', events: 12, bytes: 1_200 });
  });

  it('counts the replicas that counted recently', async () => {
    const prefix = `test:vol:${randomBytes(6).toString('hex')}:`;
    const [a, b] = [await open(prefix), await open(prefix)];
    expect(await a.replicas('one', 10)).toBe(1);
    expect(await b.replicas('two', 10)).toBe(2);
    expect(await a.replicas('one', 10)).toBe(2);
  });

  it('is not usable and fails at once while Redis is unreachable', async () => {
    const s = new RedisVolumes('redis://127.0.0.1:1', log, { connectTimeoutMs: 200 });
    stores.push(s);
    expect(s.usable()).toBe(false);
    await expect(s.add('pk', { slotSeconds: 60, slots: 60 }, 1, 1)).rejects.toThrow(/not connected/);
  });
});
