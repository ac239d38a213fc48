import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import pg from 'pg';
import { freshDatabase, newKey, RawClient, sign, sleep, startTestRelay, type TestRelay, until } from './harness.ts';

const databaseUrl = process.env.TEST_DATABASE_URL;
const redisUrl = process.env.TEST_REDIS_URL;
if (process.env.CI && (!databaseUrl || !redisUrl)) throw new Error('CI must set TEST_DATABASE_URL and TEST_REDIS_URL');

describe.runIf(databaseUrl && redisUrl)('two replicas sharing Postgres and Redis', () => {
  let db: Awaited<ReturnType<typeof freshDatabase>>;
  let a: TestRelay;
  let b: TestRelay;
  beforeAll(async () => {
    db = await freshDatabase();
    a = await startTestRelay('postgres', { REDIS_URL: redisUrl! }, { databaseUrl: db.url });
    b = await startTestRelay('postgres', { REDIS_URL: redisUrl! }, { databaseUrl: db.url });
  });
  afterAll(async () => {
    await a?.stop();
    await b?.stop();
    await db?.drop();
  });

  it('an event published on one replica reaches subscribers on the other, and is stored once', async () => {
    const k = newKey();
    const sub = await RawClient.open(a.url);
    await sub.req('x', { authors: [k.pubkey] });
    const pub = await RawClient.open(b.url);
    const ev = sign(k.sk, { content: 'across replicas' });
    pub.send(['EVENT', ev]);
    expect((await pub.ok(ev.id))[2]).toBe(true);
    expect(await sub.next((m) => m[0] === 'EVENT', 5000)).toEqual(['EVENT', 'x', ev]);
    const eph = sign(k.sk, { kind: 20000, content: 'ephemeral across' });
    pub.send(['EVENT', eph]);
    await pub.ok(eph.id);
    expect(await sub.next((m) => m[0] === 'EVENT', 5000)).toEqual(['EVENT', 'x', eph]);
    const { events } = await sub.req('y', { ids: [ev.id] });
    expect(events).toEqual([ev]);
    await sleep(200);
    expect(sub.messages.filter((m) => m[0] === 'EVENT')).toEqual([]); // no echo, no double delivery
    sub.close();
    pub.close();
  });
});

describe.runIf(databaseUrl)('Postgres outage', () => {
  let relay: TestRelay;
  let dbName: string;
  const admin = () => new pg.Client({ connectionString: databaseUrl });
  async function setAllowed(allowed: boolean) {
    const c = admin();
    await c.connect();
    await c.query(`ALTER DATABASE ${dbName} WITH ALLOW_CONNECTIONS ${allowed}`);
    if (!allowed) await c.query('SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1', [dbName]);
    await c.end();
  }
  beforeAll(async () => {
    relay = await startTestRelay('postgres');
    dbName = new URL(relay.databaseUrl!).pathname.slice(1);
  });
  afterAll(async () => {
    await setAllowed(true).catch(() => {});
    await relay?.stop();
  });

  it('answers error: (never a false OK) while the database is away, and recovers when it is back', async () => {
    const k = newKey();
    const c = await RawClient.open(relay.url);
    const t = Math.floor(Date.now() / 1000);
    const before = sign(k.sk, { content: 'before', created_at: t - 10 });
    c.send(['EVENT', before]);
    expect((await c.ok(before.id))[2]).toBe(true);

    await setAllowed(false);
    const during = sign(k.sk, { content: 'during' });
    c.send(['EVENT', during]);
    const m = await c.ok(during.id);
    expect(m[2]).toBe(false);
    expect(m[3]).toMatch(/^error: /);
    const q = await c.req('q', { authors: [k.pubkey] });
    expect(q.end[0]).toBe('CLOSED');
    expect(q.end[2]).toMatch(/^error: /);
    await until(async () => (await fetch(relay.url.replace('ws://', 'http://') + '/readyz')).status === 503);
    expect((await fetch(relay.url.replace('ws://', 'http://') + '/healthz')).status).toBe(200);

    await setAllowed(true);
    const after = sign(k.sk, { content: 'after', created_at: t });
    await until(async () => {
      c.send(['EVENT', after]);
      return (await c.ok(after.id))[2] === true;
    });
    const { events } = await c.req('r', { authors: [k.pubkey] });
    expect(events.map((e) => e.content)).toEqual(['after', 'before']);
    await until(async () => (await fetch(relay.url.replace('ws://', 'http://') + '/readyz')).status === 200);
    c.close();
  });
});

describe('slow readers', () => {
  let relay: TestRelay;
  beforeAll(async () => {
    relay = await startTestRelay('pglite', { MAX_BACKPRESSURE: '65536', MAX_MESSAGES_PER_SECOND: '10000' });
  });
  afterAll(async () => {
    await relay?.stop();
  });

  it('drops a connection that stops reading instead of buffering without bound', async () => {
    const k = newKey();
    const slow = await RawClient.open(relay.url);
    await slow.req('all', { authors: [k.pubkey] });
    // Stop reading from the socket: the relay's send buffer for it fills up.
    (slow.ws as unknown as { _socket: { pause(): void } })._socket.pause();
    const pub = await RawClient.open(relay.url);
    const big = 'x'.repeat(30_000);
    for (let i = 0; i < 200; i++) pub.send(['EVENT', sign(k.sk, { kind: 20000, content: big + i })]);
    await until(() => pub.messages.filter((m) => m[0] === 'OK').length === 200, 20_000);
    (slow.ws as unknown as { _socket: { resume(): void } })._socket.resume();
    await until(() => slow.closed, 10_000);
    // the publisher is unaffected
    const ev = sign(k.sk, { content: 'still fine' });
    pub.send(['EVENT', ev]);
    expect((await pub.ok(ev.id))[2]).toBe(true);
    pub.close();
  });
});
