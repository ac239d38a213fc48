import { randomBytes } from 'node:crypto';
import { tmpdir } from 'node:os';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { Migrator, sql } from 'kysely';
import {
  adminGrant,
  adminTransaction,
  createInvoice,
  getAccount,
  migrationProvider,
  openDatabase,
  settleInvoice,
  type Database,
  type NewInvoice,
} from '../src/index.ts';
import { backends, createTestDatabase, TEST_DATABASE_URL, type Opened } from './backends.ts';

/** Paid history (migration 0007): what a key has paid in all, kept on its account at settlement. */

const NOW = 1_700_000_000;
const MONTH = 30 * 86_400;
const hex32 = () => randomBytes(32).toString('hex');

function newInvoice(over: Partial<NewInvoice> = {}): NewInvoice {
  return {
    paymentHash: hex32(),
    bolt11: `lnbc${randomBytes(8).toString('hex')}`,
    pubkey: hex32(),
    product: 'credit',
    amountMsat: 10_000,
    createdAt: NOW,
    expiresAt: NOW + 600,
    eventId: null,
    zapRequest: null,
    description: null,
    ...over,
  };
}

describe.each(backends)('paid history on $name', (backend) => {
  let opened: Opened;
  let db: Database;
  beforeAll(async () => {
    opened = await backend.open();
    db = opened.db;
    await db.migrate();
  });
  afterAll(async () => {
    await opened?.cleanup();
  });
  beforeEach(async () => {
    await sql`TRUNCATE ledger, invoices, accounts, held_events RESTART IDENTITY`.execute(db.kysely);
  });
  const settle = (hash: string, amountMsat?: number) =>
    settleInvoice(db.kysely, hash, { now: NOW, subscriptionPeriodSeconds: MONTH, zap: { admissionMsat: 21_000 }, amountMsat });

  it('adds what was received, of every product, once per invoice', async () => {
    const pubkey = hex32();
    const admission = await createInvoice(
      db.kysely,
      newInvoice({ pubkey, product: 'admission', amountMsat: 21_000, network: '10.1.2.0/24' }),
    );
    const credit = await createInvoice(db.kysely, newInvoice({ pubkey, product: 'credit', amountMsat: 5_000 }));
    const first = await settle(admission.paymentHash, 22_000); // 1 sat over: paid all the same
    expect(first).toMatchObject({ settled: true, admits: true, account: { paidMsat: 22_000 } });
    expect(first.invoice.network).toBe('10.1.2.0/24');
    // Settled again (a second notification, the reconciler): nothing more.
    expect(await settle(admission.paymentHash, 22_000)).toMatchObject({ settled: false });
    const second = await settle(credit.paymentHash);
    expect(second).toMatchObject({ settled: true, admits: false, account: { paidMsat: 27_000, balanceMsat: 6_000 } });
    expect(await settle(credit.paymentHash)).toMatchObject({ settled: false });
    expect((await getAccount(db.kysely, pubkey))?.paidMsat).toBe(27_000);
  });

  it('a zap that admits says so; an admin grant is not paid history', async () => {
    const pubkey = hex32();
    await adminTransaction(db.kysely, (trx) =>
      adminGrant(trx, { kind: 'credit', amountMsat: 50_000, pubkey, admin: hex32(), reason: '', valueMsat: 0, now: NOW, txid: 'grant:t1' }),
    );
    expect(await getAccount(db.kysely, pubkey)).toMatchObject({ balanceMsat: 50_000, paidMsat: 0 });
    const zap = await createInvoice(db.kysely, newInvoice({ pubkey, product: 'zap', amountMsat: 21_000, zapRequest: '{}' }));
    expect(await settle(zap.paymentHash)).toMatchObject({ settled: true, admits: true, account: { paidMsat: 21_000 } });
  });
});

describe.runIf(TEST_DATABASE_URL !== undefined)('migration 0007_paid_history on Postgres', () => {
  it('backfills paid_msat from the paid invoices (what was received), and makes the accounts it needs', async () => {
    const { url, drop } = await createTestDatabase(TEST_DATABASE_URL as string);
    const db = await openDatabase({ databaseUrl: url, dataDir: tmpdir(), poolSize: 2 });
    try {
      // 0006 builds its indexes online, outside a transaction (as db.migrate runs it).
      expect((await new Migrator({ db: db.kysely, provider: migrationProvider }).migrateTo('0005_settings')).error).toBeUndefined();
      const to0006 = new Migrator({ db: db.kysely, provider: migrationProvider, disableTransactions: true });
      expect((await to0006.migrateTo('0006_read_indexes')).error).toBeUndefined();
      const a = hex32();
      const b = hex32();
      const ins = (pubkey: string, id: string, amount: number, status: string, received: number, to = `user:${pubkey}`) => [
        sql`INSERT INTO invoices (id, payment_hash, bolt11, pubkey, product, amount_msat, status, created_at, expires_at, paid_at)
          VALUES (${id}, ${hex32()}, 'lnbc1', ${Buffer.from(pubkey, 'hex')}, 'credit', ${amount}, ${status}, ${NOW}, ${NOW + 600},
          ${status === 'paid' ? NOW : null})`,
        ...(status === 'paid'
          ? [
              sql`INSERT INTO ledger (txid, account, amount_msat, invoice_id, created_at) VALUES
                (${`invoice:${id}`}, 'wallet', ${-received}, ${id}, ${NOW}),
                (${`invoice:${id}`}, ${to}, ${received}, ${id}, ${NOW})`,
            ]
          : []),
      ];
      await db.kysely.transaction().execute(async (trx) => {
        await sql`INSERT INTO accounts (pubkey, admitted, balance_msat, created_at, updated_at)
          VALUES (${Buffer.from(a, 'hex')}, true, 16000, ${NOW - 100}, ${NOW})`.execute(trx);
        for (const s of [
          ...ins(a, 'a1', 10_000, 'paid', 11_000),
          ...ins(a, 'a2', 5_000, 'paid', 5_000),
          ...ins(a, 'a3', 7_000, 'pending', 0),
          ...ins(b, 'b1', 3_000, 'paid', 3_000, 'revenue:event'), // a paid held event: no account
        ])
          await s.execute(trx);
      });
      await db.migrate();
      expect(await getAccount(db.kysely, a)).toMatchObject({ paidMsat: 16_000, balanceMsat: 16_000, createdAt: NOW - 100 });
      expect(await getAccount(db.kysely, b)).toMatchObject({ paidMsat: 3_000, admitted: false, createdAt: NOW });
    } finally {
      await db.close();
      await drop();
    }
  });
});
