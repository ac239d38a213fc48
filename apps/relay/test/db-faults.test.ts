import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { tmpdir } from 'node:os';
import pg from 'pg';
import { openDatabase } from '@paidrelay/db';
import { sql } from 'kysely';
import { freshDatabase, newKey, RawClient, sign, sleep, startTestRelay, type TestRelay, until } from './harness.ts';
import { TcpProxy } from './tcp-proxy.ts';

/**
 * Postgres faults under the relay, through a TCP proxy between the relay and Postgres:
 * connections cut while writes are in flight, and a Postgres that stops answering (blackhole).
 */
const databaseUrl = process.env.TEST_DATABASE_URL;
if (process.env.CI && !databaseUrl) throw new Error('CI must set TEST_DATABASE_URL');

/** A Node crash in the making: an 'error' event nobody listens to, thrown from a socket callback. */
const uncaught: unknown[] = [];
const onUncaught = (err: unknown) => uncaught.push(err);

type Answer = { id: string; sentAt: number; at: number; ok?: boolean; msg?: string; none?: true };

/** Writes continuously from one connection, `inFlight` events at most, about `rate` per second. */
async function writeLoop(c: RawClient, stop: () => boolean, rate: number, inFlight: number, answers: Answer[]) {
  const k = newKey();
  const pending = new Set<Promise<void>>();
  for (let i = 0; !stop(); i++) {
    const ev = sign(k.sk, { content: `load ${i}` });
    const sentAt = Date.now();
    c.send(['EVENT', ev]);
    const p: Promise<void> = c
      .next((m) => m[0] === 'OK' && m[1] === ev.id, 20_000)
      .then(
        (m) => void answers.push({ id: ev.id, sentAt, at: Date.now(), ok: m[2] as boolean, msg: m[3] as string }),
        () => void answers.push({ id: ev.id, sentAt, at: Date.now(), none: true }),
      )
      .finally(() => pending.delete(p));
    pending.add(p);
    await sleep(1000 / rate);
    while (pending.size >= inFlight) await Promise.race(pending);
  }
  await Promise.all(pending);
}

async function storedIds(dbUrl: string, ids: string[]): Promise<Set<string>> {
  const c = new pg.Client({ connectionString: dbUrl });
  await c.connect();
  try {
    const { rows } = await c.query<{ id: string }>("SELECT encode(id, 'hex') AS id FROM events WHERE id = ANY($1::bytea[])", [
      ids.map((id) => Buffer.from(id, 'hex')),
    ]);
    return new Set(rows.map((r) => r.id));
  } finally {
    await c.end();
  }
}

const http = (relay: TestRelay) => relay.url.replace('ws://', 'http://');

/** The OK for `id`; generous: the machine is shared, only the fault phases measure time. */
const okOf = (c: RawClient, id: string) => c.next((m) => m[0] === 'OK' && m[1] === id, 15_000);

/** A REQ's stored events and its end (EOSE or CLOSED). */
async function reqOf(c: RawClient, subId: string, filter: object) {
  const end = c.next((m) => m[1] === subId && (m[0] === 'EOSE' || m[0] === 'CLOSED'), 15_000);
  c.send(['REQ', subId, filter]);
  const last = await end;
  const events = c.messages.filter((m) => m[0] === 'EVENT' && m[1] === subId).map((m) => m[2] as Record<string, unknown>);
  c.messages = c.messages.filter((m) => !(m[0] === 'EVENT' && m[1] === subId));
  return { events, end: last };
}

/** Sends `ev` until it is accepted (the relay recovering by itself). */
async function untilAccepted(c: RawClient, ev: { id: string }, ms = 15_000) {
  await until(async () => {
    c.send(['EVENT', ev]);
    return (await okOf(c, ev.id))[2] === true;
  }, ms);
}

describe.runIf(databaseUrl)('Postgres faults under load (TCP proxy)', () => {
  let db: Awaited<ReturnType<typeof freshDatabase>>;
  let proxy: TcpProxy;
  const relays: TestRelay[] = [];
  let proxiedUrl: string;

  beforeAll(() => {
    process.on('uncaughtException', onUncaught);
    process.on('unhandledRejection', onUncaught);
  });
  afterAll(() => {
    process.off('uncaughtException', onUncaught);
    process.off('unhandledRejection', onUncaught);
  });
  beforeEach(async () => {
    uncaught.length = 0;
    db = await freshDatabase();
    const target = new URL(db.url);
    proxy = await TcpProxy.start({ host: target.hostname, port: Number(target.port || 5432) });
    const u = new URL(db.url);
    u.host = `127.0.0.1:${proxy.port}`;
    proxiedUrl = u.toString();
  });
  afterEach(async () => {
    proxy.resume();
    await proxy.restore();
    for (const r of relays.splice(0)) await r.stop();
    await proxy.close();
    await db.drop();
  });

  it('connections cut while writes are in flight: the relay stays up, answers error:, recovers, and every OK true is stored', async () => {
    const relay = await startTestRelay(
      'postgres',
      { DATABASE_CONNECT_TIMEOUT_MS: '1000', DATABASE_QUERY_TIMEOUT_MS: '2000', DATABASE_STATEMENT_TIMEOUT_MS: '1500' },
      { databaseUrl: proxiedUrl },
    );
    relays.push(relay);
    const clients = await Promise.all([1, 2, 3, 4].map(() => RawClient.open(relay.url)));
    const answers: Answer[] = [];
    let stopping = false;
    const load = Promise.all(clients.map((c) => writeLoop(c, () => stopping, 75, 8, answers)));

    await sleep(800);
    const cutAt = Date.now();
    await proxy.cut();
    await sleep(1200);
    await proxy.restore();
    const restoredAt = Date.now();
    await sleep(2000);
    stopping = true;
    await load;

    expect(uncaught).toEqual([]);
    expect(answers.filter((a) => a.none)).toEqual([]); // every write answered
    const bad = answers.filter((a) => !a.ok && !/^error: /.test(a.msg ?? ''));
    expect(bad).toEqual([]); // a refusal in the gap is error:, nothing else
    const accepted = answers.filter((a) => a.ok);
    const errored = answers.filter((a) => !a.ok);
    expect(accepted.filter((a) => a.at < cutAt).length).toBeGreaterThan(0);
    expect(errored.length).toBeGreaterThan(0); // writes in the gap were answered, and not with OK true
    expect(errored.every((a) => a.at >= cutAt)).toBe(true);

    // Recovered by itself: writes are accepted again, and the relay is ready.
    await untilAccepted(clients[0], sign(newKey().sk, { content: 'after the cut' }));
    expect(accepted.some((a) => a.sentAt > restoredAt)).toBe(true);
    await until(async () => (await fetch(http(relay) + '/readyz')).status === 200);

    // Every OK true is in Postgres (asked directly, not through the proxy).
    const stored = await storedIds(
      db.url,
      accepted.map((a) => a.id),
    );
    expect(accepted.filter((a) => !stored.has(a.id)).map((a) => a.id)).toEqual([]);
    expect(uncaught).toEqual([]);
    for (const c of clients) c.close();
  });

  it('a Postgres that stops answering: writes answer error:, REQs CLOSED error:, /readyz 503, all within seconds; recovers after', async () => {
    // The query timeout (4 s) is longer than the readiness deadline (2 s): /readyz must not wait for it.
    const relay = await startTestRelay(
      'postgres',
      { DATABASE_CONNECT_TIMEOUT_MS: '1000', DATABASE_QUERY_TIMEOUT_MS: '4000', DATABASE_STATEMENT_TIMEOUT_MS: '3000' },
      { databaseUrl: proxiedUrl },
    );
    relays.push(relay);
    const k = newKey();
    const c = await RawClient.open(relay.url);
    const before = sign(k.sk, { content: 'before', created_at: Math.floor(Date.now() / 1000) - 5 });
    c.send(['EVENT', before]);
    expect((await okOf(c, before.id))[2]).toBe(true);
    expect((await reqOf(c, 'warm', { authors: [k.pubkey] })).events).toHaveLength(1);
    // Several pooled connections open and idle when the database goes silent.
    await Promise.all([1, 2, 3, 4, 5, 6].map(() => sql`select pg_sleep(0.1)`.execute(relay.ctx.db.kysely)));
    expect((await fetch(http(relay) + '/readyz')).status).toBe(200);
    await sleep(1100); // past the readiness cache

    proxy.pause();
    const t0 = Date.now();
    const timed = async <T>(p: Promise<T>) => {
      const v = await p;
      return { v, ms: Date.now() - t0 };
    };
    const ready = Array.from({ length: 10 }, () => timed(fetch(http(relay) + '/readyz').then((r) => r.status)));
    const evs = [1, 2, 3].map((i) => sign(k.sk, { content: `during ${i}` }));
    for (const ev of evs) c.send(['EVENT', ev]);
    const oks = evs.map((ev) => timed(c.next((m) => m[0] === 'OK' && m[1] === ev.id, 15_000)));
    const req = timed(reqOf(c, 'during', { authors: [k.pubkey] }));

    for (const r of await Promise.all(ready)) {
      expect(r.v).toBe(503);
      expect(r.ms).toBeLessThan(3000); // "quickly": the check has its own 2 s deadline
    }
    // One readiness probe at a time, not one per request.
    expect(proxy.dropped.split('select 1').length - 1).toBeLessThanOrEqual(1);
    for (const o of await Promise.all(oks)) {
      expect(o.v[2]).toBe(false);
      expect(o.v[3]).toMatch(/^error: /);
      expect(o.ms).toBeLessThan(9000);
    }
    const q = await req;
    expect(q.v.end[0]).toBe('CLOSED');
    expect(q.v.end[2]).toMatch(/^error: /);
    expect(q.ms).toBeLessThan(9000);

    proxy.resume();
    const after = sign(k.sk, { content: 'after', created_at: Math.floor(Date.now() / 1000) });
    await untilAccepted(c, after);
    // Recovered for good: no pooled connection is left waiting on an answer that will never come.
    for (let i = 0; i < 12; i++) {
      const { events, end } = await reqOf(c, `after${i}`, { authors: [k.pubkey] });
      expect(end[0]).toBe('EOSE');
      expect(events.map((e) => e.content)).toEqual(['after', 'before']);
    }
    await until(async () => (await fetch(http(relay) + '/readyz')).status === 200);
    expect(uncaught).toEqual([]);
    c.close();
  });

  it('the database handle: statement_timeout on every connection; isReady() false within its 2 s deadline, one probe in flight; a timed-out connection is discarded', async () => {
    const handle = await openDatabase({
      databaseUrl: proxiedUrl,
      dataDir: tmpdir(),
      poolSize: 2,
      connectTimeoutMs: 1000,
      queryTimeoutMs: 4000,
      statementTimeoutMs: 800,
    });
    try {
      await handle.migrate();
      // The server cancels a long statement itself (57014), and the connection stays usable.
      expect((await sql<{ statement_timeout: string }>`SHOW statement_timeout`.execute(handle.kysely)).rows[0].statement_timeout).toBe(
        '800ms',
      );
      await expect(sql`select pg_sleep(3)`.execute(handle.kysely)).rejects.toMatchObject({ code: '57014' });
      // Both pooled connections open and idle when the database goes silent.
      await Promise.all([1, 2].map(() => sql`select pg_sleep(0.1)`.execute(handle.kysely)));
      expect(await handle.isReady()).toBe(true);
      await sleep(1100); // past the readiness cache
      proxy.pause();
      const t0 = Date.now();
      const all = await Promise.all(Array.from({ length: 8 }, () => handle.isReady()));
      expect(all).toEqual(Array(8).fill(false));
      expect(Date.now() - t0).toBeLessThan(3000); // the probe's deadline (2 s), not the query timeout (4 s)
      // One probe reached the wire: not a query, nor a new connection, per caller.
      const tries = proxy.dropped.split('select 1').length - 1 + (proxy.dropped.split('statement_timeout\0').length - 1);
      expect(tries).toBe(1);
      // A query the silent server never answers fails on the client's own deadline...
      await expect(sql`select 2`.execute(handle.kysely)).rejects.toThrow(/timeout/);
      expect(Date.now() - t0).toBeLessThan(7000);
      proxy.resume();
      await until(() => handle.isReady(), 10_000);
      // ...and its connection is not handed out again (it would still wait for that answer).
      for (let i = 0; i < 6; i++) expect((await sql<{ n: number }>`select ${i}::int AS n`.execute(handle.kysely)).rows).toEqual([{ n: i }]);
      expect(uncaught).toEqual([]);
    } finally {
      await handle.close();
    }
  });
});
