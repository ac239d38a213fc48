import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sql } from 'kysely';
import { debitForEvent, getAccount, ledgerTotal } from '@paidrelay/db';
import { backends, buy, newKey, RawClient, sign, startTestRelay, type TestRelay } from './harness.ts';

type Key = ReturnType<typeof newKey>;
const now = () => Math.floor(Date.now() / 1000);

/** Credits `msat` to a pubkey the way a paid invoice does, and tells the relay's cache. */
const credit = (relay: TestRelay, pubkey: string, msat: number) => buy(relay, pubkey, 'credit', msat);

/** Transactions the writer has run so far, by result. */
async function transactions(relay: TestRelay): Promise<{ committed: number; rolledBack: number }> {
  const m = await relay.ctx.metrics.commitTransactions.get();
  const of = (result: string) => m.values.find((v) => v.labels.result === result)?.value ?? 0;
  return { committed: of('committed'), rolledBack: of('rolled_back') };
}

describe.each(backends())('a short balance fails its own events, never a batch (%s)', (backend) => {
  let relay: TestRelay;
  const PRICE = 1000;

  beforeAll(async () => {
    relay = await startTestRelay(backend, { PRICE_PUBLICATION_MSAT: String(PRICE), HELD_EVENTS_PER_PUBKEY: '20' });
  });
  afterAll(async () => {
    await relay?.stop();
  });

  it('a burst from a key with 30 sats stores 30 events; the rest are refused with amount and URL, held; no transaction is rolled back', async () => {
    const flooder: Key = newKey();
    const honest: Key = newKey();
    await credit(relay, flooder.pubkey, 30 * PRICE);
    await credit(relay, honest.pubkey, 10 * PRICE);
    const conns = await Promise.all(Array.from({ length: 5 }, () => RawClient.open(relay.url)));
    const honestConn = await RawClient.open(relay.url);
    const before = await transactions(relay);

    const burst = Array.from({ length: 350 }, (_, i) => sign(flooder.sk, { content: `flood ${i}` }));
    burst.forEach((ev, i) => conns[i % conns.length].send(['EVENT', ev]));
    const honestEv = sign(honest.sk, { content: 'an honest note in the middle of a flood' });
    honestConn.send(['EVENT', honestEv]);
    const sentAt = await transactions(relay);
    // Bounds, not timings: on a loaded machine PGlite takes a while over 350 writes.
    const honestOk = await honestConn.ok(honestEv.id, 30_000);
    const answeredAt = await transactions(relay);
    expect(honestOk[2]).toBe(true);
    // The honest write waited for at most the commits already in flight and the next one.
    expect(answeredAt.committed - sentAt.committed).toBeLessThanOrEqual(relay.ctx.config.WRITE_CONCURRENCY + 1);

    const oks = await Promise.all(burst.map((ev, i) => conns[i % conns.length].ok(ev.id, 30_000)));
    const accepted = oks.filter((m) => m[2] === true).length;
    expect(accepted).toBe(30);
    oks.forEach((m, i) => {
      if (m[2] === true) return;
      expect(m[3]).toMatch(/^blocked: payment required: 1 sat for this event \(balance 0 sats\), add credit or pay for it: http:\/\/\S+$/);
      expect(String(m[3]).endsWith(`/e/${burst[i].id}`)).toBe(true);
    });
    const after = await transactions(relay);
    expect(after.rolledBack - before.rolledBack).toBe(0);
    await relay.purge(now());
    const held = await relay.ctx.db.kysely
      .selectFrom('held_events')
      .select('event_id')
      .where('pubkey', '=', Buffer.from(flooder.pubkey, 'hex'))
      .execute();
    expect(held.length).toBe(20); // HELD_EVENTS_PER_PUBKEY: the newest refused ones
    expect((await getAccount(relay.ctx.db.kysely, flooder.pubkey))?.balanceMsat).toBe(0);
    expect(await ledgerTotal(relay.ctx.db.kysely)).toBe(0);
    for (const c of [...conns, honestConn]) c.close();
  });

  it('a balance spent elsewhere (another replica) fails those events at commit, one by one, and holds them', async () => {
    const k: Key = newKey();
    const honest: Key = newKey();
    await credit(relay, k.pubkey, 5 * PRICE);
    await credit(relay, honest.pubkey, 5 * PRICE);
    // Another replica spends the whole balance; this replica's cache does not know yet.
    for (let i = 0; i < 5; i++)
      expect(await debitForEvent(relay.ctx.db.kysely, k.pubkey, randomBytes(32).toString('hex'), PRICE, now())).toBe(true);
    const c = await RawClient.open(relay.url);
    const before = await transactions(relay);
    const evs = Array.from({ length: 5 }, (_, i) => sign(k.sk, { content: `spent elsewhere ${i}` }));
    const honestEv = sign(honest.sk, { content: 'same batches, paid' });
    for (const ev of [...evs, honestEv]) c.send(['EVENT', ev]);
    const oks = await Promise.all(evs.map((ev) => c.ok(ev.id)));
    expect((await c.ok(honestEv.id))[2]).toBe(true);
    for (const m of oks) {
      expect(m[2]).toBe(false);
      expect(m[3]).toMatch(/^blocked: payment required: 1 sat for this event \(balance 0 sats\), add credit or pay for it: http:\/\/\S+$/);
    }
    expect((await transactions(relay)).rolledBack).toBe(before.rolledBack);
    await relay.purge(now());
    const held = await relay.ctx.db.kysely
      .selectFrom('held_events')
      .select('event_id')
      .where('pubkey', '=', Buffer.from(k.pubkey, 'hex'))
      .execute();
    expect(held.length).toBe(5);
    expect(await ledgerTotal(relay.ctx.db.kysely)).toBe(0);
    c.close();
  });

  it('a transaction that aborts after the debit leaves the cached balance as it was', async () => {
    const k: Key = newKey();
    await credit(relay, k.pubkey, PRICE); // exactly one event's worth
    const doomed = sign(k.sk, { content: 'this commit will fail' });
    const db = relay.ctx.db.kysely;
    // A deferred trigger fails the commit after the debit has been written in it.
    await sql`CREATE OR REPLACE FUNCTION test_boom() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN IF NEW.event_id = decode(${sql.lit(doomed.id)}, 'hex') THEN RAISE EXCEPTION 'boom'; END IF; RETURN NEW; END $$`.execute(db);
    await sql`CREATE CONSTRAINT TRIGGER test_boom AFTER INSERT ON ledger DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION test_boom()`.execute(
      db,
    );
    const c = await RawClient.open(relay.url);
    try {
      c.send(['EVENT', doomed]);
      const failed = await c.ok(doomed.id);
      expect(failed[2]).toBe(false);
      expect(failed[3]).toMatch(/^error: /);
      expect((await getAccount(db, k.pubkey))?.balanceMsat).toBe(PRICE);
      // The cache still knows the full balance: the next event passes the gate and is paid.
      const next = sign(k.sk, { content: 'paid with the balance the abort gave back' });
      c.send(['EVENT', next]);
      expect((await c.ok(next.id))[2]).toBe(true);
      expect((await getAccount(db, k.pubkey))?.balanceMsat).toBe(0);
    } finally {
      c.close();
      await sql`DROP TRIGGER IF EXISTS test_boom ON ledger`.execute(db);
    }
  });
});
