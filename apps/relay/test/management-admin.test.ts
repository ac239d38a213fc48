import { randomBytes } from 'node:crypto';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createLogger, loadConfig } from '@paidrelay/config';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { getToken } from 'nostr-tools/nip98';
import { npubEncode } from 'nostr-tools/nip19';
import { finalizeEvent } from 'nostr-tools/pure';
import { sql } from 'kysely';
import { createInvoice, getAccount, getHeldEvent, ledgerBalance, ledgerTotal, settleInvoice } from '@paidrelay/db';
import { pubkeyPrefixRange } from '../src/management.ts';
import { startPaidRelay } from '../src/paid.ts';
import { backends, freshDatabase, newKey, RawClient, sign, until, type Backend, type TestRelay } from './harness.ts';

/**
 * The dashboard's NIP-86 extension methods (stats, listinvoices, getinvoice, listmembers,
 * grantadmission, extendadmission, grantcredit, listauditlog) through real HTTP POSTs signed
 * with nostr-tools' NIP-98 helper, on a paid relay, on PGlite and Postgres. Invoices are
 * settled with the one settlement function (the real Lightning path is test/dashboard.browser).
 */

const now = () => Math.floor(Date.now() / 1000);

/** A paid relay (the payment gate's hooks, as the relay deployable starts it when something is for sale). */
async function startTestRelay(backend: Backend, env: Record<string, string>): Promise<TestRelay> {
  const db = backend === 'postgres' ? await freshDatabase() : undefined;
  const config = loadConfig({
    HOST: '127.0.0.1',
    PORT: '0',
    DATA_DIR: mkdtempSync(join(tmpdir(), 'paidrelay-test-')),
    LOG_LEVEL: process.env.TEST_LOG_LEVEL ?? 'silent',
    VERIFY_WORKERS: '1',
    RATE_EVENTS_PER_PUBKEY: '0',
    RATE_EVENTS_PER_IP: '0',
    RATE_REQS_PER_IP: '0',
    ...(db ? { DATABASE_URL: db.url } : {}),
    ...env,
  });
  const relay = await startPaidRelay(config, createLogger(config.LOG_LEVEL, 'relay-test'));
  return Object.assign(relay, {
    databaseUrl: db?.url,
    stop: async () => {
      await relay.close();
      await db?.drop();
    },
  });
}
const RPC = 'application/nostr+json+rpc';
type Key = ReturnType<typeof newKey>;

async function rpc(relay: TestRelay, who: Key, method: string, params: unknown[] = []) {
  const url = `http://127.0.0.1:${relay.port}/`;
  const body = JSON.stringify({ method, params });
  const auth = await getToken(url, 'post', (t) => finalizeEvent(t, who.sk), true, { method, params });
  const res = await fetch(url, { method: 'POST', headers: { 'Content-Type': RPC, Authorization: auth }, body });
  return { status: res.status, body: (await res.json()) as { result?: any; error?: string } };
}

async function ok(relay: TestRelay, who: Key, method: string, params: unknown[] = []) {
  const r = await rpc(relay, who, method, params);
  expect(r, `${method} ${JSON.stringify(params)}`).toMatchObject({ status: 200 });
  return r.body.result;
}

async function publish(c: RawClient, ev: ReturnType<typeof sign>) {
  c.send(['EVENT', ev]);
  const m = await c.ok(ev.id);
  return { ok: m[2] as boolean, reason: m[3] as string };
}

/** An invoice minted and paid through settleInvoice (the ledger rows settlement writes). */
async function paidInvoice(relay: TestRelay, pubkey: string, product: 'admission' | 'credit', amountMsat: number, at = now()) {
  const db = relay.ctx.db.kysely;
  const paymentHash = randomBytes(32).toString('hex');
  const inv = await createInvoice(db, {
    paymentHash,
    bolt11: `lnbcrt${amountMsat}test`,
    pubkey,
    product,
    amountMsat,
    createdAt: at,
    expiresAt: at + 900,
    eventId: null,
    zapRequest: null,
    description: null,
  });
  await settleInvoice(db, paymentHash, { now: at, subscriptionPeriodSeconds: 3600 });
  return inv;
}

/** Every ledger txid sums to zero (and so the whole ledger). */
async function ledgerBalanced(relay: TestRelay) {
  const { rows } = await sql<{
    txid: string;
    s: number;
  }>`SELECT txid, sum(amount_msat)::int8 AS s FROM ledger GROUP BY txid HAVING sum(amount_msat) <> 0`.execute(relay.ctx.db.kysely);
  expect(rows).toEqual([]);
  expect(await ledgerTotal(relay.ctx.db.kysely)).toBe(0);
}

describe('pubkeyPrefixRange', () => {
  it('bounds hex and npub prefixes exactly', () => {
    const pk = newKey().pubkey;
    const npub = npubEncode(pk);
    for (const q of [pk.slice(0, 5), npub.slice(0, 14), npub.slice(0, 6), pk]) {
      const [lo, hi] = pubkeyPrefixRange(q)!;
      const b = Buffer.from(pk, 'hex');
      expect(Buffer.compare(lo, b) <= 0 && Buffer.compare(b, hi) <= 0, q).toBe(true);
    }
    const [lo, hi] = pubkeyPrefixRange('ab')!;
    expect(lo.toString('hex')).toBe('ab' + '0'.repeat(62));
    expect(hi.toString('hex')).toBe('ab' + 'f'.repeat(62));
    expect(pubkeyPrefixRange('npub1q')![1].toString('hex')).toBe('07' + 'f'.repeat(62)); // q = 00000
    expect(pubkeyPrefixRange('npub1b')).toBeUndefined(); // b is not a bech32 character
    expect(pubkeyPrefixRange('xyz')).toBeUndefined();
  });
});

describe.each(backends())('NIP-86 admin data methods on %s', (backend) => {
  const admin = newKey();
  const other = newKey(); // not an admin
  let relay: TestRelay;
  let c: RawClient;

  beforeAll(async () => {
    relay = await startTestRelay(backend, {
      ADMIN_PUBKEYS: npubEncode(admin.pubkey),
      PRICE_ADMISSION_MSAT: '21000',
      PRICE_SUBSCRIPTION_MSAT: '30000',
      SUBSCRIPTION_PERIOD_SECONDS: String(30 * 86400),
      PRICE_EVENT_MSAT: '2000',
    });
    c = await RawClient.open(relay.url);
  });
  afterAll(async () => {
    c?.close();
    await relay?.stop();
  });

  it('lists the new methods; a non-admin gets 401 from every one of them', async () => {
    const methods = (await ok(relay, admin, 'supportedmethods')) as string[];
    const mine = ['stats', 'listinvoices', 'getinvoice', 'listmembers', 'grantadmission', 'extendadmission', 'grantcredit', 'listauditlog'];
    expect(methods).toEqual(expect.arrayContaining(mine));
    for (const m of mine) {
      const r = await rpc(relay, other, m, [{ pubkey: other.pubkey, amount_msat: 1000, days: 1 }]);
      expect(r.status, m).toBe(401);
      expect(r.body).toEqual({ result: null, error: 'this pubkey is not an admin of this relay' });
    }
    // Nothing was granted to the non-admin.
    expect(await getAccount(relay.ctx.db.kysely, other.pubkey)).toBeUndefined();
  });

  it('grantadmission: admitted in the ledger against grant:admin, the gate learns it over the bus, audited', async () => {
    const k = newKey();
    const refused = await publish(c, sign(k.sk, { content: 'before' }));
    expect(refused.ok).toBe(false);
    expect(refused.reason).toMatch(/^blocked: payment required/);

    const r = await ok(relay, admin, 'grantadmission', [{ pubkey: npubEncode(k.pubkey), reason: 'friend of the relay' }]);
    expect(r.account).toEqual({ pubkey: k.pubkey, admitted: true, admittedUntil: null, balanceMsat: 0 });
    expect(r.ledger.txid).toMatch(/^grant:/);
    // The next write passes at once: the relay's account cache learned it from the bus (its
    // periodic re-read is 30 s away).
    const t0 = Date.now();
    const accepted = await until(async () => {
      const m = await publish(c, sign(k.sk, { content: 'after ' + Math.random() }));
      return m.ok && m;
    }, 2000);
    expect(accepted.ok).toBe(true);
    expect(Date.now() - t0).toBeLessThan(2000);

    const { rows } = await sql<{ account: string; amount_msat: number; memo: string }>`
      SELECT account, amount_msat, memo FROM ledger WHERE txid = ${r.ledger.txid} ORDER BY account`.execute(relay.ctx.db.kysely);
    expect(rows.map((x) => [x.account, Number(x.amount_msat)])).toEqual([
      ['grant:admin', -21000],
      ['revenue:admission', 21000],
    ]);
    expect(rows[0].memo).toContain(`admin ${admin.pubkey}: grantadmission for ${k.pubkey} (friend of the relay)`);
    await ledgerBalanced(relay);

    const audit = await ok(relay, admin, 'listauditlog', [{ method: 'grantadmission' }]);
    expect(audit.entries[0]).toMatchObject({
      pubkey: admin.pubkey,
      method: 'grantadmission',
      params: [{ pubkey: k.pubkey, reason: 'friend of the relay', kind: 'admission' }],
    });
  });

  it("a grant publishes the key's held events that are now free, as a paid settlement does: stored, and to live subscribers", async () => {
    const k = newKey();
    const refused = sign(k.sk, { content: 'refused, then granted' });
    expect((await publish(c, refused)).ok).toBe(false);
    await until(() => getHeldEvent(relay.ctx.db.kysely, refused.id, now()));
    const watcher = await RawClient.open(relay.url);
    watcher.send(['REQ', 'live', { authors: [k.pubkey] }]);
    await watcher.next((m) => m[0] === 'EOSE' && m[1] === 'live');

    const r = await ok(relay, admin, 'grantadmission', [{ pubkey: k.pubkey }]);
    expect(r.released).toEqual([refused.id]);
    expect((await watcher.next((m) => m[0] === 'EVENT' && m[1] === 'live'))[2]).toEqual(refused);
    expect((await c.req('stored', { ids: [refused.id] })).events).toEqual([refused]);
    expect(await getHeldEvent(relay.ctx.db.kysely, refused.id, now())).toBeUndefined();
    watcher.close();
  });

  it('extendadmission: from now, then from the current end; valued pro rata at the subscription price', async () => {
    const k = newKey();
    const before = now();
    const a = await ok(relay, admin, 'extendadmission', [{ pubkey: k.pubkey, days: 3 }]);
    expect(a.account.admitted).toBe(true);
    expect(a.account.admittedUntil).toBeGreaterThanOrEqual(before + 3 * 86400);
    expect(a.account.admittedUntil).toBeLessThanOrEqual(now() + 3 * 86400);
    const b = await ok(relay, admin, 'extendadmission', [{ pubkey: k.pubkey, seconds: 3600 }]);
    expect(b.account.admittedUntil).toBe(a.account.admittedUntil + 3600);
    // 3 days of a 30-day period at 30 000 msat: 3000 msat, booked against grant:admin.
    expect(await ledgerBalance(relay.ctx.db.kysely, 'revenue:subscription')).toBe(3000 + 42);
    expect((await publish(c, sign(k.sk))).ok).toBe(true);
    expect((await rpc(relay, admin, 'extendadmission', [{ pubkey: k.pubkey }])).status).toBe(400);
    await ledgerBalanced(relay);
  });

  it('grantcredit: the balance and user:<hex> rise together; each txid sums to zero', async () => {
    const k = newKey();
    const r = await ok(relay, admin, 'grantcredit', [{ pubkey: k.pubkey, amount_msat: 5000, reason: 'refund' }]);
    expect(r.account.balanceMsat).toBe(5000);
    await ok(relay, admin, 'grantcredit', [{ pubkey: k.pubkey, amount_msat: 2500 }]);
    expect((await getAccount(relay.ctx.db.kysely, k.pubkey))!.balanceMsat).toBe(7500);
    expect(await ledgerBalance(relay.ctx.db.kysely, `user:${k.pubkey}`)).toBe(7500);
    for (const bad of [
      { pubkey: k.pubkey },
      { pubkey: k.pubkey, amount_msat: -1 },
      { pubkey: k.pubkey, amount_msat: 1.5 },
      { pubkey: 'nope', amount_msat: 1 },
    ]) {
      expect((await rpc(relay, admin, 'grantcredit', [bad])).status, JSON.stringify(bad)).toBe(400);
    }
    expect((await getAccount(relay.ctx.db.kysely, k.pubkey))!.balanceMsat).toBe(7500);
    await ledgerBalanced(relay);
  });

  it('listinvoices filters by status, product, pubkey and dates, and pages; getinvoice has its ledger rows', async () => {
    const payer = newKey();
    const t = now();
    const adm = await paidInvoice(relay, payer.pubkey, 'admission', 21000, t - 7200);
    const cr = await paidInvoice(relay, payer.pubkey, 'credit', 4000, t - 60);
    const pending = await createInvoice(relay.ctx.db.kysely, {
      paymentHash: randomBytes(32).toString('hex'),
      bolt11: 'lnbcrtpending',
      pubkey: payer.pubkey,
      product: 'credit',
      amountMsat: 999,
      createdAt: t,
      expiresAt: t + 900,
      eventId: null,
      zapRequest: null,
      description: null,
    });
    const all = await ok(relay, admin, 'listinvoices', [{ pubkey: npubEncode(payer.pubkey) }]);
    expect(all.total).toBe(3);
    expect(all.invoices.map((i: any) => i.id)).toEqual([pending.id, cr.id, adm.id]); // newest first
    expect((await ok(relay, admin, 'listinvoices', [{ pubkey: payer.pubkey, status: 'paid' }])).invoices.map((i: any) => i.id)).toEqual([
      cr.id,
      adm.id,
    ]);
    expect(
      (await ok(relay, admin, 'listinvoices', [{ pubkey: payer.pubkey, product: 'admission' }])).invoices.map((i: any) => i.id),
    ).toEqual([adm.id]);
    expect((await ok(relay, admin, 'listinvoices', [{ pubkey: payer.pubkey, from: t - 3600 }])).total).toBe(2);
    expect((await ok(relay, admin, 'listinvoices', [{ pubkey: payer.pubkey, to: t - 3600 }])).invoices.map((i: any) => i.id)).toEqual([
      adm.id,
    ]);
    const p1 = await ok(relay, admin, 'listinvoices', [{ pubkey: payer.pubkey, limit: 2 }]);
    expect(p1).toMatchObject({ total: 3, nextOffset: 2 });
    const p2 = await ok(relay, admin, 'listinvoices', [{ pubkey: payer.pubkey, limit: 2, offset: p1.nextOffset }]);
    expect(p2.invoices.map((i: any) => i.id)).toEqual([adm.id]);
    expect(p2.nextOffset).toBeNull();
    expect((await rpc(relay, admin, 'listinvoices', [{ status: 'gone' }])).status).toBe(400);

    const one = await ok(relay, admin, 'getinvoice', [adm.id]);
    expect(one.invoice).toMatchObject({ id: adm.id, status: 'paid', product: 'admission', amountMsat: 21000, pubkey: payer.pubkey });
    expect(one.ledger.map((l: any) => [l.account, l.amountMsat, l.txid])).toEqual([
      ['wallet', -21000, `invoice:${adm.id}`],
      ['revenue:admission', 21000, `invoice:${adm.id}`],
    ]);
    expect((await ok(relay, admin, 'getinvoice', [pending.id])).ledger).toEqual([]);
    expect((await rpc(relay, admin, 'getinvoice', ['nope'])).status).toBe(404);
  });

  it('listmembers: admitted pubkeys with their end, balance and last write; hex and npub prefix search; pages', async () => {
    const m = newKey();
    await ok(relay, admin, 'grantadmission', [{ pubkey: m.pubkey }]);
    await ok(relay, admin, 'grantcredit', [{ pubkey: m.pubkey, amount_msat: 1234 }]);
    const ev = sign(m.sk, { created_at: now() - 5 });
    await until(async () => (await publish(c, ev)).ok);
    const credited = newKey(); // a balance but not admitted: only with all
    await ok(relay, admin, 'grantcredit', [{ pubkey: credited.pubkey, amount_msat: 1 }]);

    const byHex = await ok(relay, admin, 'listmembers', [{ q: m.pubkey.slice(0, 10) }]);
    expect(byHex.members).toEqual([
      {
        pubkey: m.pubkey,
        admitted: true,
        admittedUntil: null,
        balanceMsat: 1234,
        createdAt: expect.any(Number),
        updatedAt: expect.any(Number),
        lastEventAt: ev.created_at,
      },
    ]);
    const byNpub = await ok(relay, admin, 'listmembers', [{ q: npubEncode(m.pubkey).slice(0, 16) }]);
    expect(byNpub.members.map((x: any) => x.pubkey)).toEqual([m.pubkey]);
    expect((await ok(relay, admin, 'listmembers', [{ q: npubEncode(m.pubkey) }])).total).toBe(1);
    expect((await ok(relay, admin, 'listmembers', [{ q: credited.pubkey }])).total).toBe(0);
    expect((await ok(relay, admin, 'listmembers', [{ q: credited.pubkey, all: true }])).members[0]).toMatchObject({
      admitted: false,
      balanceMsat: 1,
    });
    expect((await rpc(relay, admin, 'listmembers', [{ q: 'zz' }])).status).toBe(400);

    const page1 = await ok(relay, admin, 'listmembers', [{ limit: 1 }]);
    expect(page1.total).toBeGreaterThanOrEqual(3);
    expect(page1.members).toHaveLength(1);
    const page2 = await ok(relay, admin, 'listmembers', [{ limit: 1, offset: 1 }]);
    expect(page2.members[0].pubkey).not.toBe(page1.members[0].pubkey);
  });

  it('stats: revenue by product per bucket from the ledger, grants apart, writes per minute by reason, live figures', async () => {
    const payer = newKey();
    const t = now();
    const before = await ok(relay, admin, 'stats', [{ bucket: 'hour', from: t - 3 * 3600, to: t + 1 }]);
    await paidInvoice(relay, payer.pubkey, 'admission', 21000, t);
    await paidInvoice(relay, payer.pubkey, 'credit', 700, t); // a credit is not revenue: the user's balance
    // One refused write (not admitted) and one accepted (the payer is admitted now; the gate learns it over the bus).
    const stranger = newKey();
    expect((await publish(c, sign(stranger.sk))).ok).toBe(false);
    relay.ctx.bus.publish('accounts', JSON.stringify(await getAccount(relay.ctx.db.kysely, payer.pubkey)));
    await until(async () => (await publish(c, sign(payer.sk, { content: String(Math.random()) }))).ok);
    const sub = newKey();
    c.send(['REQ', 'live', { authors: [sub.pubkey] }]);
    await c.next((m) => m[0] === 'EOSE' && m[1] === 'live');

    const s = await ok(relay, admin, 'stats', [{ bucket: 'hour', from: t - 3 * 3600, to: t + 1 }]);
    expect(s.revenue.bucketSeconds).toBe(3600);
    expect(s.revenue.times).toHaveLength(4);
    expect(s.revenue.times[3]).toBe(Math.floor(t / 3600) * 3600);
    const adm = (x: any) => (x.revenue.products.admission ?? [0, 0, 0, 0])[3];
    expect(adm(s) - adm(before)).toBe(21000);
    expect(s.revenue.products.credit).toBeUndefined();
    // The grants of the tests above are apart from the money received.
    expect(s.revenue.grants.admission[3]).toBeGreaterThanOrEqual(21000);
    expect(s.totals.receivedMsat - before.totals.receivedMsat).toBe(21700);
    expect(s.totals.ledgerSumMsat).toBe(0);
    expect(s.totals.grantedMsat).toBeGreaterThan(0);

    const last = (key: string) => (s.writes.series[key] ?? []).reduce((a: number, b: number) => a + b, 0);
    expect(s.writes.minutes).toHaveLength(60);
    expect(last('accepted')).toBeGreaterThanOrEqual(1);
    expect(last('refused:blocked')).toBeGreaterThanOrEqual(1);
    expect(s.live.connections).toBeGreaterThanOrEqual(1);
    expect(s.live.subscriptions).toBeGreaterThanOrEqual(1);
    expect(s.live.eventsStored).toBe(
      Number((await sql<{ n: number }>`SELECT count(*)::int8 AS n FROM events`.execute(relay.ctx.db.kysely)).rows[0].n),
    );
    expect(s.live.heldEvents).toBeGreaterThanOrEqual(1); // the refused writes wait for payment
    c.send(['CLOSE', 'live']);

    expect((await rpc(relay, admin, 'stats', [{ bucket: 'minute', from: 0, to: t }])).status).toBe(400);
    expect((await rpc(relay, admin, 'stats', [{ bucket: 'week' }])).status).toBe(400);
  });

  it('listauditlog pages with before, newest first', async () => {
    const all = await ok(relay, admin, 'listauditlog', [{ limit: 500 }]);
    expect(all.entries.length).toBeGreaterThanOrEqual(8);
    const ids = all.entries.map((e: any) => e.id);
    expect([...ids].sort((a, b) => b - a)).toEqual(ids);
    const p1 = await ok(relay, admin, 'listauditlog', [{ limit: 3 }]);
    expect(p1.entries.map((e: any) => e.id)).toEqual(ids.slice(0, 3));
    const p2 = await ok(relay, admin, 'listauditlog', [{ limit: 3, before: p1.nextBefore }]);
    expect(p2.entries.map((e: any) => e.id)).toEqual(ids.slice(3, 6));
    // Reads are not audited.
    expect(all.entries.some((e: any) => ['stats', 'listinvoices', 'listmembers', 'listauditlog'].includes(e.method))).toBe(false);
  });
});
