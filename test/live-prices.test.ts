/**
 * Prices at run time, on real Postgres and Redis: the stack (relay replica A and the admission
 * service, as `pnpm start` runs them) and a second relay replica B on the same database and
 * bus, started with another environment. An admin changes prices over NIP-86 with nostr-tools'
 * NIP-98 helper as the client; every replica's NIP-11, refusals and the admission service's
 * /api/pricing and invoices follow; each change is in the history; bad or unauthorized calls
 * change nothing.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { getToken } from 'nostr-tools/nip98';
import { npubEncode } from 'nostr-tools/nip19';
import { finalizeEvent } from 'nostr-tools/pure';
import { getHeldEvent, ledgerBalance, listAudit, updatePriceSettings } from '@paidrelay/db';
import { PRICES_RELOAD_MS } from '../packages/payment-gate/src/prices.ts';
import { newKey, RawClient, sign, startTestRelay, until, type TestRelay } from '../apps/relay/test/harness.ts';
import { startStack, type TestStack } from './stack.ts';

const pgUrl = process.env.TEST_DATABASE_URL;
const redisUrl = process.env.TEST_REDIS_URL;
if (process.env.CI && (!pgUrl || !redisUrl)) throw new Error('CI must set TEST_DATABASE_URL and TEST_REDIS_URL');

type Key = ReturnType<typeof newKey>;
const RPC = 'application/nostr+json+rpc';

async function rpc(port: number, who: Key, method: string, params: unknown[] = []) {
  const url = `http://127.0.0.1:${port}/`;
  const auth = await getToken(url, 'post', (t) => finalizeEvent(t, who.sk), true, { method, params });
  const res = await fetch(url, {
    method: 'POST',
    headers: { 'Content-Type': RPC, Authorization: auth },
    body: JSON.stringify({ method, params }),
  });
  return { status: res.status, body: (await res.json()) as { result?: any; error?: string } };
}

async function nip11(port: number) {
  const res = await fetch(`http://127.0.0.1:${port}/`, { headers: { Accept: 'application/nostr+json' } });
  return (await res.json()) as Record<string, any>;
}

async function publish(c: RawClient, ev: ReturnType<typeof sign>) {
  c.send(['EVENT', ev]);
  const m = await c.ok(ev.id);
  return { ok: m[2] as boolean, reason: m[3] as string };
}

describe.runIf(pgUrl && redisUrl)('prices at run time across two relay replicas and the admission service', () => {
  const admin = newKey();
  const other = newKey();
  let t: TestStack;
  let b: TestRelay;
  let a: { port: number };
  let ca: RawClient;
  let cb: RawClient;
  const pricing = async () => (await (await fetch(`${t.apiBase}/api/pricing`)).json()) as Record<string, any>;
  const admissionFee = async (port: number) => (await nip11(port)).fees?.admission?.[0]?.amount;

  beforeAll(async () => {
    t = await startStack(
      { ADMIN_PUBKEYS: npubEncode(admin.pubkey), PRICE_ADMISSION_MSAT: '21000', PRICE_EVENT_MSAT: '5000', REDIS_URL: redisUrl! },
      { backend: 'postgres' },
    );
    a = t.stack.relay;
    const config = t.stack.admission.ctx.config;
    // Another replica, started later with other prices in its environment: they are only a seed.
    b = await startTestRelay(
      'postgres',
      {
        ADMIN_PUBKEYS: admin.pubkey,
        PRICE_ADMISSION_MSAT: '99000',
        PRICE_EVENT_MSAT: '1000',
        REDIS_URL: redisUrl!,
        PAYMENTS_URL: config.PAYMENTS_URL,
      },
      { databaseUrl: config.DATABASE_URL },
    );
    ca = await RawClient.open(t.relayUrl);
    cb = await RawClient.open(b.url);
  }, 60_000);
  afterAll(async () => {
    ca?.close();
    cb?.close();
    await b?.close();
    await t?.stop();
  });

  it('seeded from the environment of the first start; a later start with another environment does not overwrite it', async () => {
    expect(await admissionFee(b.port)).toBe(21000);
    expect(await admissionFee(a.port)).toBe(21000);
    const got = await rpc(b.port, admin, 'getprices');
    expect(got.body.result).toMatchObject({ admission_msat: 21000, event_msat: 5000, updated_by: null });
    const history = (await rpc(b.port, admin, 'listpricechanges')).body.result;
    expect(history.changes).toEqual([
      { id: expect.any(Number), at: expect.any(Number), pubkey: null, old: null, new: expect.objectContaining({ admission_msat: 21000 }) },
    ]);
    const refused = await publish(cb, sign(newKey().sk, { content: 'on B' }));
    expect(refused.reason).toMatch(/^blocked: payment required: 21 sats for admission or 5 sats for this event: /);
  });

  it('an admin sets prices on B: A, B, /api/pricing, refusals, invoices and held events follow within a second or two; history and audit rows', async () => {
    const writer = newKey();
    const held = sign(writer.sk, { content: 'refused at the old price' });
    expect((await publish(ca, held)).reason).toMatch(/5 sats for this event/);
    await until(() => getHeldEvent(t.stack.db.kysely, held.id, Math.floor(Date.now() / 1000)));

    const set = await rpc(b.port, admin, 'setprices', [{ admission_msat: 42000, event_msat: 7000, publication_kinds: { '30023': 9000 } }]);
    expect(set.status).toBe(200);
    expect(set.body.result.old).toMatchObject({ admission_msat: 21000, event_msat: 5000, publication_kinds: {} });
    expect(set.body.result.new).toMatchObject({ admission_msat: 42000, event_msat: 7000, publication_kinds: { '30023': 9000 } });
    // B (which took the call) answers with the new prices at once; A and the admission service hear it on the bus.
    expect(await admissionFee(b.port)).toBe(42000);
    await until(async () => (await admissionFee(a.port)) === 42000 && (await pricing()).admission_msat === 42000, 2000);

    const doc = await nip11(a.port);
    expect(doc.fees).toEqual({
      admission: [{ amount: 42000, unit: 'msats' }],
      publication: [
        { kinds: [30023], amount: 9000, unit: 'msats' },
        { amount: 7000, unit: 'msats', per: 'event', account: false },
      ],
    });
    expect(await pricing()).toMatchObject({ admission_msat: 42000, event_msat: 7000, publication_kinds: { '30023': 9000 } });
    for (const c of [ca, cb]) {
      const r = await publish(c, sign(newKey().sk, { content: 'new prices' }));
      expect(r.reason).toMatch(/^blocked: payment required: 42 sats for admission or 7 sats for this event: /);
    }
    // Invoices are made at the prices of now; a held event's at the price its refusal named (5 sats).
    const inv = await fetch(`${t.apiBase}/api/invoices`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ pubkey: newKey().pubkey, product: 'admission' }),
    });
    expect(((await inv.json()) as { amount_msat: number }).amount_msat).toBe(42000);
    const heldView = (await (await fetch(`${t.apiBase}/api/held/${held.id}`)).json()) as { amount_msat: number };
    expect(heldView.amount_msat).toBe(5000);

    const history = (await rpc(a.port, admin, 'listpricechanges')).body.result.changes;
    expect(history).toHaveLength(2);
    expect(history[0]).toMatchObject({
      pubkey: admin.pubkey,
      old: { admission_msat: 21000 },
      new: { admission_msat: 42000, event_msat: 7000 },
    });
    expect((await rpc(a.port, admin, 'getprices')).body.result).toMatchObject({ admission_msat: 42000, updated_by: admin.pubkey });
    expect((await listAudit(t.stack.db.kysely, 100)).filter((e) => e.method === 'setprices')).toHaveLength(1);
    expect((await rpc(a.port, admin, 'supportedmethods')).body.result).toEqual(
      expect.arrayContaining(['getprices', 'setprices', 'listpricechanges']),
    );
    // An admin's grant is valued at the prices of now too.
    expect((await rpc(a.port, admin, 'grantadmission', [{ pubkey: newKey().pubkey }])).status).toBe(200);
    expect(await ledgerBalance(t.stack.db.kysely, 'revenue:admission')).toBe(42000);
  });

  it('a non-admin gets 401 and changes nothing; bad prices are a 400 with the reason and change nothing at all', async () => {
    const before = (await rpc(b.port, admin, 'getprices')).body.result;
    const changes = (await rpc(b.port, admin, 'listpricechanges')).body.result.changes.length;
    const audited = (await listAudit(t.stack.db.kysely, 1000)).length;

    const denied = await rpc(b.port, other, 'setprices', [{ admission_msat: 1 }]);
    expect(denied).toEqual({ status: 401, body: { result: null, error: 'this pubkey is not an admin of this relay' } });
    expect((await rpc(b.port, other, 'getprices')).status).toBe(401);

    const bad: [unknown[], RegExp][] = [
      [[{ admission_msat: -1 }], /admission_msat: must not be negative/],
      [[{ admission_msat: 1.5 }], /admission_msat: must be an integer/],
      [[{ admission_msat: '1000' }], /admission_msat: must be an integer/],
      // All or nothing: a good field next to a bad one is not applied either.
      [[{ event_msat: 1, subscription_period_seconds: 0 }], /subscription_period_seconds/],
      [[{ publication_kinds: { '70000': 1 } }], /publication_kinds/],
      [[{ publication_kinds: { '1': -5 } }], /publication_kinds/],
      [[{ admision_msat: 1 }], /admision_msat/],
      [[{}], /at least one price/],
      [[], /params must be/],
    ];
    for (const [params, why] of bad) {
      const r = await rpc(b.port, admin, 'setprices', params);
      expect(r.status, JSON.stringify(params)).toBe(400);
      expect(r.body.error, JSON.stringify(params)).toMatch(why);
    }
    expect((await rpc(b.port, admin, 'getprices')).body.result).toEqual(before);
    expect((await rpc(b.port, admin, 'listpricechanges')).body.result.changes).toHaveLength(changes);
    expect(await listAudit(t.stack.db.kysely, 1000)).toHaveLength(audited);
  });

  it('with no bus message (as when Redis is down), every process still follows a change within its periodic re-read', async () => {
    await t.stack.db.kysely
      .transaction()
      .execute((trx) => updatePriceSettings(trx, { admissionMsat: 12000 }, admin.pubkey, Math.floor(Date.now() / 1000)));
    await until(
      async () =>
        (await admissionFee(a.port)) === 12000 && (await admissionFee(b.port)) === 12000 && (await pricing()).admission_msat === 12000,
      PRICES_RELOAD_MS * 3,
    );
  });
});
