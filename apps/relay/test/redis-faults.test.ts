import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RedisProxy } from '../../../packages/bus/test/proxy.ts';
import { encodeEventMessage, EVENTS_CHANNEL } from '@paidrelay/bus';
import { storeEvents } from '@paidrelay/db';
import { backends, freshDatabase, newKey, RawClient, sign, sleep, startTestRelay, type TestRelay, until } from './harness.ts';

const databaseUrl = process.env.TEST_DATABASE_URL;
const redisUrl = process.env.TEST_REDIS_URL;
if (process.env.CI && (!databaseUrl || !redisUrl)) throw new Error('CI must set TEST_DATABASE_URL and TEST_REDIS_URL');

const http = (r: TestRelay, path: string) => fetch(r.url.replace('ws://', 'http://') + path);
const busUp = async (r: TestRelay) => /^relay_bus_up 1$/m.test(await (await http(r, '/metrics')).text());

function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  return Promise.race([p, sleep(ms).then(() => Promise.reject(new Error(`${what} took more than ${ms} ms`)))]);
}

/** The ids of the EVENT messages a client got on a subscription, with how many times each came. */
function counts(c: RawClient, subId: string): Map<string, number> {
  const m = new Map<string, number>();
  for (const msg of c.messages) {
    if (msg[0] !== 'EVENT' || msg[1] !== subId) continue;
    const id = (msg[2] as { id: string }).id;
    m.set(id, (m.get(id) ?? 0) + 1);
  }
  return m;
}

describe.runIf(databaseUrl && redisUrl)('Redis faults across replicas', () => {
  let db: Awaited<ReturnType<typeof freshDatabase>>;
  const relays: TestRelay[] = [];
  const proxies: RedisProxy[] = [];
  beforeAll(async () => {
    db = await freshDatabase();
  });
  afterAll(async () => {
    for (const r of relays) await r.stop().catch(() => {});
    for (const p of proxies) await p.close();
    await db?.drop();
  });

  it('a replica started while Redis is down serves its own clients, then joins the bus when Redis comes', async () => {
    const proxy = await RedisProxy.refusing(redisUrl!);
    proxies.push(proxy);
    const t0 = Date.now();
    const a = await within(
      startTestRelay('postgres', { REDIS_URL: proxy.url() }, { databaseUrl: db.url }),
      8_000,
      'starting without Redis',
    );
    relays.push(a);
    expect(Date.now() - t0).toBeLessThan(8_000);
    expect((await http(a, '/readyz')).status).toBe(200);
    expect(await (await http(a, '/metrics')).text()).toMatch(/^relay_bus_up 0$/m);

    // A second replica on the real Redis, subscribed before anything is published (a REQ made
    // later could get an event stored and then again live from the catch-up: see the report).
    const k = newKey();
    const b = await startTestRelay('postgres', { REDIS_URL: redisUrl! }, { databaseUrl: db.url });
    relays.push(b);
    const subB = await RawClient.open(b.url);
    await subB.req('b', { authors: [k.pubkey] });

    // local publish, REQ and live delivery among its own connections
    const subA = await RawClient.open(a.url);
    await subA.req('a', { authors: [k.pubkey] });
    const pubA = await RawClient.open(a.url);
    const local = sign(k.sk, { content: 'local while Redis is down' });
    pubA.send(['EVENT', local]);
    expect((await pubA.ok(local.id))[2]).toBe(true);
    expect(await subA.next((m) => m[0] === 'EVENT' && m[1] === 'a')).toEqual(['EVENT', 'a', local]);
    const localEph = sign(k.sk, { kind: 20001, content: 'ephemeral while Redis is down' });
    pubA.send(['EVENT', localEph]);
    await pubA.ok(localEph.id);
    expect(await subA.next((m) => m[0] === 'EVENT' && m[1] === 'a')).toEqual(['EVENT', 'a', localEph]);
    expect((await subA.req('q', { ids: [local.id] })).events).toEqual([local]);

    const during = sign(k.sk, { kind: 20001, content: 'published on a before Redis came' });
    pubA.send(['EVENT', during]);
    await pubA.ok(during.id);
    await proxy.listen();
    // what a published while Redis was away is delivered from its outbox, in order, once
    await until(() => counts(subB, 'b').size === 3, 10_000);
    expect(subB.messages.filter((m) => m[0] === 'EVENT')).toEqual([local, localEph, during].map((e) => ['EVENT', 'b', e]));
    subB.messages = [];
    await until(() => busUp(a), 10_000);

    // both ways
    const fromA = sign(k.sk, { content: 'from a, after' });
    pubA.send(['EVENT', fromA]);
    expect((await pubA.ok(fromA.id))[2]).toBe(true);
    expect(await subB.next((m) => m[0] === 'EVENT' && m[1] === 'b', 5_000)).toEqual(['EVENT', 'b', fromA]);
    const pubB = await RawClient.open(b.url);
    const fromB = sign(k.sk, { content: 'from b, after' });
    pubB.send(['EVENT', fromB]);
    expect((await pubB.ok(fromB.id))[2]).toBe(true);
    await subA.next((m) => m[0] === 'EVENT' && m[1] === 'a' && (m[2] as { id: string }).id === during.id);
    expect(await subA.next((m) => m[0] === 'EVENT' && m[1] === 'a', 5_000)).toEqual(['EVENT', 'a', fromA]);
    expect(await subA.next((m) => m[0] === 'EVENT' && m[1] === 'a', 5_000)).toEqual(['EVENT', 'a', fromB]);
    for (const c of [subA, pubA, subB, pubB]) c.close();
  });

  it('delivers each event at most once per subscription through repeated Redis cuts, and catches up', async () => {
    const proxyA = await RedisProxy.forwarding(redisUrl!);
    const proxyB = await RedisProxy.forwarding(redisUrl!);
    proxies.push(proxyA, proxyB);
    const a = await startTestRelay('postgres', { REDIS_URL: proxyA.url(), MAX_MESSAGES_PER_SECOND: '10000' }, { databaseUrl: db.url });
    const b = await startTestRelay('postgres', { REDIS_URL: proxyB.url() }, { databaseUrl: db.url });
    relays.push(a, b);
    await until(async () => (await busUp(a)) && (await busUp(b)));
    const k = newKey();
    const subB = await RawClient.open(b.url);
    await subB.req('s', { authors: [k.pubkey] });
    const subA = await RawClient.open(a.url);
    await subA.req('s', { authors: [k.pubkey] });
    const pub = await RawClient.open(a.url);

    const N = 150;
    const ids: string[] = [];
    let publishing = true;
    const load = (async () => {
      for (let i = 0; i < N; i++) {
        const ev = sign(k.sk, { kind: i % 3 === 0 ? 20001 : 1, content: `load ${i}` });
        ids.push(ev.id);
        pub.send(['EVENT', ev]);
        await sleep(25);
      }
      publishing = false;
    })();
    const faults = (async () => {
      for (let round = 0; round < 3 && publishing; round++) {
        await sleep(250);
        // the publisher's append reaches Redis, its reply is lost, the connection drops;
        // Redis then stays away for a while (what is published meanwhile waits in the outbox)
        await proxyA.loseNextAppendReply(50);
        await proxyA.refuse();
        await sleep(400);
        await proxyA.listen();
      }
      // the subscriber's replica loses Redis: it must catch up from where it was
      await proxyB.refuse();
      await sleep(400);
      await proxyB.listen();
    })();
    await Promise.all([load, faults]);
    await until(() => pub.messages.filter((m) => m[0] === 'OK').length === N, 10_000);
    expect(pub.messages.filter((m) => m[0] === 'OK' && m[2] !== true)).toEqual([]);

    // catch-up: everything published, during the cuts too, reaches the other replica's subscriber
    await until(() => counts(subB, 's').size === N, 20_000);
    await sleep(1_000); // room for late duplicates to show
    for (const [c, name] of [
      [subB, 'other replica'],
      [subA, 'same replica'],
    ] as const) {
      const got = counts(c, 's');
      expect([...got.keys()].sort(), name).toEqual([...ids].sort());
      expect(
        [...got.entries()].filter(([, n]) => n > 1),
        `${name}: delivered more than once`,
      ).toEqual([]);
    }
    for (const c of [subA, subB, pub]) c.close();
  });
});

describe.each(backends())("an event in a REQ's stored part and in a late bus catch-up (%s)", (backend) => {
  let relay: TestRelay;
  beforeAll(async () => {
    relay = await startTestRelay(backend);
  });
  afterAll(async () => {
    await relay?.stop();
  });

  it('is delivered to that subscription once', async () => {
    const k = newKey();
    const ev = sign(k.sk, { content: 'stored by another replica while the bus lagged' });
    const json = JSON.stringify(ev);
    // Another replica stored it; its bus message has not arrived yet.
    await storeEvents(relay.ctx.db.kysely, [{ event: ev, raw: json }], Math.floor(Date.now() / 1000));
    const c = await RawClient.open(relay.url);
    const { events } = await c.req('s', { authors: [k.pubkey] });
    expect(events.map((e) => e.id)).toEqual([ev.id]);
    // The bus catches up: the same event, from the other replica.
    relay.ctx.bus.publish(EVENTS_CHANNEL, encodeEventMessage('another-replica', json));
    await sleep(300);
    expect(c.messages.filter((m) => m[0] === 'EVENT')).toEqual([]);
    // A new event still arrives live.
    const next = sign(k.sk, { content: 'new' });
    relay.ctx.bus.publish(EVENTS_CHANNEL, encodeEventMessage('another-replica', JSON.stringify(next)));
    expect((await c.next((m) => m[0] === 'EVENT'))[2]).toEqual(next);
    c.close();
  });
});
