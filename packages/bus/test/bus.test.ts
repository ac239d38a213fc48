import { afterAll, describe, expect, it } from 'vitest';
import { pino } from 'pino';
import { createClient } from 'redis';
import { createBus, RecentIds, type Bus } from '../src/index.ts';
import { RedisProxy } from './proxy.ts';

const log = pino({ level: 'silent' });
const redisUrl = process.env.TEST_REDIS_URL;
if (process.env.CI && !redisUrl) throw new Error('CI must set TEST_REDIS_URL');

function collect(bus: Bus, channel: string) {
  const got: { message: string; origin: string }[] = [];
  return { got, ready: bus.subscribe(channel, (message, origin) => got.push({ message, origin })) };
}

async function until(pred: () => boolean, ms = 5000) {
  const end = Date.now() + ms;
  while (!pred()) {
    if (Date.now() > end) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 10));
  }
}

describe('memory bus', () => {
  it('delivers to this process with its own origin', async () => {
    const bus = await createBus({ logger: log });
    const c = collect(bus, 'x');
    await c.ready;
    bus.publish('x', 'hello');
    bus.publish('y', 'elsewhere');
    await until(() => c.got.length === 1);
    expect(c.got).toEqual([{ message: 'hello', origin: bus.id }]);
    await bus.close();
  });
});

describe.runIf(redisUrl)('redis bus', () => {
  const buses: Bus[] = [];
  afterAll(async () => {
    await Promise.all(buses.map((b) => b.close()));
  });

  it('carries messages between two processes in order, tagged with the sender', async () => {
    const channel = 'test-' + Math.random().toString(36).slice(2);
    const a = await createBus({ redisUrl, logger: log });
    const b = await createBus({ redisUrl, logger: log });
    buses.push(a, b);
    const onB = collect(b, channel);
    await onB.ready;
    for (let i = 0; i < 100; i++) a.publish(channel, `m${i}`);
    await until(() => onB.got.length === 100);
    expect(onB.got.map((g) => g.message)).toEqual(Array.from({ length: 100 }, (_, i) => `m${i}`));
    expect(new Set(onB.got.map((g) => g.origin))).toEqual(new Set([a.id]));
    expect(a.healthy()).toBe(true);
  });

  it('REDIS_PREFIX keeps two relays on one Redis apart: the same channel under another prefix hears nothing', async () => {
    const channel = 'test-' + Math.random().toString(36).slice(2);
    const prefix = `test:${Math.random().toString(36).slice(2)}:`;
    const a = await createBus({ redisUrl, logger: log, redis: { prefix } });
    const same = await createBus({ redisUrl, logger: log, redis: { prefix } });
    const other = await createBus({ redisUrl, logger: log });
    buses.push(a, same, other);
    const onSame = collect(same, channel);
    const onOther = collect(other, channel);
    await Promise.all([onSame.ready, onOther.ready]);
    for (let i = 0; i < 5; i++) a.publish(channel, `m${i}`);
    other.publish(channel, 'unprefixed');
    await until(() => onSame.got.length === 5 && onOther.got.length === 1);
    // The messages of each prefix arrived; none crossed over (the stream is read in order).
    other.publish(channel, 'last');
    await until(() => onOther.got.length === 2);
    expect(onOther.got.map((g) => g.message)).toEqual(['unprefixed', 'last']);
    expect(onSame.got.map((g) => g.message)).toEqual(['m0', 'm1', 'm2', 'm3', 'm4']);
  });

  it('a subscriber that starts later does not replay old messages', async () => {
    const channel = 'test-' + Math.random().toString(36).slice(2);
    const a = await createBus({ redisUrl, logger: log });
    buses.push(a);
    const first = collect(a, channel);
    await first.ready;
    a.publish(channel, 'old');
    await until(() => first.got.length === 1);
    const late = await createBus({ redisUrl, logger: log });
    buses.push(late);
    const c = collect(late, channel);
    await c.ready;
    a.publish(channel, 'new');
    await until(() => c.got.length >= 1);
    await new Promise((r) => setTimeout(r, 100));
    expect(c.got.map((g) => g.message)).toEqual(['new']);
  });
});

/** A TCP hop to Redis that the test can cut and restore, to play an outage. */
async function cuttableProxy(target: URL) {
  const net = await import('node:net');
  const sockets = new Set<import('node:net').Socket>();
  let server: import('node:net').Server | null = null;
  let port = 0;
  const listen = () =>
    new Promise<void>((resolve) => {
      server = net.createServer((client) => {
        const upstream = net.connect(Number(target.port || 6379), target.hostname);
        for (const s of [client, upstream]) {
          sockets.add(s);
          s.on('close', () => sockets.delete(s));
          s.on('error', () => s.destroy());
        }
        client.pipe(upstream).pipe(client);
      });
      server.listen(port, '127.0.0.1', () => {
        port = (server!.address() as { port: number }).port;
        resolve();
      });
    });
  await listen();
  return {
    url: () => `redis://127.0.0.1:${port}`,
    cut: async () => {
      await new Promise<void>((r) => {
        server!.close(() => r());
        for (const s of sockets) s.destroy();
      });
    },
    restore: listen,
    close: async () => {
      for (const s of sockets) s.destroy();
      await new Promise<void>((r) => (server!.listening ? server!.close(() => r()) : r()));
    },
  };
}

describe.runIf(redisUrl)('redis bus through an outage', () => {
  it('keeps what was published while Redis was away, and a reader catches up afterwards', async () => {
    const channel = 'test-' + Math.random().toString(36).slice(2);
    const proxyA = await cuttableProxy(new URL(redisUrl!));
    const proxyB = await cuttableProxy(new URL(redisUrl!));
    const a = await createBus({ redisUrl: proxyA.url(), logger: log });
    const b = await createBus({ redisUrl: proxyB.url(), logger: log });
    const third = await createBus({ redisUrl, logger: log });
    const onB = collect(b, channel);
    await onB.ready;
    a.publish(channel, 'before');
    await until(() => onB.got.length === 1);

    // the publisher loses Redis: its messages wait in its outbox
    await proxyA.cut();
    await until(() => !a.healthy());
    a.publish(channel, 'during-a');
    // the reader loses Redis while someone else publishes: it must catch up later
    await proxyB.cut();
    third.publish(channel, 'during-b');
    await new Promise((r) => setTimeout(r, 300));
    expect(onB.got.map((g) => g.message)).toEqual(['before']);

    await proxyA.restore();
    await proxyB.restore();
    await until(() => onB.got.length === 3, 10_000);
    expect(onB.got.map((g) => g.message).sort()).toEqual(['before', 'during-a', 'during-b']);
    await Promise.all([a.close(), b.close(), third.close()]);
    await proxyA.close();
    await proxyB.close();
  });
});

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const fresh = () => 'test-' + Math.random().toString(36).slice(2);

describe('recent ids', () => {
  it('remembers the last N ids and forgets the oldest first', () => {
    const r = new RecentIds(3);
    expect([r.add('a'), r.add('b'), r.add('a'), r.add('c'), r.add('d')]).toEqual([true, true, false, true, true]);
    expect([r.has('a'), r.has('b'), r.has('c'), r.has('d'), r.size]).toEqual([false, true, true, true, 3]);
    expect(r.add('a')).toBe(true);
  });
});

describe.runIf(redisUrl)('redis bus faults', () => {
  it('starts and subscribes without Redis (bounded), then joins the bus when Redis comes', async () => {
    const channel = fresh();
    const proxy = await RedisProxy.refusing(redisUrl!);
    const t0 = Date.now();
    const a = await createBus({ redisUrl: proxy.url(), logger: log });
    const onA = collect(a, channel);
    await onA.ready;
    expect(Date.now() - t0).toBeLessThan(2_500);
    expect(a.healthy()).toBe(false);
    a.publish(channel, 'from-a-while-away');
    const b = await createBus({ redisUrl, logger: log });
    const onB = collect(b, channel);
    await onB.ready;
    await proxy.listen();
    // what a published while Redis was away reaches b from a's outbox
    await until(() => onB.got.length === 1, 10_000);
    expect(onB.got).toEqual([{ message: 'from-a-while-away', origin: a.id }]);
    await until(() => a.healthy(), 10_000);
    b.publish(channel, 'from-b');
    await until(() => onA.got.some((g) => g.message === 'from-b'), 5_000);
    await Promise.all([a.close(), b.close()]);
    await proxy.close();
  });

  it('a batch whose reply is lost is retried without being appended twice', async () => {
    const channel = fresh();
    const proxy = await RedisProxy.forwarding(redisUrl!);
    const a = await createBus({ redisUrl: proxy.url(), logger: log });
    const b = await createBus({ redisUrl, logger: log });
    const onB = collect(b, channel);
    await onB.ready;
    const lost = proxy.loseNextAppendReply(50);
    for (let i = 0; i < 20; i++) a.publish(channel, `m${i}`);
    await lost;
    for (let i = 20; i < 40; i++) a.publish(channel, `m${i}`);
    await until(() => onB.got.length >= 40, 10_000);
    await sleep(300);
    expect(onB.got.map((g) => g.message)).toEqual(Array.from({ length: 40 }, (_, i) => `m${i}`));
    const raw = createClient({ url: redisUrl });
    await raw.connect();
    const entries = await raw.xRange('paidrelay:bus:' + channel, '-', '+');
    await raw.close();
    expect(entries?.length).toBe(40); // in the stream once each, not only delivered once
    await Promise.all([a.close(), b.close()]);
    await proxy.close();
  });

  it('a reader delivers an entry of the same sender and sequence number once', async () => {
    const channel = fresh();
    const b = await createBus({ redisUrl, logger: log });
    const onB = collect(b, channel);
    await onB.ready;
    const raw = createClient({ url: redisUrl });
    await raw.connect();
    const key = 'paidrelay:bus:' + channel;
    for (const [s, m] of [
      ['1', 'a'],
      ['2', 'b'],
      ['1', 'a'],
      ['2', 'b'],
      ['3', 'c'],
    ])
      await raw.xAdd(key, '*', { o: 'other', s, m });
    await raw.close();
    await until(() => onB.got.length >= 3);
    await sleep(300);
    expect(onB.got.map((g) => g.message)).toEqual(['a', 'b', 'c']);
    await b.close();
  });

  it('a connection that stops answering (half-open) is dropped within the bound and made again', async () => {
    const channel = fresh();
    const proxy = await RedisProxy.forwarding(redisUrl!);
    const opts = { commandTimeoutMs: 500, blockMs: 500 };
    const a = await createBus({ redisUrl: proxy.url(), logger: log, redis: opts });
    const b = await createBus({ redisUrl: proxy.url(), logger: log, redis: opts });
    const onB = collect(b, channel);
    await onB.ready;
    a.publish(channel, 'before');
    await until(() => onB.got.length === 1);
    proxy.muteOpenConnections();
    a.publish(channel, 'x'); // reaches Redis, the reply never comes back
    await sleep(700);
    a.publish(channel, 'y');
    await until(() => onB.got.length >= 3, 10_000);
    await sleep(300);
    expect(onB.got.map((g) => g.message)).toEqual(['before', 'x', 'y']);
    await Promise.all([a.close(), b.close()]);
    await proxy.close();
  });
});

describe.runIf(redisUrl)('redis bus: a missed message is seen (onLoss)', () => {
  const lossesOf = (bus: Bus) => {
    const seen = { n: 0 };
    bus.onLoss(() => seen.n++);
    return seen;
  };

  it('says nothing while every message arrives, from a sender heard from its first message on', async () => {
    const channel = fresh();
    const a = await createBus({ redisUrl, logger: log });
    const b = await createBus({ redisUrl, logger: log });
    const losses = lossesOf(b);
    const onB = collect(b, channel);
    await onB.ready;
    for (let i = 0; i < 200; i++) a.publish(channel, `m${i}`);
    a.publish(fresh(), 'another channel: its own numbering');
    for (let i = 200; i < 300; i++) a.publish(channel, `m${i}`);
    await until(() => onB.got.length === 300);
    expect(losses.n).toBe(0);
    await Promise.all([a.close(), b.close()]);
  });

  it('a gap in a sender numbering, a sender first heard past its first message, a message without a number: each is a loss', async () => {
    const channel = fresh();
    const b = await createBus({ redisUrl, logger: log });
    const losses = lossesOf(b);
    const onB = collect(b, channel);
    await onB.ready;
    const raw = createClient({ url: redisUrl });
    await raw.connect();
    const key = 'paidrelay:bus:' + channel;
    const add = (fields: Record<string, string>) => raw.xAdd(key, '*', fields);
    await add({ o: 'x', s: '1', c: '1', m: 'x1' });
    await add({ o: 'x', s: '2', c: '2', m: 'x2' });
    await until(() => onB.got.length === 2);
    expect(losses.n).toBe(0);
    await add({ o: 'x', s: '5', c: '4', m: 'x4' }); // x's 3rd on this channel never came
    await until(() => onB.got.length === 3);
    expect(losses.n).toBe(1);
    await add({ o: 'y', s: '9', c: '7', m: 'y7' }); // y's 1st to 6th may have been missed
    await until(() => onB.got.length === 4);
    expect(losses.n).toBe(2);
    await add({ o: 'z', s: '1', m: 'z' }); // unnumbered (an older sender)
    await until(() => onB.got.length === 5);
    expect(losses.n).toBe(3);
    await add({ o: 'x', s: '6', c: '5', m: 'x5' });
    await until(() => onB.got.length === 6);
    expect(losses.n).toBe(3);
    expect(onB.got.map((g) => g.message)).toEqual(['x1', 'x2', 'x4', 'y7', 'z', 'x5']);
    await raw.close();
    await b.close();
  });

  it("a sender's outbox that overflowed while it was cut off shows as a gap once it is back", async () => {
    const channel = fresh();
    const proxyA = await cuttableProxy(new URL(redisUrl!));
    const a = await createBus({ redisUrl: proxyA.url(), logger: log });
    const b = await createBus({ redisUrl, logger: log });
    const losses = lossesOf(b);
    const onB = collect(b, channel);
    await onB.ready;
    a.publish(channel, 'first');
    await until(() => onB.got.length === 1);
    await proxyA.cut();
    await until(() => !a.healthy());
    // One more than the outbox holds: the oldest of them is dropped.
    for (let i = 0; i < 50_001; i++) a.publish(channel, `m${i}`);
    await proxyA.restore();
    await until(() => onB.got.length === 50_001, 30_000);
    expect(onB.got[1].message).toBe('m1');
    expect(losses.n).toBe(1);
    await Promise.all([a.close(), b.close()]);
    await proxyA.close();
  }, 40_000);

  it('a reader that resumes after the stream was trimmed past it reports a loss; one that finds its place does not', async () => {
    const channel = fresh();
    const proxyB = await cuttableProxy(new URL(redisUrl!));
    const a = await createBus({ redisUrl, logger: log });
    const b = await createBus({ redisUrl: proxyB.url(), logger: log });
    const losses = lossesOf(b);
    const onB = collect(b, channel);
    await onB.ready;
    a.publish(channel, 'one');
    await until(() => onB.got.length === 1);
    // Cut off and back with nothing trimmed: it catches up, nothing lost.
    await proxyB.cut();
    await until(() => !b.healthy());
    a.publish(channel, 'two');
    await proxyB.restore();
    await until(() => onB.got.length === 2, 10_000);
    expect(losses.n).toBe(0);
    // Cut off again, and the stream trimmed of everything meanwhile (as MAXLEN trims a long outage).
    await proxyB.cut();
    await until(() => !b.healthy());
    const raw = createClient({ url: redisUrl });
    await raw.connect();
    await raw.xTrim('paidrelay:bus:' + channel, 'MAXLEN', 0);
    await raw.close();
    await proxyB.restore();
    await until(() => losses.n === 1, 10_000);
    a.publish(channel, 'three');
    await until(() => onB.got.length === 3, 10_000);
    expect(losses.n).toBe(1);
    await Promise.all([a.close(), b.close()]);
    await proxyB.close();
  }, 30_000);
});
