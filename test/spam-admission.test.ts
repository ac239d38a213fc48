import { randomInt } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { finalizeEvent } from 'nostr-tools/pure';
import { makeZapRequest } from 'nostr-tools/nip57';
import { RedisVolumes } from '@paidrelay/bus';
import { createLogger } from '@paidrelay/config';
import { LOAD_KEY, LOAD_WINDOW } from '../packages/payment-gate/src/load.ts';
import { getAccount, getInvoice } from '@paidrelay/db';
import { startAdmission, type Admission } from '../apps/admission/src/app.ts';
import { settle } from '../apps/admission/src/settle.ts';
import { newKey, RawClient, sign, TEST_REDIS_PREFIX, until } from '../apps/relay/test/harness.ts';
import { startStack, type TestStack } from './stack.ts';

/**
 * Spam pricing seen from the admission service (Postgres, Redis): trust from paid history, the
 * admission price of a network rising with the admissions bought from it (shared by two
 * admission processes through Redis), and `/api/pricing?pubkey=`.
 */

const pgUrl = process.env.TEST_DATABASE_URL;
const redisUrl = process.env.TEST_REDIS_URL;
if (process.env.CI && (!pgUrl || !redisUrl)) throw new Error('CI must set TEST_DATABASE_URL and TEST_REDIS_URL');

const ENV = {
  PRICE_ADMISSION_MSAT: '21000',
  PRICE_EVENT_MSAT: '2000',
  // Paid history that leaves no balance (a balance would pay for writes past the allowance).
  PRICE_SUBSCRIPTION_MSAT: '979000',
  ALLOWANCE_FRESH_EVENTS: '3',
  ALLOWANCE_FULL_EVENTS: '8',
  TRUST_PAID_MSAT: '1000000',
  SURGE_STEP_EVENTS: '2',
  TRUST_PROXY: 'true',
  RECONCILE_INTERVAL_SECONDS: '3600',
};

/** A /24 of its own per run: Redis is shared with other runs, and its counters outlive a test. */
const randomNet = () => `10.${randomInt(256)}.${randomInt(256)}`;

async function call(base: string, path: string, ip: string, json?: unknown) {
  const res = await fetch(base + path, {
    method: json === undefined ? 'GET' : 'POST',
    headers: { 'X-Forwarded-For': ip, ...(json === undefined ? {} : { 'Content-Type': 'application/json' }) },
    ...(json === undefined ? {} : { body: JSON.stringify(json) }),
  });
  return { status: res.status, body: (await res.json()) as Record<string, any> };
}

describe.runIf(pgUrl && redisUrl)('spam pricing in the admission service (Postgres, Redis)', () => {
  let t: TestStack;
  let second: Admission;
  beforeAll(async () => {
    t = await startStack({ ...ENV, REDIS_URL: redisUrl! }, { backend: 'postgres' });
    // A second admission process's worth: its own counters' Redis connection, same database.
    const ctx = t.stack.admission.ctx;
    second = await startAdmission(
      ctx.config,
      createLogger(ctx.config.LOG_LEVEL, 'second-admission'),
      { db: ctx.db, bus: ctx.bus, lightning: ctx.lightning, pricing: ctx.pricing, relayKey: ctx.relayKey, relayUrl: ctx.relayUrl },
      0,
    );
  });
  afterAll(async () => {
    await second?.close();
    await t?.stop();
  });

  /** An invoice asked from `ip` on `base`, then settled as the wallet's notification would. */
  async function buy(base: string, ip: string, pubkey: string, product: string, extra: object = {}, times = 1) {
    const r = await call(base, '/api/invoices', ip, { pubkey, product, ...extra });
    expect(r.status).toBe(201);
    for (let i = 0; i < times; i++) await settle(t.stack.admission.ctx, r.body.payment_hash, r.body.amount_msat);
    return r.body;
  }

  it('a key that paid TRUST_PAID_MSAT gets the full allowance on its first day; a fresh one the fresh allowance', async () => {
    const ip = `${randomNet()}.1`;
    const paid = newKey();
    const fresh = newKey();
    await buy(t.apiBase, ip, paid.pubkey, 'subscription', {}, 2); // settled twice: counted once
    await buy(t.apiBase, ip, paid.pubkey, 'admission');
    await buy(t.apiBase, ip, fresh.pubkey, 'admission');
    expect((await getAccount(t.stack.admission.ctx.db.kysely, paid.pubkey))?.paidMsat).toBe(1_000_000);
    expect((await getAccount(t.stack.admission.ctx.db.kysely, fresh.pubkey))?.paidMsat).toBe(21_000);
    const c = await RawClient.open(t.relayUrl);
    const accepted = async (k: ReturnType<typeof newKey>) => {
      // The grant reaches the relay's cache through the bus: wait for the first write to pass.
      await until(async () => {
        const ev = sign(k.sk, { content: `first ${Math.random()}` });
        c.send(['EVENT', ev]);
        return (await c.ok(ev.id))[2] === true;
      });
      let n = 1;
      for (;;) {
        const ev = sign(k.sk, { content: `note ${n}` });
        c.send(['EVENT', ev]);
        const ok = await c.ok(ev.id);
        if (ok[2] !== true) {
          expect(ok[3]).toMatch(/daily allowance of \d+ events used/);
          return n;
        }
        n++;
      }
    };
    // One more may pass: a write decided while the replica's last counts are on their way to
    // Redis does not see them (VolumeTracker), on a busy machine now and then.
    const full = await accepted(paid);
    expect(full).toBeGreaterThanOrEqual(8);
    expect(full).toBeLessThanOrEqual(9);
    const small = await accepted(fresh);
    expect(small).toBeGreaterThanOrEqual(3);
    expect(small).toBeLessThanOrEqual(4);
    c.close();
  });

  it('the admission price of a network doubles after 10 paid admissions from it, across two admission processes', async () => {
    const net = randomNet();
    const other = randomNet();
    const bases = [t.apiBase, second.url];
    for (let i = 0; i < 9; i++) {
      // The first one is settled twice (a repeated notification): one admission all the same.
      const inv = await buy(bases[i % 2], `${net}.${i + 1}`, newKey().pubkey, 'admission', {}, i === 0 ? 2 : 1);
      expect(inv.amount_msat).toBe(21_000);
    }
    // Created but never paid: not an admission bought.
    expect((await call(second.url, '/api/invoices', `${net}.50`, { pubkey: newKey().pubkey, product: 'admission' })).body.amount_msat).toBe(
      21_000,
    );
    expect((await call(second.url, '/api/invoices', `${net}.51`, { pubkey: newKey().pubkey, product: 'admission' })).body.amount_msat).toBe(
      21_000,
    );
    // The tenth paid admission is still at the base price: nine were bought before it.
    expect((await buy(t.apiBase, `${net}.10`, newKey().pubkey, 'admission')).amount_msat).toBe(21_000);

    const surged = await call(second.url, '/api/invoices', `${net}.200`, { pubkey: newKey().pubkey, product: 'admission' });
    expect(surged.body.amount_msat).toBe(42_000);
    const elsewhere = await call(second.url, '/api/invoices', `${other}.200`, { pubkey: newKey().pubkey, product: 'admission' });
    expect(elsewhere.body.amount_msat).toBe(21_000);
    // The invoice keeps the price it was created at.
    expect((await getInvoice(t.stack.admission.ctx.db.kysely, surged.body.id))?.amountMsat).toBe(42_000);

    // The relay's refusal names the price the pay page asks: a fresh key writing from that network
    // is told 42 sats (the first refusal starts following the network's admissions).
    const c = await RawClient.open(t.relayUrl, { 'X-Forwarded-For': `${net}.201` });
    const fresh = newKey();
    const refusal = await until(async () => {
      const ev = sign(fresh.sk, { content: `hi ${Math.random()}` });
      c.send(['EVENT', ev]);
      const ok = await c.ok(ev.id);
      expect(ok[2]).toBe(false);
      return String(ok[3]).includes('42 sats') && String(ok[3]);
    });
    expect(refusal).toMatch(/^blocked: payment required: .*42 sats.*21 sats when quiet/);
    c.close();

    // The pay page's offers, for the asking network, with the reason; the base price stays.
    const pricing = await call(t.apiBase, '/api/pricing', `${net}.7`);
    expect(pricing.body.admission_msat).toBe(21_000);
    expect(pricing.body.products.find((o: { product: string }) => o.product === 'admission').label).toBe(
      'admission for 42 sats (many admissions from your network lately; 21 sats when quiet)',
    );
    const quiet = await call(t.apiBase, '/api/pricing', `${other}.7`);
    expect(quiet.body.products.find((o: { product: string }) => o.product === 'admission').label).toBe('admission for 21 sats');
    const k = newKey();
    expect((await call(second.url, `/api/pricing?pubkey=${k.pubkey}`, `${net}.8`)).body.sender).toMatchObject({
      admission_msat: 42_000,
      admission_multiplier: 2,
    });

    // A zap admits at the same price: 21 sats from this network is credit, 42 sats admits.
    const relayPubkey = t.stack.admission.ctx.relayKey.pubkey;
    const zap = async (ip: string, amount: number) => {
      const req = JSON.stringify(finalizeEvent(makeZapRequest({ pubkey: relayPubkey, amount, relays: [t.relayUrl] }), k.sk));
      const r = await call(
        t.apiBase,
        `/lnurlp/${t.stack.admission.ctx.config.LNURL_NAME}/callback?amount=${amount}&nostr=${encodeURIComponent(req)}`,
        ip,
      );
      const row = await t.stack.admission.ctx.db.kysely
        .selectFrom('invoices')
        .select('payment_hash')
        .where('bolt11', '=', r.body.pr)
        .executeTakeFirstOrThrow();
      await settle(t.stack.admission.ctx, row.payment_hash, amount);
      return getAccount(t.stack.admission.ctx.db.kysely, k.pubkey);
    };
    expect(await zap(`${net}.9`, 21_000)).toMatchObject({ admitted: false, balanceMsat: 21_000 });
    expect(await zap(`${net}.9`, 42_000)).toMatchObject({ admitted: true, balanceMsat: 21_000 });
  });

  it('/api/pricing?pubkey= shows the write multiplier and the allowance left after writes through the relay', async () => {
    const ip = `${randomNet()}.9`;
    const k = newKey();
    const before = await call(t.apiBase, `/api/pricing?pubkey=${k.pubkey}`, ip);
    expect(before.status).toBe(200);
    expect(before.body.sender).toEqual({
      pubkey: k.pubkey,
      multiplier: 1,
      why: '',
      allowance: { events: 3, bytes: 256 * 1024 },
      allowance_left: { events: 3, bytes: 256 * 1024 },
      window_seconds: 3600,
      admission_msat: 21_000,
      admission_multiplier: 1,
      trust: 0,
    });
    await buy(t.apiBase, ip, k.pubkey, 'admission');
    const c = await RawClient.open(t.relayUrl);
    const sent: number[] = [];
    await until(async () => {
      const ev = sign(k.sk, { content: `hello ${Math.random()}` });
      c.send(['EVENT', ev]);
      const ok = await c.ok(ev.id);
      if (ok[2] === true) sent.push(Buffer.byteLength(JSON.stringify(ev)));
      return sent.length === 3;
    });
    c.close();
    // The gate's counts reach Redis within a flush; the API reads them there.
    const view = await until(async () => {
      const r = await call(t.apiBase, `/api/pricing?pubkey=${k.pubkey}`, ip);
      return r.body.sender.allowance_left.events === 0 ? r.body.sender : undefined;
    });
    expect(view).toMatchObject({ multiplier: 2, why: '3 events from you in the last hour', allowance: { events: 3 } });
    expect(view.allowance_left.bytes).toBe(view.allowance.bytes - sent.reduce((a, b) => a + b, 0));
    expect(view.trust).toBeCloseTo(0.021, 5);
    // An npub is the same sender; a bad pubkey is a 400 with a message.
    const { npubEncode } = await import('nostr-tools/nip19');
    expect((await call(t.apiBase, `/api/pricing?pubkey=${npubEncode(k.pubkey)}`, ip)).body.sender.pubkey).toBe(k.pubkey);
    const bad = await call(t.apiBase, '/api/pricing?pubkey=nope', ip);
    expect(bad).toEqual({ status: 400, body: { error: 'pubkey must be 64 hex characters or an npub' } });
    expect((await call(t.apiBase, '/api/pricing', ip)).body.sender).toBeUndefined();
  });
});

describe.runIf(pgUrl && redisUrl)('/api/pricing?pubkey= follows the relay-wide load level', () => {
  // The load counter is relay-wide: this run's keys are apart from other runs' (REDIS_PREFIX).
  let t: TestStack;
  let writes: RedisVolumes;
  beforeAll(async () => {
    t = await startStack({ ...ENV, REDIS_URL: redisUrl as string, SURGE_CAPACITY_PER_SECOND: '1' }, { backend: 'postgres' });
    writes = new RedisVolumes(redisUrl as string, createLogger('silent', 'load-test'), {
      timeoutMs: 2_000,
      prefix: `${TEST_REDIS_PREFIX}vol:`,
    });
  });
  afterAll(async () => {
    await writes?.close();
    await t?.stop();
  });

  it('shows the load in the multiplier and says the relay is busy', async () => {
    const k = newKey();
    expect((await call(t.apiBase, `/api/pricing?pubkey=${k.pubkey}`, '10.0.0.1')).body.sender).toMatchObject({ multiplier: 1, why: '' });
    await until(() => writes.usable());
    // Every replica's stored writes, as the relays count them: 5 a second against a capacity of 1.
    await writes.add(LOAD_KEY, LOAD_WINDOW, 50, 0);
    const sender = await until(async () => {
      const r = (await call(t.apiBase, `/api/pricing?pubkey=${k.pubkey}`, '10.0.0.1')).body.sender;
      return r.multiplier >= 2 ? r : undefined;
    });
    expect(sender.why).toBe('the relay is busy');
  });
});

describe('/api/pricing?pubkey= without spam pricing', () => {
  let t: TestStack;
  beforeAll(async () => {
    t = await startStack({ ...ENV, SPAM_PRICING: 'false' });
  });
  afterAll(async () => {
    await t?.stop();
  });

  it('shows multiplier 1 and no allowance', async () => {
    const k = newKey();
    expect((await call(t.apiBase, `/api/pricing?pubkey=${k.pubkey}`, '10.0.0.1')).body.sender).toEqual({
      pubkey: k.pubkey,
      multiplier: 1,
      why: '',
      allowance: null,
      allowance_left: null,
      window_seconds: 0,
      admission_msat: 21_000,
      admission_multiplier: 1,
      trust: 0,
    });
  });
});
