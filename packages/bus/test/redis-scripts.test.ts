import net from 'node:net';
import { afterAll, describe, expect, it } from 'vitest';
import { pino } from 'pino';
import { RedisScripts, script } from '../src/index.ts';

const redisUrl = process.env.TEST_REDIS_URL;
if (process.env.CI && !redisUrl) throw new Error('CI must set TEST_REDIS_URL');

const ONE = script('return 1');

/**
 * A TCP hop to Redis that can make it slow (every reply delivered `delayMs` late) or silent (no
 * reply at all, the connection left open: half-open). Counts the connections made through it.
 */
class SlowProxy {
  delayMs = 0;
  mute = false;
  accepted = 0;
  /** Replies read from Redis and not yet passed on. */
  pending = 0;
  private sockets = new Set<net.Socket>();
  private constructor(
    private readonly server: net.Server,
    readonly url: string,
  ) {}

  static async open(redisUrl: string): Promise<SlowProxy> {
    const target = new URL(redisUrl);
    const server = net.createServer();
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
    const p = new SlowProxy(server, `redis://127.0.0.1:${(server.address() as net.AddressInfo).port}`);
    server.on('connection', (client) => {
      p.accepted++;
      const upstream = net.connect(Number(target.port || 6379), target.hostname);
      p.sockets.add(client).add(upstream);
      const drop = () => {
        client.destroy();
        upstream.destroy();
      };
      client.on('error', drop).on('close', drop);
      upstream.on('error', drop).on('close', drop);
      client.on('data', (chunk: Buffer) => upstream.write(chunk));
      upstream.on('data', (chunk: Buffer) => {
        if (p.mute) return;
        p.pending++;
        setTimeout(() => {
          p.pending--;
          if (!client.destroyed) client.write(chunk);
        }, p.delayMs);
      });
    });
    return p;
  }

  async close(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    await new Promise<void>((r) => this.server.close(() => r()));
  }
}

async function until(pred: () => boolean, ms = 10_000): Promise<void> {
  const end = Date.now() + ms;
  while (!pred()) {
    if (Date.now() > end) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** Keeps this thread busy for `ms`, as a CPU-starved or overloaded replica is. */
function busy(ms: number): void {
  const end = performance.now() + ms;
  while (performance.now() < end) {
    // spin
  }
}

describe.runIf(redisUrl)('Redis scripts under stalls (through a proxy)', () => {
  const opened: { proxy: SlowProxy; scripts: RedisScripts }[] = [];
  afterAll(async () => {
    for (const o of opened) {
      await o.scripts.close();
      await o.proxy.close();
    }
  });

  /** A runner through a fresh proxy, ready, with its log lines. */
  const open = async () => {
    const proxy = await SlowProxy.open(redisUrl as string);
    const lines: string[] = [];
    const log = pino({ level: 'info' }, { write: (s: string) => lines.push(s) });
    const scripts = new RedisScripts(proxy.url, log, { timeoutMs: 50, stallBackoffMs: 0, what: 'test' });
    opened.push({ proxy, scripts });
    await until(() => scripts.usable());
    expect(await scripts.run(ONE, [], [])).toBe(1);
    const reconnects = () => lines.filter((l) => l.includes('Redis stopped answering')).length;
    return { proxy, scripts, reconnects };
  };

  it('a miss while its own event loop was late does not count towards a reconnect; three real silences do', async () => {
    const { proxy, scripts, reconnects } = await open();
    proxy.mute = true;
    // The timer fires three times the bound late: Redis had no fair chance, whatever it did.
    for (let i = 0; i < 4; i++) {
      const p = scripts.run(ONE, [], []);
      busy(150);
      await expect(p).rejects.toThrow('no reply from Redis within 50 ms');
    }
    expect(reconnects()).toBe(0);
    expect(proxy.accepted).toBe(1);
    // The same silence with the loop on time: after three in a row the connection is made again.
    // (Three in a row, unless this busy machine made one of those timers late too: then one more.)
    let misses = 0;
    while (reconnects() === 0 && misses < 30) {
      await expect(scripts.run(ONE, [], [])).rejects.toThrow('no reply from Redis within 50 ms');
      misses++;
    }
    expect(reconnects()).toBe(1);
    expect(misses).toBeGreaterThanOrEqual(3);
    await until(() => proxy.accepted === 2);
  });

  it('commands that miss together are one miss, and a late reply starts the count again: a slow Redis is not reconnected', async () => {
    const { proxy, scripts, reconnects } = await open();
    proxy.delayMs = 150;
    for (let round = 0; round < 3; round++) {
      const misses = await Promise.allSettled([1, 2, 3].map(() => scripts.run(ONE, [], [])));
      expect(misses.map((m) => m.status)).toEqual(['rejected', 'rejected', 'rejected']);
      // The replies come, late: the connection is alive.
      await until(() => proxy.pending === 0);
      await new Promise((r) => setImmediate(r));
    }
    expect(reconnects()).toBe(0);
    expect(proxy.accepted).toBe(1);
    proxy.delayMs = 0;
    expect(await scripts.run(ONE, [], [])).toBe(1);
  });
});
