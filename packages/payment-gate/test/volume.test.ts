import { randomBytes } from 'node:crypto';
import { afterAll, describe, expect, it } from 'vitest';
import { pino } from 'pino';
import { RedisVolumes } from '@paidrelay/bus';
import { RedisProxy } from '../../bus/test/proxy.ts';
import { VolumeTracker } from '../src/volume.ts';

const log = pino({ level: 'silent' });
const redisUrl = process.env.TEST_REDIS_URL;
if (process.env.CI && !redisUrl) throw new Error('CI must set TEST_REDIS_URL');
const HOUR = { slotSeconds: 60, slots: 60 };

async function until(pred: () => boolean, ms = 5000) {
  const end = Date.now() + ms;
  while (!pred()) {
    if (Date.now() > end) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 10));
  }
}

describe.runIf(redisUrl)('volume tracker', () => {
  const closers: (() => Promise<void>)[] = [];
  afterAll(async () => {
    for (const c of closers.reverse()) await c();
  });
  const replica = async (url: string, prefix: string, id: string) => {
    const store = new RedisVolumes(url, log, { prefix, timeoutMs: 1_000, connectTimeoutMs: 300 });
    const t = new VolumeTracker(store, id, log, 20);
    t.start();
    closers.push(
      () => store.close(),
      () => t.close(),
    );
    await until(() => store.usable());
    return { store, t };
  };

  it('two replicas see one total: a sender spread over both counts once', async () => {
    const prefix = `test:vt:${randomBytes(6).toString('hex')}:`;
    const a = await replica(redisUrl as string, prefix, 'a');
    const b = await replica(redisUrl as string, prefix, 'b');
    for (let i = 0; i < 30; i++) (i % 2 ? a : b).t.count('pk:x', HOUR, 1, 100);
    // Before a flush, each replica knows at least its own counts.
    expect(a.t.view('pk:x', HOUR).events).toBeGreaterThanOrEqual(15);
    await until(() => a.t.view('pk:x', HOUR).events === 30 && b.t.view('pk:x', HOUR).events === 30);
    expect(b.t.view('pk:x', HOUR)).toEqual({ events: 30, bytes: 3_000 });
  });

  it('counts on their way to Redis stay in the view until the reply has them', async () => {
    const prefix = `test:vt:${randomBytes(6).toString('hex')}:`;
    const store = new RedisVolumes(redisUrl as string, log, { prefix, timeoutMs: 1_000, connectTimeoutMs: 300 });
    closers.push(() => store.close());
    await until(() => store.usable());
    // The store's replies are held back until released: the view is read while a count is in flight.
    let release: () => void = () => {};
    let held = 0;
    let answered: Promise<unknown> = Promise.resolve();
    const slow: typeof store = Object.create(store);
    slow.add = async (...a: Parameters<typeof store.add>) => {
      held++;
      await new Promise<void>((r) => (release = r));
      answered = store.add(...a);
      return answered as ReturnType<typeof store.add>;
    };
    const t = new VolumeTracker(slow, 'slow', log, 60_000);
    closers.push(() => t.close());
    t.count('pk:z', HOUR, 3, 30);
    await until(() => held === 1);
    expect(t.view('pk:z', HOUR)).toEqual({ events: 3, bytes: 30 });
    release();
    await until(() => held === 1 && t.view('pk:z', HOUR).events === 3);
    await answered;
    await new Promise((r) => setImmediate(r));
    t.count('pk:z', HOUR, 1, 10);
    const flushed = t.flush();
    await until(() => held === 2);
    expect(t.view('pk:z', HOUR)).toEqual({ events: 4, bytes: 40 });
    release();
    await flushed;
    expect(t.view('pk:z', HOUR)).toEqual({ events: 4, bytes: 40 });
  });

  it('while Redis is down, counts are kept and multiplied by the replicas last seen; sent when it is back', async () => {
    const prefix = `test:vt:${randomBytes(6).toString('hex')}:`;
    const proxy = await RedisProxy.forwarding(redisUrl as string);
    closers.push(() => proxy.refuse());
    const a = await replica(proxy.url(), prefix, 'a');
    const b = await replica(redisUrl as string, prefix, 'b');
    // b follows the counter too (a replica reads the totals of counters it has counted in).
    b.t.count('pk:y', HOUR, 0, 0);
    await b.t.flush();
    await until(() => {
      void a.t.flush();
      return a.t.replicasSeen === 2;
    });
    await proxy.refuse();
    await until(() => !a.store.usable());
    for (let i = 0; i < 10; i++) a.t.count('pk:y', HOUR, 1, 10);
    // Two replicas were alive: the one cut off from Redis charges as if the other saw as much.
    expect(a.t.view('pk:y', HOUR)).toEqual({ events: 20, bytes: 200 });
    await proxy.listen();
    await until(() => a.store.usable(), 10_000);
    await until(() => b.t.view('pk:y', HOUR).events === 10, 10_000);
    expect(a.t.view('pk:y', HOUR)).toEqual({ events: 10, bytes: 100 });
  });
});
