import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createHash } from 'node:crypto';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DevLedger } from '../src/dev/ledger.ts';
import { loadOrCreateKeys } from '../src/dev/keys.ts';
import { decodeBolt11 } from '../src/bolt11.ts';
import { LightningError } from '../src/types.ts';

const sha = (b: Buffer | string) => createHash('sha256').update(b).digest('hex');
const NODE = 'e126f68f7eafcc8b74f54d269fe206be715000f94dac067d1c04a8ca3b2db734';

let dir: string;
let nowMs: number;
const clock = () => nowMs;
const open = () =>
  DevLedger.open({ path: join(dir, 'state.json'), nodeSecret: NODE, initialBalances: { relay: 0, payer: 100_000_000 }, clock });

async function refused(p: Promise<unknown>, code: string, msg?: RegExp) {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(LightningError);
  expect((err as LightningError).code).toBe(code);
  if (msg) expect((err as Error).message).toMatch(msg);
}

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'ln-ledger-'));
  nowMs = 1_800_000_000_000;
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

describe('DevLedger', () => {
  it('makes a real invoice whose hash is sha256 of a secret preimage', async () => {
    const l = await open();
    const inv = await l.makeInvoice('relay', { amount: 21_000, description: 'admission', expiry: 600 });
    const d = decodeBolt11(inv.bolt11);
    expect(d.paymentHash).toBe(inv.paymentHash);
    expect(d.amountMsat).toBe(21_000);
    expect(d.description).toBe('admission');
    expect(d.createdAt).toBe(1_800_000_000);
    expect(d.expiresAt).toBe(1_800_000_600);
    expect(sha(Buffer.from(inv.preimage, 'hex'))).toBe(inv.paymentHash);
    const tx = l.lookup('relay', { payment_hash: inv.paymentHash });
    expect(tx).toMatchObject({
      type: 'incoming',
      state: 'pending',
      amount: 21_000,
      preimage: '',
      settled_at: 0,
      expires_at: 1_800_000_600,
    });
  });

  it('pays: debits the payer, credits the issuer, settles once, and keeps the total', async () => {
    const l = await open();
    const inv = await l.makeInvoice('relay', { amount: 12_345 });
    nowMs += 5_000;
    const { payment } = await l.payInvoice('payer', inv.bolt11);
    expect(payment.preimage).toBe(inv.preimage);
    expect(l.balance('payer')).toBe(100_000_000 - 12_345);
    expect(l.balance('relay')).toBe(12_345);
    expect(l.totalMsat()).toBe(100_000_000);
    expect(l.lookup('relay', { invoice: inv.bolt11 })).toMatchObject({
      state: 'settled',
      preimage: inv.preimage,
      settled_at: 1_800_000_005,
    });
    expect(l.lookup('payer', { payment_hash: inv.paymentHash })).toMatchObject({ type: 'outgoing', state: 'settled', amount: 12_345 });
    await refused(l.payInvoice('payer', inv.bolt11), 'PAYMENT_FAILED', /already paid/);
    expect(l.balance('payer')).toBe(100_000_000 - 12_345);
  });

  it('lets only one of two simultaneous payments of an invoice through', async () => {
    const l = await open();
    const inv = await l.makeInvoice('relay', { amount: 1_000 });
    const results = await Promise.allSettled([l.payInvoice('payer', inv.bolt11), l.payInvoice('payer', inv.bolt11)]);
    expect(results.map((r) => r.status).sort()).toEqual(['fulfilled', 'rejected']);
    expect(l.balance('relay')).toBe(1_000);
  });

  it('refuses expired, unknown, foreign, own, mis-amounted and unaffordable invoices', async () => {
    const l = await open();
    const soon = await l.makeInvoice('relay', { amount: 1_000, expiry: 60 });
    nowMs += 60_000;
    await refused(l.payInvoice('payer', soon.bolt11), 'PAYMENT_FAILED', /expired/);
    expect(l.lookup('relay', { payment_hash: soon.paymentHash }).state).toBe('expired');

    // A valid invoice, even signed by the same node key, that this ledger never issued:
    const elsewhere = await DevLedger.open({ path: join(dir, 'elsewhere.json'), nodeSecret: NODE, initialBalances: { relay: 0 }, clock });
    const stranger = await elsewhere.makeInvoice('relay', { amount: 5 });
    await refused(l.payInvoice('payer', stranger.bolt11), 'PAYMENT_FAILED', /not issued/);

    await refused(l.payInvoice('payer', 'lnbcrt1garbage'), 'OTHER');
    const own = await l.makeInvoice('payer', { amount: 5 });
    await refused(l.payInvoice('payer', own.bolt11), 'PAYMENT_FAILED', /own invoice/);
    const inv = await l.makeInvoice('relay', { amount: 5_000 });
    await refused(l.payInvoice('payer', inv.bolt11, 4_000), 'OTHER', /does not match/);
    const big = await l.makeInvoice('relay', { amount: 100_000_001 });
    await refused(l.payInvoice('payer', big.bolt11), 'INSUFFICIENT_BALANCE');
    expect(l.balance('payer')).toBe(100_000_000);
    expect(l.balance('relay')).toBe(0);
    await refused(l.payInvoice('nobody', inv.bolt11), 'UNAUTHORIZED');
  });

  it('checks make_invoice parameters as they come off the wire', async () => {
    const l = await open();
    await refused(l.makeInvoice('relay', { amount: 0 }), 'OTHER', /amount/);
    await refused(l.makeInvoice('relay', { amount: -5 }), 'OTHER', /amount/);
    await refused(l.makeInvoice('relay', { amount: 1.5 }), 'OTHER', /amount/);
    await refused(l.makeInvoice('relay', { amount: '1000' }), 'OTHER', /amount/);
    await refused(l.makeInvoice('relay', { amount: 1000, expiry: 0 }), 'OTHER', /expiry/);
    await refused(l.makeInvoice('relay', { amount: 1000, description: 7 }), 'OTHER', /description/);
    await refused(l.makeInvoice('relay', { amount: 1000, description_hash: 'abc' }), 'OTHER', /description_hash/);
    await refused(l.makeInvoice('relay', { amount: 1000, description: 'a', description_hash: sha('b') }), 'OTHER', /sha256/);
    await refused(l.makeInvoice('relay', { amount: 1000, description: 'x'.repeat(700) }), 'OTHER', /639/);
    // A long zap request goes by hash, and the wallet keeps the text.
    const zap = JSON.stringify({ kind: 9734, content: 'x'.repeat(700) });
    const inv = await l.makeInvoice('relay', { amount: 1000, description: zap, description_hash: sha(zap) });
    expect(decodeBolt11(inv.bolt11).descriptionHash).toBe(sha(zap));
    expect(l.lookup('relay', { payment_hash: inv.paymentHash })).toMatchObject({ description: zap, description_hash: sha(zap) });
  });

  it('keeps every invoice and payment across a restart, written atomically', async () => {
    const l = await open();
    const paid = await l.makeInvoice('relay', { amount: 777 });
    const pending = await l.makeInvoice('relay', { amount: 888 });
    await l.payInvoice('payer', paid.bolt11);
    expect(readdirSync(dir).sort()).toEqual(['state.json']);
    const onDisk = JSON.parse(readFileSync(join(dir, 'state.json'), 'utf8'));
    expect(onDisk.invoices[paid.paymentHash].state).toBe('settled');
    expect(onDisk.wallets.payer.balanceMsat).toBe(100_000_000 - 777);

    const again = await open();
    expect(again.balance('payer')).toBe(100_000_000 - 777);
    expect(again.balance('relay')).toBe(777);
    expect(again.lookup('relay', { payment_hash: paid.paymentHash })).toMatchObject({ state: 'settled', preimage: paid.preimage });
    expect(again.lookup('relay', { payment_hash: pending.paymentHash }).state).toBe('pending');
    await again.payInvoice('payer', pending.bolt11);
    await refused(again.payInvoice('payer', paid.bolt11), 'PAYMENT_FAILED', /already paid/);
  });

  it('refuses a corrupt state file instead of starting from zero', async () => {
    writeFileSync(join(dir, 'state.json'), '{"version":1,"wallets":');
    await expect(open()).rejects.toThrow(/not valid JSON/);
  });

  it('undoes a payment whose write fails', async () => {
    const l = await open();
    const inv = await l.makeInvoice('relay', { amount: 1_000 });
    rmSync(dir, { recursive: true, force: true });
    writeFileSync(dir, 'a file where the folder was');
    await refused(l.payInvoice('payer', inv.bolt11), 'INTERNAL', /could not save/);
    expect(l.balance('payer')).toBe(100_000_000);
    expect(l.lookup('relay', { payment_hash: inv.paymentHash }).state).toBe('pending');
    rmSync(dir, { force: true });
  });

  it('drops unpaid invoices a week past expiry at load, keeps paid ones', async () => {
    const l = await open();
    const stale = await l.makeInvoice('relay', { amount: 10, expiry: 60 });
    const paid = await l.makeInvoice('relay', { amount: 20, expiry: 60 });
    await l.payInvoice('payer', paid.bolt11);
    nowMs += 8 * 24 * 3600 * 1000;
    const later = await open();
    await refused(
      Promise.resolve().then(() => later.lookup('relay', { payment_hash: stale.paymentHash })),
      'NOT_FOUND',
    );
    expect(later.lookup('relay', { payment_hash: paid.paymentHash }).state).toBe('settled');
  });

  it('lists transactions newest first, settled only unless unpaid is asked', async () => {
    const l = await open();
    const a = await l.makeInvoice('relay', { amount: 1 });
    nowMs += 1000;
    const b = await l.makeInvoice('relay', { amount: 2 });
    nowMs += 1000;
    await l.makeInvoice('relay', { amount: 3 });
    await l.payInvoice('payer', a.bolt11);
    await l.payInvoice('payer', b.bolt11);
    expect(l.list('relay', {}).transactions.map((t) => t.amount)).toEqual([2, 1]);
    expect(l.list('relay', { unpaid: true }).transactions.map((t) => t.amount)).toEqual([3, 2, 1]);
    expect(l.list('relay', { unpaid: true, limit: 1, offset: 1 })).toMatchObject({ total_count: 3, transactions: [{ amount: 2 }] });
    for (let i = 0; i < 30; i++) await l.makeInvoice('relay', { amount: 10 + i });
    expect(l.list('relay', { unpaid: true })).toMatchObject({ total_count: 33, transactions: { length: 20 } });
    expect(l.list('relay', { unpaid: true, limit: 500 }).transactions).toHaveLength(33);
    // Pages that would not fit in one NIP-44 message are shortened.
    for (let i = 0; i < 100; i++) await l.makeInvoice('relay', { amount: 100 + i, description: 'd'.repeat(600) });
    const page = l.list('relay', { unpaid: true, limit: 100 });
    expect(page.total_count).toBe(133);
    expect(page.transactions.length).toBeGreaterThan(10);
    expect(page.transactions.length).toBeLessThan(100);
    expect(JSON.stringify(page).length).toBeLessThan(45_000);
    expect(l.list('payer', {}).transactions.map((t) => [t.type, t.amount])).toEqual([
      ['outgoing', 1],
      ['outgoing', 2],
    ]);
  });
});

describe('dev wallet keys', () => {
  it('are created once, kept, and extended with new wallets', async () => {
    const path = join(dir, 'keys.json');
    const k1 = await loadOrCreateKeys(path, ['relay', 'payer']);
    expect(k1.nodeSecret).toMatch(/^[0-9a-f]{64}$/);
    expect(new Set([k1.wallets.relay!.serviceSecret, k1.wallets.relay!.clientSecret, k1.wallets.payer!.serviceSecret]).size).toBe(3);
    const k2 = await loadOrCreateKeys(path, ['relay', 'payer', 'extra']);
    expect(k2.wallets.relay).toEqual(k1.wallets.relay);
    expect(k2.nodeSecret).toBe(k1.nodeSecret);
    expect((await loadOrCreateKeys(path, ['relay'])).wallets.extra).toEqual(k2.wallets.extra);
    writeFileSync(path, JSON.stringify({ version: 1, nodeSecret: 'nope', wallets: {} }));
    await expect(loadOrCreateKeys(path, ['relay'])).rejects.toThrow(/unknown format/);
  });
});
