import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RedisVolumes } from '@paidrelay/bus';
import { createLogger } from '@paidrelay/config';
import { TcpProxy } from '../../relay/test/tcp-proxy.ts';
import { until } from '../../relay/test/harness.ts';
import { SharedCounters } from '../src/volumes.ts';

/** The admission API's shared counters while Redis stalls: it errs on the side of charging. */

const redisUrl = process.env.TEST_REDIS_URL;
if (process.env.CI && !redisUrl) throw new Error('CI must set TEST_REDIS_URL');
const log = createLogger('silent', 'counters-test');
const W = { slotSeconds: 60, slots: 60 };

describe.runIf(redisUrl)('SharedCounters (Redis through a proxy)', () => {
  let proxy: TcpProxy;
  let counters: SharedCounters;
  let direct: RedisVolumes;
  beforeAll(async () => {
    const u = new URL(redisUrl as string);
    proxy = await TcpProxy.start({ host: u.hostname, port: Number(u.port || 6379) });
    const via = new URL(redisUrl as string);
    via.hostname = '127.0.0.1';
    via.port = String(proxy.port);
    counters = new SharedCounters(new RedisVolumes(via.toString(), log, { timeoutMs: 500 }), log);
    direct = new RedisVolumes(redisUrl as string, log, { timeoutMs: 2_000 });
  });
  afterAll(async () => {
    await counters?.close();
    await direct?.close();
    await proxy?.close();
  });

  it('answers the last total seen (never 0) plus its own counts while Redis stalls, and sends them when it is back', async () => {
    const key = `a:test:${randomBytes(6).toString('hex')}`;
    await until(() => direct.usable());
    await direct.add(key, W, 5, 0); // another replica's admissions
    await until(async () => (await counters.read(key, W)).events === 5); // connected
    await counters.count(key, W, { events: 1, bytes: 0 });
    expect((await counters.read(key, W)).events).toBe(6);
    proxy.pause();
    // Stalled: each read waits at most its timeout, then answers what it last saw.
    expect((await counters.read(key, W)).events).toBe(6);
    await counters.count(key, W, { events: 1, bytes: 0 });
    expect((await counters.read(key, W)).events).toBe(7);
    proxy.resume();
    // The count kept while Redis stalled reaches it (once the client has reconnected).
    await until(async () => (await direct.add(key, W, 0, 0)).events >= 7, 15_000);
    expect((await direct.add(key, W, 0, 0)).events).toBe(7);
    expect((await counters.read(key, W)).events).toBe(7);
  });
});
