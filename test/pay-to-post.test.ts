import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { getPublicKey } from 'nostr-tools/pure';
import { npubEncode } from 'nostr-tools/nip19';
import { getZapEndpoint, makeZapRequest, validateZapRequest } from 'nostr-tools/nip57';
import { finalizeEvent } from 'nostr-tools/pure';
import { NWCClient } from '@paidrelay/lightning';
import { ledgerBalance, ledgerTotal } from '@paidrelay/db';
import { settle } from '../apps/admission/src/settle.ts';
import { startAdmission } from '../apps/admission/src/app.ts';
import { newKey, RawClient, sign, sleep, startTestRelay, until } from '../apps/relay/test/harness.ts';
import { startStack, type TestStack } from './stack.ts';

const PRICES = {
  PRICE_ADMISSION_MSAT: '21000',
  PRICE_PUBLICATION_MSAT: '1000',
  PRICE_PUBLICATION_KINDS: '7:500',
  PRICE_EVENT_MSAT: '5000',
  RECONCILE_INTERVAL_SECONDS: '3600',
};

async function api(t: TestStack, path: string, init?: RequestInit & { json?: unknown }) {
  const res = await fetch(t.apiBase + path, {
    ...init,
    ...(init?.json !== undefined
      ? { method: 'POST', body: JSON.stringify(init.json), headers: { 'Content-Type': 'application/json' } }
      : {}),
  });
  return { status: res.status, body: (await res.json()) as Record<string, any> };
}

describe.each(process.env.TEST_DATABASE_URL ? (['pglite', 'postgres'] as const) : (['pglite'] as const))('pay-to-post on %s', (backend) => {
  let t: TestStack;
  let payer: NWCClient;
  let c: RawClient;
  beforeAll(async () => {
    t = await startStack(PRICES, { backend });
    payer = new NWCClient({ nostrWalletConnectUrl: t.payerNwc });
    c = await RawClient.open(t.relayUrl);
  });
  afterAll(async () => {
    c?.close();
    payer?.close();
    await t?.stop();
  });

  const buy = async (pubkey: string, product: string, extra: object = {}) => {
    const r = await api(t, '/api/invoices', { json: { pubkey, product, ...extra } });
    expect(r.status).toBe(201);
    return r.body;
  };
  const ok = async (ev: ReturnType<typeof sign>) => {
    c.send(['EVENT', ev]);
    return c.ok(ev.id);
  };

  it('advertises exactly what it enforces in NIP-11 and /api/pricing', async () => {
    const doc = (await (await fetch(t.relayUrl.replace('ws', 'http'), { headers: { Accept: 'application/nostr+json' } })).json()) as any;
    expect(doc.limitation.payment_required).toBe(true);
    expect(doc.limitation.restricted_writes).toBe(true);
    expect(doc.payments_url).toBe(t.paymentsUrl);
    expect(doc.fees.admission).toEqual([{ amount: 21000, unit: 'msats' }]);
    expect(doc.fees.publication).toEqual(
      expect.arrayContaining([
        { kinds: [7], amount: 500, unit: 'msats' },
        { amount: 1000, unit: 'msats' },
      ]),
    );
    const p = await api(t, '/api/pricing');
    expect(p.body).toMatchObject({
      admission_msat: 21000,
      publication_msat: 1000,
      publication_kinds: { '7': 500 },
      event_msat: 5000,
      relay_url: t.relayUrl,
    });
  });

  it('refuses an unpaid write with the price and a pay URL for this pubkey and event, minting no invoice', async () => {
    const k = newKey();
    const ev = sign(k.sk);
    const m = await ok(ev);
    expect(m[2]).toBe(false);
    const reason = m[3] as string;
    expect(reason).toMatch(/^blocked: payment required: 21 sats for admission or 5 sats for this event: /);
    // The short pay URL: the event id alone names the held event and its author.
    expect(reason.slice(reason.lastIndexOf('http'))).toBe(`${t.paymentsUrl}/e/${ev.id}`);
    // The refusal is answered at once; the held event is written in the next batch.
    const held = await until(async () => {
      const r = await api(t, `/api/held/${ev.id}`);
      return r.status === 200 && r;
    });
    expect(held.body).toEqual({ id: ev.id, pubkey: k.pubkey, kind: 1, amount_msat: 5000, expires_at: expect.any(Number) }); // no content
    expect((await api(t, `/api/held/${ev.id}?pubkey=${k.pubkey}`)).status).toBe(200); // the long form's pubkey
    expect((await api(t, `/api/held/${ev.id}?pubkey=${newKey().pubkey}`)).status).toBe(404);
    const pending = await t.stack.db.kysely.selectFrom('invoices').select('id').execute();
    expect(pending).toEqual([]);
  });

  it('validates invoice requests with clear 400s', async () => {
    const k = newKey();
    expect((await api(t, '/api/invoices', { json: { pubkey: 'nope', product: 'admission' } })).status).toBe(400);
    expect((await api(t, '/api/invoices', { json: { pubkey: k.pubkey, product: 'gold' } })).body.error).toMatch(/product/);
    expect((await api(t, '/api/invoices', { json: { pubkey: k.pubkey, product: 'credit' } })).body.error).toMatch(/amount_msat/);
    expect((await api(t, '/api/invoices', { json: { pubkey: k.pubkey, product: 'credit', amount_msat: 1.5 } })).status).toBe(400);
    expect((await api(t, '/api/invoices', { json: { pubkey: k.pubkey, product: 'subscription' } })).body.error).toMatch(
      /does not sell "subscription"; buy "event" .* or "admission" .* instead/,
    );
    expect((await api(t, '/api/invoices', { json: { pubkey: k.pubkey, product: 'event', event_id: 'f'.repeat(64) } })).status).toBe(404);
    const raw = await fetch(t.apiBase + '/api/invoices', {
      method: 'POST',
      body: '{not json',
      headers: { 'Content-Type': 'application/json' },
    });
    expect(raw.status).toBe(400);
    expect((await api(t, '/api/accounts/xyz')).status).toBe(400);
  });

  it('admission paid with the payer wallet: the next write succeeds within a second, then pays per event from credit', async () => {
    const k = newKey();
    const refused = sign(k.sk, { content: 'before paying' });
    expect((await ok(refused))[2]).toBe(false);
    const inv = await buy(npubEncode(k.pubkey), 'admission');
    expect(inv).toMatchObject({ amount_msat: 21000, status: 'pending' });
    expect(inv.bolt11).toMatch(/^ln/);
    await payer.payInvoice({ invoice: inv.bolt11 });
    const paidAt = Date.now();
    // within one second the relay accepts... but the admitted pubkey still pays 1 sat per event: no credit yet
    const first = await until(async () => {
      const m = await ok(sign(k.sk, { content: 'after paying ' + Math.random() }));
      return (m[3] as string).includes('balance') || m[2] === true ? m : undefined;
    }, 1000);
    expect(Date.now() - paidAt).toBeLessThan(1000);
    expect(first[3]).toMatch(/^blocked: payment required: 1 sat for this event \(balance 0 sats\)/);
    expect((await api(t, `/api/invoices/${inv.id}`)).body.status).toBe('paid');
    expect((await api(t, `/api/accounts/${k.pubkey}`)).body).toMatchObject({ admitted: true, admitted_until: null, balance_msat: 0 });

    const credit = await buy(k.pubkey, 'credit', { amount_msat: 2500 });
    await payer.payInvoice({ invoice: credit.bolt11 });
    await until(async () => (await api(t, `/api/accounts/${k.pubkey}`)).body.balance_msat === 2500);
    await until(async () => (await ok(sign(k.sk, { content: 'paid 1 ' + Math.random() })))[2] === true, 1000);
    expect((await ok(sign(k.sk, { kind: 7, content: '+' })))[2]).toBe(true); // kind 7 costs 500
    expect((await ok(sign(k.sk, { content: 'paid 3' })))[2]).toBe(true); // the last 1000 msat
    const broke = await ok(sign(k.sk, { content: 'paid 4' }));
    expect(broke[2]).toBe(false);
    expect(broke[3]).toMatch(/balance 0 sats/);
    expect((await api(t, `/api/accounts/${k.pubkey}`)).body.balance_msat).toBe(0);
    expect(await ledgerBalance(t.stack.db.kysely, `user:${k.pubkey}`)).toBe(0);
    expect(await ledgerTotal(t.stack.db.kysely)).toBe(0);
  });

  it('a held event is published once its own invoice is paid, and reaches live subscribers', async () => {
    const k = newKey();
    const ev = sign(k.sk, { content: 'pay for me alone' });
    expect((await ok(ev))[2]).toBe(false);
    const watcher = await RawClient.open(t.relayUrl);
    await watcher.req('w', { authors: [k.pubkey] });
    const inv = await buy(k.pubkey, 'event', { event_id: ev.id });
    expect(inv.amount_msat).toBe(5000);
    await payer.payInvoice({ invoice: inv.bolt11 });
    expect(await watcher.next((m) => m[0] === 'EVENT', 3000)).toEqual(['EVENT', 'w', ev]);
    expect((await c.req('h', { ids: [ev.id] })).events).toEqual([ev]);
    expect((await api(t, `/api/held/${ev.id}?pubkey=${k.pubkey}`)).status).toBe(404);
    // paying for an event does not admit its author
    expect((await ok(sign(k.sk, { content: 'next one' })))[2]).toBe(false);
    watcher.close();
  });

  it('a duplicated payment notification credits once', async () => {
    const k = newKey();
    const inv = await buy(k.pubkey, 'credit', { amount_msat: 7000 });
    await payer.payInvoice({ invoice: inv.bolt11 });
    await until(async () => (await api(t, `/api/accounts/${k.pubkey}`)).body.balance_msat === 7000);
    const rows = async () => (await t.stack.db.kysely.selectFrom('ledger').selectAll().execute()).length;
    const before = await rows();
    const ctx = t.stack.admission.ctx;
    expect(await settle(ctx, inv.payment_hash, 7000)).toBe(false);
    await Promise.all([settle(ctx, inv.payment_hash, 7000), settle(ctx, inv.payment_hash, 7000), t.stack.admission.reconcile()]);
    expect(await rows()).toBe(before);
    expect((await api(t, `/api/accounts/${k.pubkey}`)).body.balance_msat).toBe(7000);
    expect(await ledgerTotal(t.stack.db.kysely)).toBe(0);
  });

  it('a forged "paid" changes nothing: only the wallet proves a payment', async () => {
    const k = newKey();
    const inv = await buy(k.pubkey, 'admission');
    for (const method of ['POST', 'PUT', 'PATCH']) {
      const r = await fetch(`${t.apiBase}/api/invoices/${inv.id}`, {
        method,
        body: JSON.stringify({ status: 'paid' }),
        headers: { 'Content-Type': 'application/json' },
      });
      expect(r.status).toBe(405);
    }
    // a payment_received notification from someone who is not the wallet
    const forger = newKey();
    const clientPubkey = getPublicKey(
      Buffer.from(new URL(t.payerNwc.replace('nostr+walletconnect://', 'http://')).searchParams.get('secret')!, 'hex'),
    );
    const fake = finalizeEvent(
      {
        kind: 23196,
        created_at: Math.floor(Date.now() / 1000),
        tags: [['p', clientPubkey]],
        content: JSON.stringify({ notification_type: 'payment_received', notification: { payment_hash: inv.payment_hash, amount: 21000 } }),
      },
      forger.sk,
    );
    c.send(['EVENT', fake]);
    await c.ok(fake.id);
    // settling a hash the wallet never saw paid is impossible through the reconciler too
    await t.stack.admission.reconcile();
    await sleep(300);
    expect((await api(t, `/api/invoices/${inv.id}`)).body.status).toBe('pending');
    expect((await api(t, `/api/accounts/${k.pubkey}`)).body.admitted).toBe(false);
  });

  it('a crash between payment and grant loses nothing: the restarted service grants', async () => {
    const k = newKey();
    const inv = await buy(k.pubkey, 'admission');
    const old = t.stack.admission;
    await old.close(); // the service is down: nobody hears the payment notification
    await payer.payInvoice({ invoice: inv.bolt11 });
    await sleep(300);
    expect((await api(t, `/api/accounts/${k.pubkey}`).catch(() => ({ body: { admitted: false } }))).body.admitted).toBe(false);
    const d = old.ctx;
    const restarted = await startAdmission(d.config, d.log, {
      db: d.db,
      bus: d.bus,
      lightning: d.lightning,
      pricing: d.pricing,
      relayKey: d.relayKey,
      relayUrl: d.relayUrl,
    });
    t.stack.admission = restarted;
    expect((await api(t, `/api/accounts/${k.pubkey}`)).body.admitted).toBe(true);
    expect((await api(t, `/api/invoices/${inv.id}`)).body.status).toBe('paid');
  });

  it('a zap made with nostr-tools NIP-57 helpers credits the zapper, and its receipt is on the relay', async () => {
    const profile = (await c.req('p', { kinds: [0], authors: [t.stack.relay.ctx.key.pubkey] })).events[0] as any;
    expect(JSON.parse(profile.content).lud06).toMatch(/^LNURL1/);
    const endpoint = await getZapEndpoint(profile);
    expect(endpoint).toBe(`${t.apiBase}/lnurlp/relay/callback`);
    const k = newKey();
    const template = makeZapRequest({ pubkey: profile.pubkey, amount: 3000, relays: [t.relayUrl], comment: 'thanks' });
    const zapRequest = finalizeEvent(template, k.sk);
    const zr = JSON.stringify(zapRequest);
    expect(validateZapRequest(zr)).toBeNull();
    const res = await fetch(`${endpoint}?amount=3000&nostr=${encodeURIComponent(zr)}`);
    const { pr } = (await res.json()) as { pr: string };
    expect(pr).toMatch(/^ln/);
    const watcher = await RawClient.open(t.relayUrl);
    await watcher.req('z', { kinds: [9735], '#p': [profile.pubkey] });
    await payer.payInvoice({ invoice: pr });
    const receipt = (await watcher.next((m) => m[0] === 'EVENT', 3000))[2] as any;
    expect(receipt.pubkey).toBe(profile.pubkey);
    expect(receipt.tags).toEqual(
      expect.arrayContaining([
        ['bolt11', pr],
        ['description', zr],
        ['P', k.pubkey],
      ]),
    );
    expect((await api(t, `/api/accounts/${k.pubkey}`)).body).toMatchObject({ admitted: false, balance_msat: 3000 });
    // a zap of at least the admission price admits
    const big = finalizeEvent(makeZapRequest({ pubkey: profile.pubkey, amount: 25000, relays: [t.relayUrl] }), k.sk);
    const r2 = (await (await fetch(`${endpoint}?amount=25000&nostr=${encodeURIComponent(JSON.stringify(big))}`)).json()) as { pr: string };
    await payer.payInvoice({ invoice: r2.pr });
    await until(async () => (await api(t, `/api/accounts/${k.pubkey}`)).body.admitted === true);
    expect((await api(t, `/api/accounts/${k.pubkey}`)).body.balance_msat).toBe(3000 + 25000 - 21000);
    // a bad zap request gets a clear LNURL error
    const bad = await fetch(`${endpoint}?amount=3000&nostr=${encodeURIComponent(JSON.stringify({ ...zapRequest, sig: 'f'.repeat(128) }))}`);
    expect(bad.status).toBe(400);
    expect(((await bad.json()) as any).status).toBe('ERROR');
    watcher.close();
  });
});

describe('subscriptions', () => {
  let t: TestStack;
  let payer: NWCClient;
  beforeAll(async () => {
    t = await startStack({ PRICE_SUBSCRIPTION_MSAT: '10000', SUBSCRIPTION_PERIOD_SECONDS: '3' });
    payer = new NWCClient({ nostrWalletConnectUrl: t.payerNwc });
  });
  afterAll(async () => {
    payer?.close();
    await t?.stop();
  });

  it('writing is allowed for the period paid for, and ends when it does', async () => {
    const c = await RawClient.open(t.relayUrl);
    const k = newKey();
    const refused = sign(k.sk, { content: 'posted before paying' });
    c.send(['EVENT', refused]);
    expect((await c.ok(refused.id))[2]).toBe(false);
    const r = await api(t, '/api/invoices', { json: { pubkey: k.pubkey, product: 'subscription' } });
    expect(r.status).toBe(201);
    await payer.payInvoice({ invoice: r.body.bolt11 });
    const acc = await until(async () => {
      const a = (await api(t, `/api/accounts/${k.pubkey}`)).body;
      return a.admitted ? a : undefined;
    });
    expect(acc.admitted_until).toBeGreaterThan(Math.floor(Date.now() / 1000));
    // the write refused before paying is published by the grant
    expect((await c.req('held', { ids: [refused.id] })).events).toEqual([refused]);
    expect((await api(t, `/api/held/${refused.id}?pubkey=${k.pubkey}`)).status).toBe(404);
    const ev = sign(k.sk, { content: 'subscribed' });
    c.send(['EVENT', ev]);
    expect((await c.ok(ev.id))[2]).toBe(true);
    await sleep((acc.admitted_until - Date.now() / 1000) * 1000 + 1100);
    const late = sign(k.sk, { content: 'too late' });
    c.send(['EVENT', late]);
    const m = await c.ok(late.id);
    expect(m[2]).toBe(false);
    expect(m[3]).toMatch(/^blocked: payment required: 10 sats/);
    c.close();
  });
});

const pgUrl = process.env.TEST_DATABASE_URL;
const redisUrl = process.env.TEST_REDIS_URL;
if (process.env.CI && (!pgUrl || !redisUrl)) throw new Error('CI must set TEST_DATABASE_URL and TEST_REDIS_URL');

describe.runIf(pgUrl && redisUrl)('a grant reaches every relay replica', () => {
  let t: TestStack;
  let other: Awaited<ReturnType<typeof startTestRelay>>;
  let payer: NWCClient;
  beforeAll(async () => {
    t = await startStack({ ...PRICES, REDIS_URL: redisUrl! }, { backend: 'postgres' });
    const config = t.stack.admission.ctx.config;
    // a second relay process's worth: its own cache and bus connection, same Postgres and Redis
    // (and so the same stored prices, whatever its environment says)
    other = await startTestRelay(
      'postgres',
      { ...PRICES, REDIS_URL: redisUrl!, PAYMENTS_URL: config.PAYMENTS_URL },
      { databaseUrl: config.DATABASE_URL },
    );
    payer = new NWCClient({ nostrWalletConnectUrl: t.payerNwc });
  });
  afterAll(async () => {
    payer?.close();
    await other?.close();
    await t?.stop();
  });

  it('within a second of the payment, the other replica accepts the write', async () => {
    const k = newKey();
    const c = await RawClient.open(other.url);
    const first = sign(k.sk, { content: 'not yet' });
    c.send(['EVENT', first]);
    expect((await c.ok(first.id))[2]).toBe(false);
    // Admission, and credit for the publication price of kind 7 (500 msat).
    const r = await api(t, '/api/invoices', { json: { pubkey: k.pubkey, product: 'admission' } });
    await payer.payInvoice({ invoice: r.body.bolt11 });
    const credit = await api(t, '/api/invoices', { json: { pubkey: k.pubkey, product: 'credit', amount_msat: 2000 } });
    await payer.payInvoice({ invoice: credit.body.bolt11 });
    const paid = Date.now();
    await until(async () => {
      const ev = sign(k.sk, { kind: 7, content: String(Math.random()) });
      c.send(['EVENT', ev]);
      return (await c.ok(ev.id))[2] === true;
    }, 1000);
    expect(Date.now() - paid).toBeLessThan(1000);
    c.close();
  });
});

describe('production mode', () => {
  it('refuses to start the dev Lightning network', async () => {
    await expect(startStack({ NODE_ENV: 'production', RELAY_SECRET_KEY: 'a'.repeat(64) })).rejects.toThrow(
      /NWC_URL is required in production/,
    );
  });
});
