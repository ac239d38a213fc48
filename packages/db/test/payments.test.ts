import { createHash, randomBytes } from 'node:crypto';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { sql, type Kysely } from 'kysely';
import fc from 'fast-check';
import {
  createInvoice,
  debitForEvent,
  expireInvoices,
  getAccount,
  getEventById,
  getHeldEvent,
  listHeldEvents,
  deleteHeldEvents,
  getInvoice,
  getInvoiceByHash,
  holdEvent,
  holdEvents,
  type HoldItem,
  ledgerBalance,
  ledgerTotal,
  listAccounts,
  listPendingInvoices,
  PaymentError,
  purgeHeldEvents,
  trimHeldEvents,
  heldEventStats,
  setZapReceipt,
  settleInvoice,
  storeEvents,
  userAccount,
  type AccountRow,
  type Database,
  type NewInvoice,
  type Schema,
} from '../src/index.ts';
import { author, backends, mk, type Opened } from './backends.ts';

const NOW = 1_700_000_000;
/** The test's own reading of an account row at `now` (an oracle independent of the code's isAdmitted). */
const isAdmitted = (a: Omit<AccountRow, 'createdAt'> | undefined, now: number) =>
  !!a && a.admitted && (a.admittedUntil === null || a.admittedUntil > now);
const DAY = 86_400;
const MONTH = 30 * DAY;

const hex32 = () => randomBytes(32).toString('hex');
const hashOf = (s: string) => createHash('sha256').update(s).digest('hex');

describe.each(backends)('payments on $name', (backend) => {
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

  const truncate = () =>
    sql`TRUNCATE ledger, invoices, accounts, held_events, events, event_tags, deletions RESTART IDENTITY`.execute(db.kysely);

  beforeEach(async () => {
    await truncate();
  });

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

  const settle = (hash: string, extra: Partial<Parameters<typeof settleInvoice>[2]> = {}) =>
    settleInvoice(db.kysely, hash, { now: NOW, subscriptionPeriodSeconds: MONTH, ...extra });

  async function ledgerRows(): Promise<{ txid: string; account: string; amount_msat: number; invoice_id: string | null; memo: string }[]> {
    return db.kysely.selectFrom('ledger').select(['txid', 'account', 'amount_msat', 'invoice_id', 'memo']).orderBy('id').execute();
  }

  /** Everything money-related, to prove that an operation changed nothing. */
  async function snapshot() {
    return {
      accounts: await db.kysely.selectFrom('accounts').selectAll().orderBy('pubkey').execute(),
      invoices: await db.kysely.selectFrom('invoices').selectAll().orderBy('id').execute(),
      ledger: await db.kysely.selectFrom('ledger').selectAll().orderBy('id').execute(),
      held: await db.kysely.selectFrom('held_events').selectAll().orderBy('event_id').execute(),
    };
  }

  /** The books balance: all rows, every txid, and every user's ledger balance vs. accounts. */
  async function expectBooksBalanced(): Promise<void> {
    expect(await ledgerTotal(db.kysely)).toBe(0);
    const unbalanced = await sql<{ txid: string }>`
      SELECT txid FROM ledger GROUP BY txid HAVING sum(amount_msat) <> 0`.execute(db.kysely);
    expect(unbalanced.rows).toEqual([]);
    const mismatched = await sql<{ account: string }>`
      SELECT coalesce(l.account, 'user:' || encode(a.pubkey, 'hex')) AS account
      FROM accounts a
      FULL JOIN (SELECT account, sum(amount_msat) AS s FROM ledger WHERE account LIKE 'user:%' GROUP BY account) l
        ON l.account = 'user:' || encode(a.pubkey, 'hex')
      WHERE coalesce(a.balance_msat, 0) <> coalesce(l.s, 0)`.execute(db.kysely);
    expect(mismatched.rows).toEqual([]);
    for (const a of await listAccounts(db.kysely)) {
      expect(a.balanceMsat).toBeGreaterThanOrEqual(0);
      expect(await ledgerBalance(db.kysely, userAccount(a.pubkey))).toBe(a.balanceMsat);
    }
  }

  /**
   * Starts `run()` while `lock` holds row locks in an open transaction, so every racer reaches
   * the locked row before any of them can proceed; then releases. On Postgres it waits until all
   * `waiters` sessions are blocked on a lock (a real race, every time); PGlite has one session, so
   * the racers just queue behind the transaction and run one after another.
   */
  async function race<T>(lock: (trx: Kysely<Schema>) => Promise<unknown>, waiters: number, run: () => Promise<T>[]): Promise<T[]> {
    let started: Promise<PromiseSettledResult<T>[]> | undefined;
    await db.kysely.transaction().execute(async (trx) => {
      await lock(trx);
      started = Promise.allSettled(run());
      if (db.kind !== 'postgres') return;
      for (let i = 0; ; i++) {
        await sql`SELECT pg_stat_clear_snapshot()`.execute(trx); // stats are snapshotted per transaction
        const { rows } = await sql<{ n: number }>`
          SELECT count(*) AS n FROM pg_stat_activity
          WHERE datname = current_database() AND wait_event_type = 'Lock'`.execute(trx);
        if (rows[0].n >= waiters) break;
        if (i > 200) throw new Error(`only ${rows[0].n} of ${waiters} racers reached the lock`);
        await new Promise((r) => setTimeout(r, 10));
      }
    });
    const settled = await (started as Promise<PromiseSettledResult<T>[]>);
    return settled.map((r) => {
      if (r.status === 'rejected') throw r.reason;
      return r.value;
    });
  }

  const lockAccountRow = (pubkey: string) => (trx: Kysely<Schema>) =>
    trx.selectFrom('accounts').select('pubkey').where('pubkey', '=', Buffer.from(pubkey, 'hex')).forUpdate().execute();

  // -------------------------------------------------------------------------------------------

  describe('schema', () => {
    it('creates the payment tables and the indexes the queries rely on', async () => {
      const { rows } = await sql<{ indexname: string }>`
        SELECT indexname FROM pg_indexes WHERE schemaname = 'public'`.execute(db.kysely);
      expect(rows.map((r) => r.indexname)).toEqual(
        expect.arrayContaining([
          'accounts_pkey',
          'accounts_updated_at_idx',
          'invoices_pkey',
          'invoices_payment_hash_key',
          'invoices_status_expires_at_idx',
          'invoices_pubkey_created_at_idx',
          'invoices_event_id_idx',
          'ledger_pkey',
          'ledger_txid_account_key',
          'ledger_account_idx',
          'ledger_publication_event_idx',
          'held_events_pkey',
          'held_events_pubkey_created_at_idx',
          'held_events_expires_at_idx',
        ]),
      );
    });

    it('refuses a negative balance', async () => {
      await expect(
        db.kysely
          .insertInto('accounts')
          .values({
            pubkey: Buffer.from(hex32(), 'hex'),
            admitted: false,
            admitted_until: null,
            balance_msat: -1,
            created_at: 0,
            updated_at: 0,
          })
          .execute(),
      ).rejects.toThrow(/check constraint/);
    });

    it('keeps the ledger append-only', async () => {
      const inv = await createInvoice(db.kysely, newInvoice());
      await settle(inv.paymentHash);
      await expect(sql`UPDATE ledger SET amount_msat = amount_msat * 2`.execute(db.kysely)).rejects.toThrow(/append-only/);
      await expect(sql`DELETE FROM ledger`.execute(db.kysely)).rejects.toThrow(/append-only/);
      await expectBooksBalanced();
    });

    it('refuses a ledger transaction that does not sum to zero (checked at commit)', async () => {
      await expect(
        db.kysely.transaction().execute(async (trx) => {
          await trx
            .insertInto('ledger')
            .values([
              { txid: 't1', account: 'wallet', amount_msat: -5, invoice_id: null, event_id: null, created_at: 0 },
              { txid: 't1', account: 'revenue:admission', amount_msat: 4, invoice_id: null, event_id: null, created_at: 0 },
            ])
            .execute();
        }),
      ).rejects.toThrow(/does not balance/);
      await expect(
        sql`INSERT INTO ledger (txid, account, amount_msat, created_at) VALUES ('t2', 'wallet', 7, 0)`.execute(db.kysely),
      ).rejects.toThrow(/does not balance/);
      expect(await ledgerRows()).toEqual([]);
    });
  });

  // -------------------------------------------------------------------------------------------

  describe('invoices', () => {
    it('creates, finds by id and by hash', async () => {
      const input = newInvoice({ description: 'credit 10 sat' });
      const inv = await createInvoice(db.kysely, input);
      expect(inv.id).toMatch(/^[A-Za-z0-9_-]{22}$/);
      expect(inv).toEqual({ ...input, id: inv.id, status: 'pending', paidAt: null, zapReceiptId: null, network: null });
      expect(await getInvoice(db.kysely, inv.id)).toEqual(inv);
      expect(await getInvoiceByHash(db.kysely, inv.paymentHash)).toEqual(inv);
      expect(await getInvoiceByHash(db.kysely, inv.paymentHash.toUpperCase())).toEqual(inv);
      expect(await getInvoice(db.kysely, 'nope')).toBeUndefined();
      expect(await getInvoice(db.kysely, 'bad id with spaces')).toBeUndefined();
      expect(await getInvoiceByHash(db.kysely, hex32())).toBeUndefined();
      const named = await createInvoice(db.kysely, newInvoice({ id: 'my-id_1' }));
      expect(named.id).toBe('my-id_1');
    });

    it('refuses a second invoice with the same payment hash', async () => {
      const input = newInvoice();
      await createInvoice(db.kysely, input);
      await expect(createInvoice(db.kysely, { ...input, bolt11: 'lnbcother' })).rejects.toThrow();
    });

    it('validates amounts, hex, products and product-specific fields', async () => {
      const bad: Partial<NewInvoice>[] = [
        { amountMsat: 0 },
        { amountMsat: -1 },
        { amountMsat: 1.5 },
        { amountMsat: Number.NaN },
        { amountMsat: 2 ** 53 },
        { amountMsat: '100' as unknown as number },
        { paymentHash: 'AB'.repeat(32) },
        { paymentHash: 'ab' },
        { pubkey: 'xyz' },
        { product: 'gift' as never },
        { product: 'event', eventId: null },
        { product: 'credit', eventId: hex32() },
        { product: 'zap', zapRequest: null },
        { product: 'credit', zapRequest: '{}' },
        { expiresAt: NOW - 1 },
        { createdAt: 1.5 },
        { id: 'has space' },
        { bolt11: '' },
      ];
      for (const over of bad) await expect(createInvoice(db.kysely, newInvoice(over)), JSON.stringify(over)).rejects.toThrow();
      expect(await db.kysely.selectFrom('invoices').selectAll().execute()).toEqual([]);
    });

    it('lists pending invoices (expired-but-unmarked too) and expires them', async () => {
      const a = await createInvoice(db.kysely, newInvoice({ expiresAt: NOW + 100 }));
      const b = await createInvoice(db.kysely, newInvoice({ expiresAt: NOW + 50 }));
      const c = await createInvoice(db.kysely, newInvoice({ expiresAt: NOW + 200 }));
      await settle(c.paymentHash);
      expect((await listPendingInvoices(db.kysely)).map((i) => i.id)).toEqual([b.id, a.id]);
      expect((await listPendingInvoices(db.kysely, { limit: 1 })).map((i) => i.id)).toEqual([b.id]);
      expect(await expireInvoices(db.kysely, NOW + 49)).toBe(0);
      expect(await expireInvoices(db.kysely, NOW + 50)).toBe(1);
      expect((await getInvoice(db.kysely, b.id))?.status).toBe('expired');
      expect(await expireInvoices(db.kysely, NOW + 1000)).toBe(1); // a; c is paid and stays paid
      expect((await getInvoice(db.kysely, c.id))?.status).toBe('paid');
      expect(await listPendingInvoices(db.kysely)).toEqual([]);
    });
  });

  // -------------------------------------------------------------------------------------------

  describe('settlement', () => {
    it('credit: balance += amount, ledger wallet -X / user +X', async () => {
      const inv = await createInvoice(db.kysely, newInvoice({ amountMsat: 21_000 }));
      const r = await settle(inv.paymentHash);
      expect(r.settled).toBe(true);
      expect(r.invoice).toEqual({ ...inv, status: 'paid', paidAt: NOW });
      expect(r.account).toMatchObject({ pubkey: inv.pubkey, admitted: false, admittedUntil: null, balanceMsat: 21_000 });
      expect(r.heldEvent).toBeUndefined();
      expect(await getAccount(db.kysely, inv.pubkey)).toEqual(r.account);
      const txid = `invoice:${inv.id}`;
      expect(await ledgerRows()).toEqual([
        { txid, account: 'wallet', amount_msat: -21_000, invoice_id: inv.id, memo: 'credit' },
        { txid, account: `user:${inv.pubkey}`, amount_msat: 21_000, invoice_id: inv.id, memo: 'credit' },
      ]);
      expect(await ledgerBalance(db.kysely, 'wallet')).toBe(-21_000);
      await expectBooksBalanced();
    });

    it('a second settlement of the same hash changes nothing', async () => {
      const inv = await createInvoice(db.kysely, newInvoice({ product: 'admission', amountMsat: 50_000 }));
      const first = await settle(inv.paymentHash);
      expect(first.settled).toBe(true);
      const before = await snapshot();
      const again = await settle(inv.paymentHash, { now: NOW + 10, amountMsat: 60_000 });
      expect(again).toEqual({ settled: false, invoice: first.invoice });
      const byUpper = await settle(inv.paymentHash.toUpperCase(), { now: NOW + 20 });
      expect(byUpper.settled).toBe(false);
      expect(await snapshot()).toEqual(before);
      await expectBooksBalanced();
    });

    it('admission: admitted forever, revenue:admission', async () => {
      const inv = await createInvoice(db.kysely, newInvoice({ product: 'admission', amountMsat: 50_000 }));
      const r = await settle(inv.paymentHash);
      expect(r.account).toMatchObject({ pubkey: inv.pubkey, admitted: true, admittedUntil: null, balanceMsat: 0 });
      expect(isAdmitted(r.account, NOW + 100 * 365 * DAY)).toBe(true);
      expect(await ledgerBalance(db.kysely, 'revenue:admission')).toBe(50_000);
      expect(await ledgerBalance(db.kysely, userAccount(inv.pubkey))).toBe(0);
      expect((await ledgerRows()).map((r) => r.account)).toEqual(['wallet', 'revenue:admission']);
      await expectBooksBalanced();
    });

    it('subscription: from now, then extended from the current end; lapsed restarts from now', async () => {
      const pubkey = hex32();
      const sub = async (now: number) => {
        const inv = await createInvoice(
          db.kysely,
          newInvoice({ pubkey, product: 'subscription', amountMsat: 3_000, createdAt: now, expiresAt: now + 600 }),
        );
        return (await settleInvoice(db.kysely, inv.paymentHash, { now, subscriptionPeriodSeconds: MONTH })).account;
      };
      expect(await sub(NOW)).toMatchObject({ pubkey, admitted: true, admittedUntil: NOW + MONTH, balanceMsat: 0 });
      expect(await sub(NOW + DAY)).toMatchObject({ admittedUntil: NOW + 2 * MONTH }); // extends the end, not now
      const lapsed = NOW + 10 * MONTH;
      const acc = await getAccount(db.kysely, pubkey);
      expect(isAdmitted(acc, NOW + 2 * MONTH - 1)).toBe(true);
      expect(isAdmitted(acc, NOW + 2 * MONTH)).toBe(false);
      expect(await sub(lapsed)).toMatchObject({ admitted: true, admittedUntil: lapsed + MONTH });
      expect(await ledgerBalance(db.kysely, 'revenue:subscription')).toBe(9_000);
      await expectBooksBalanced();
    });

    it('subscription on an account admitted forever keeps it forever', async () => {
      const pubkey = hex32();
      await settle((await createInvoice(db.kysely, newInvoice({ pubkey, product: 'admission' }))).paymentHash);
      const r = await settle((await createInvoice(db.kysely, newInvoice({ pubkey, product: 'subscription' }))).paymentHash);
      expect(r.account).toMatchObject({ admitted: true, admittedUntil: null });
      await expectBooksBalanced();
    });

    it('admission after a subscription makes it forever', async () => {
      const pubkey = hex32();
      await settle((await createInvoice(db.kysely, newInvoice({ pubkey, product: 'subscription' }))).paymentHash);
      const r = await settle((await createInvoice(db.kysely, newInvoice({ pubkey, product: 'admission' }))).paymentHash);
      expect(r.account).toMatchObject({ admitted: true, admittedUntil: null });
    });

    it('needs a subscription period >= 1 (and nothing is written without one)', async () => {
      const inv = await createInvoice(db.kysely, newInvoice({ product: 'subscription' }));
      await expect(settle(inv.paymentHash, { subscriptionPeriodSeconds: 0 })).rejects.toThrow(RangeError);
      expect((await getInvoice(db.kysely, inv.id))?.status).toBe('pending');
      expect(await ledgerRows()).toEqual([]);
      await expect(settle(inv.paymentHash, { subscriptionPeriodSeconds: 1.5 })).rejects.toThrow(RangeError);
    });

    it('a late payment of an expired invoice still settles', async () => {
      const inv = await createInvoice(db.kysely, newInvoice({ amountMsat: 7_000, expiresAt: NOW + 10 }));
      expect(await expireInvoices(db.kysely, NOW + 10)).toBe(1);
      const r = await settle(inv.paymentHash, { now: NOW + 3600 });
      expect(r.settled).toBe(true);
      expect(r.invoice).toMatchObject({ status: 'paid', paidAt: NOW + 3600 });
      expect(r.account?.balanceMsat).toBe(7_000);
      await expectBooksBalanced();
    });

    it('credits an overpayment to the payer; refuses an underpayment without writing', async () => {
      const inv = await createInvoice(db.kysely, newInvoice({ product: 'admission', amountMsat: 10_000 }));
      const before = await snapshot();
      const err = await settle(inv.paymentHash, { amountMsat: 9_999 }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(PaymentError);
      expect((err as PaymentError).code).toBe('underpaid');
      expect(await snapshot()).toEqual(before);

      const r = await settle(inv.paymentHash, { amountMsat: 10_500 });
      expect(r.account).toMatchObject({ admitted: true, admittedUntil: null, balanceMsat: 500 });
      expect(await ledgerBalance(db.kysely, 'wallet')).toBe(-10_500);
      expect(await ledgerBalance(db.kysely, 'revenue:admission')).toBe(10_000);
      await expectBooksBalanced();
    });

    it('refuses an unknown payment hash, and bad options, without writing', async () => {
      const err = await settle(hex32()).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(PaymentError);
      expect((err as PaymentError).code).toBe('unknown-invoice');
      const inv = await createInvoice(db.kysely, newInvoice());
      await expect(settle('zz')).rejects.toThrow(TypeError);
      await expect(settle(inv.paymentHash, { amountMsat: -5 })).rejects.toThrow(RangeError);
      await expect(settle(inv.paymentHash, { amountMsat: 10_000.5 })).rejects.toThrow(RangeError);
      await expect(settle(inv.paymentHash, { now: -1 })).rejects.toThrow(RangeError);
      await expect(settle(inv.paymentHash, { zap: { admissionMsat: -1 } })).rejects.toThrow(RangeError);
      expect((await getInvoice(db.kysely, inv.id))?.status).toBe('pending');
      expect(await ledgerRows()).toEqual([]);
    });

    it('joins the caller transaction and is rolled back with it', async () => {
      const inv = await createInvoice(db.kysely, newInvoice());
      await expect(
        db.kysely.transaction().execute(async (trx) => {
          expect((await settleInvoice(trx, inv.paymentHash, { now: NOW, subscriptionPeriodSeconds: MONTH })).settled).toBe(true);
          throw new Error('abort');
        }),
      ).rejects.toThrow('abort');
      expect((await getInvoice(db.kysely, inv.id))?.status).toBe('pending');
      expect(await getAccount(db.kysely, inv.pubkey)).toBeUndefined();
      expect(await ledgerRows()).toEqual([]);
      expect((await settle(inv.paymentHash)).settled).toBe(true);
      await expectBooksBalanced();
    });

    it('two settlers racing on one hash settle it once', async () => {
      const inv = await createInvoice(db.kysely, newInvoice({ product: 'credit', amountMsat: 1_000 }));
      const lockInvoice = (trx: Kysely<Schema>) => trx.selectFrom('invoices').select('id').where('id', '=', inv.id).forUpdate().execute();
      const results = await race(lockInvoice, 6, () => Array.from({ length: 6 }, () => settle(inv.paymentHash)));
      expect(results.filter((r) => r.settled)).toHaveLength(1);
      expect(results.every((r) => r.invoice.status === 'paid')).toBe(true);
      expect((await getAccount(db.kysely, inv.pubkey))?.balanceMsat).toBe(1_000);
      expect(await ledgerRows()).toHaveLength(2);
      await expectBooksBalanced();
    });

    it('settles many invoices of one pubkey concurrently without losing an update', async () => {
      const pubkey = hex32();
      const invs = await Promise.all(
        Array.from({ length: 10 }, (_, i) => createInvoice(db.kysely, newInvoice({ pubkey, amountMsat: 1_000 + i }))),
      );
      const subs = await Promise.all(
        Array.from({ length: 5 }, () => createInvoice(db.kysely, newInvoice({ pubkey, product: 'subscription', amountMsat: 5 }))),
      );
      await Promise.all([...invs, ...subs].flatMap((inv) => [settle(inv.paymentHash), settle(inv.paymentHash)]));
      expect(await getAccount(db.kysely, pubkey)).toMatchObject({
        pubkey,
        admitted: true,
        admittedUntil: NOW + 5 * MONTH,
        balanceMsat: 10 * 1_000 + 45,
      });
      await expectBooksBalanced();
    });
  });

  // -------------------------------------------------------------------------------------------

  describe('zaps', () => {
    const zapReq = JSON.stringify({ kind: 9734, content: '', tags: [] });
    const zapInvoice = (pubkey: string, amountMsat: number) =>
      createInvoice(db.kysely, newInvoice({ pubkey, product: 'zap', amountMsat, zapRequest: zapReq }));

    it('admits a zapper who is not admitted and credits the rest', async () => {
      const pubkey = hex32();
      const inv = await zapInvoice(pubkey, 25_000);
      expect(inv.zapRequest).toBe(zapReq);
      const r = await settle(inv.paymentHash, { zap: { admissionMsat: 21_000 } });
      expect(r.account).toMatchObject({ pubkey, admitted: true, admittedUntil: null, balanceMsat: 4_000 });
      expect(await ledgerBalance(db.kysely, 'revenue:admission')).toBe(21_000);
      await expectBooksBalanced();
    });

    it('credits it all when the zapper is admitted, the zap is too small, or there is no admission price', async () => {
      const admitted = hex32();
      await settle((await zapInvoice(admitted, 30_000)).paymentHash, { zap: { admissionMsat: 21_000 } });
      const r1 = await settle((await zapInvoice(admitted, 30_000)).paymentHash, { zap: { admissionMsat: 21_000 } });
      expect(r1.account).toMatchObject({ admitted: true, balanceMsat: 9_000 + 30_000 });

      const small = hex32();
      const r2 = await settle((await zapInvoice(small, 20_999)).paymentHash, { zap: { admissionMsat: 21_000 } });
      expect(r2.account).toMatchObject({ pubkey: small, admitted: false, admittedUntil: null, balanceMsat: 20_999 });

      const free = hex32();
      const r3 = await settle((await zapInvoice(free, 5_000)).paymentHash, { zap: { admissionMsat: 0 } });
      expect(r3.account).toMatchObject({ admitted: false, balanceMsat: 5_000 });
      const r4 = await settle((await zapInvoice(free, 5_000)).paymentHash);
      expect(r4.account).toMatchObject({ admitted: false, balanceMsat: 10_000 });
      await expectBooksBalanced();
    });

    it('admits a zapper whose subscription lapsed', async () => {
      const pubkey = hex32();
      await settle((await createInvoice(db.kysely, newInvoice({ pubkey, product: 'subscription' }))).paymentHash);
      const later = NOW + 2 * MONTH;
      const r = await settle((await zapInvoice(pubkey, 21_000)).paymentHash, { now: later, zap: { admissionMsat: 21_000 } });
      expect(r.account).toMatchObject({ admitted: true, admittedUntil: null, balanceMsat: 0 });
    });

    it('records the receipt of a paid zap once', async () => {
      const inv = await zapInvoice(hex32(), 1_000);
      const receipt = hex32();
      expect(await setZapReceipt(db.kysely, inv.id, receipt)).toBe(false); // not paid yet
      await settle(inv.paymentHash);
      expect(await setZapReceipt(db.kysely, inv.id, receipt)).toBe(true);
      expect(await setZapReceipt(db.kysely, inv.id, hex32())).toBe(false);
      expect((await getInvoice(db.kysely, inv.id))?.zapReceiptId).toBe(receipt);
      const credit = await createInvoice(db.kysely, newInvoice());
      await settle(credit.paymentHash);
      expect(await setZapReceipt(db.kysely, credit.id, receipt)).toBe(false);
    });
  });

  // -------------------------------------------------------------------------------------------

  describe('publication debits', () => {
    async function fund(pubkey: string, amountMsat: number): Promise<void> {
      await settle((await createInvoice(db.kysely, newInvoice({ pubkey, amountMsat }))).paymentHash);
    }

    it('debits the balance and writes user -P / revenue:publication +P with the event id', async () => {
      const pubkey = hex32();
      await fund(pubkey, 1_000);
      const eventId = hex32();
      expect(await debitForEvent(db.kysely, pubkey, eventId, 300, NOW + 5)).toBe(true);
      expect(await getAccount(db.kysely, pubkey)).toMatchObject({ balanceMsat: 700 });
      const rows = await db.kysely.selectFrom('ledger').selectAll().where('txid', '=', `publication:${eventId}`).orderBy('id').execute();
      expect(rows.map((r) => [r.account, r.amount_msat, Buffer.from(r.event_id!).toString('hex')])).toEqual([
        [`user:${pubkey}`, -300, eventId],
        ['revenue:publication', 300, eventId],
      ]);
      expect(await ledgerBalance(db.kysely, 'revenue:publication')).toBe(300);
      expect((await listAccounts(db.kysely, { sinceUpdatedAt: NOW + 5 })).map((a) => a.pubkey)).toEqual([pubkey]);
      expect(await listAccounts(db.kysely, { sinceUpdatedAt: NOW + 6 })).toEqual([]);
      await expectBooksBalanced();
    });

    it('returns false and changes nothing when the balance is too low or there is no account', async () => {
      const pubkey = hex32();
      await fund(pubkey, 1_000);
      const before = await snapshot();
      expect(await debitForEvent(db.kysely, pubkey, hex32(), 1_001, NOW)).toBe(false);
      expect(await debitForEvent(db.kysely, hex32(), hex32(), 1, NOW)).toBe(false);
      expect(await snapshot()).toEqual(before);
      expect(await debitForEvent(db.kysely, pubkey, hex32(), 1_000, NOW)).toBe(true);
      expect(await getAccount(db.kysely, pubkey)).toMatchObject({ balanceMsat: 0 });
      expect(await debitForEvent(db.kysely, pubkey, hex32(), 1, NOW)).toBe(false);
      await expectBooksBalanced();
    });

    it('charges an event once; a price of 0 is free; bad input throws', async () => {
      const pubkey = hex32();
      await fund(pubkey, 1_000);
      const eventId = hex32();
      expect(await debitForEvent(db.kysely, pubkey, eventId, 100, NOW)).toBe(true);
      expect(await debitForEvent(db.kysely, pubkey, eventId, 100, NOW)).toBe(true);
      expect(await getAccount(db.kysely, pubkey)).toMatchObject({ balanceMsat: 900 });
      expect(await debitForEvent(db.kysely, hex32(), hex32(), 0, NOW)).toBe(true);
      await expect(debitForEvent(db.kysely, pubkey, hex32(), -1, NOW)).rejects.toThrow(RangeError);
      await expect(debitForEvent(db.kysely, pubkey, hex32(), 0.5, NOW)).rejects.toThrow(RangeError);
      await expect(debitForEvent(db.kysely, 'nope', hex32(), 1, NOW)).rejects.toThrow(TypeError);
      expect(await getAccount(db.kysely, pubkey)).toMatchObject({ balanceMsat: 900 });
      await expectBooksBalanced();
    });

    it('commits or rolls back with the event insert of the caller', async () => {
      const a = author();
      await fund(a.pubkey, 1_000);
      const e = mk(a);
      await expect(
        db.kysely.transaction().execute(async (trx) => {
          expect(await storeEvents(trx, [e], NOW)).toEqual([{ status: 'stored' }]);
          expect(await debitForEvent(trx, a.pubkey, e.event.id, 400, NOW)).toBe(true);
          throw new Error('abort');
        }),
      ).rejects.toThrow('abort');
      expect(await getEventById(db.kysely, e.event.id)).toBeUndefined();
      expect(await getAccount(db.kysely, a.pubkey)).toMatchObject({ balanceMsat: 1_000 });
      await db.kysely.transaction().execute(async (trx) => {
        expect(await storeEvents(trx, [e], NOW)).toEqual([{ status: 'stored' }]);
        expect(await debitForEvent(trx, a.pubkey, e.event.id, 400, NOW)).toBe(true);
      });
      expect(await getEventById(db.kysely, e.event.id)).toBe(e.raw);
      expect(await getAccount(db.kysely, a.pubkey)).toMatchObject({ balanceMsat: 600 });
      await expectBooksBalanced();
    });

    it('racing debits never overdraw', async () => {
      const pubkey = hex32();
      await fund(pubkey, 1_000);
      const results = await race(lockAccountRow(pubkey), 7, () =>
        Array.from({ length: 7 }, () => debitForEvent(db.kysely, pubkey, hex32(), 300, NOW)),
      );
      expect(results.filter(Boolean)).toHaveLength(3);
      expect(await getAccount(db.kysely, pubkey)).toMatchObject({ balanceMsat: 100 });
      await expectBooksBalanced();
    });

    it('racing debits of the same event charge it once', async () => {
      const pubkey = hex32();
      await fund(pubkey, 1_000);
      const eventId = hex32();
      // Every racer sees no debit of this event yet, then waits on the account row: all but the
      // first hit the unique index at their ledger insert, retry, and find the event paid.
      const results = await race(lockAccountRow(pubkey), 6, () =>
        Array.from({ length: 6 }, () => debitForEvent(db.kysely, pubkey, eventId, 100, NOW)),
      );
      expect(results).toEqual(Array(6).fill(true));
      expect(await getAccount(db.kysely, pubkey)).toMatchObject({ balanceMsat: 900 });
      await expectBooksBalanced();
    });
  });

  // -------------------------------------------------------------------------------------------

  describe('held events', () => {
    const limits = { now: NOW, ttlSeconds: 3600, maxPerPubkey: 3, maxBytes: 10_000 };
    const ev = (pubkey: string, over: Partial<{ id: string; kind: number; raw: string; amountMsat: number }> = {}) => ({
      id: hex32(),
      pubkey,
      kind: 1,
      raw: `{"note":"${randomBytes(4).toString('hex')}"}`,
      amountMsat: 2_000,
      ...over,
    });
    const heldIds = async (pubkey: string) =>
      (
        await db.kysely
          .selectFrom('held_events')
          .select('event_id')
          .where('pubkey', '=', Buffer.from(pubkey, 'hex'))
          .orderBy('created_at')
          .execute()
      ).map((r) => Buffer.from(r.event_id).toString('hex'));

    it('holds, finds, refreshes and expires', async () => {
      const pubkey = hex32();
      const e = ev(pubkey, { kind: 30023 });
      expect(await holdEvent(db.kysely, e, limits)).toBe('held');
      expect(await getHeldEvent(db.kysely, e.id, NOW)).toEqual({ ...e, expiresAt: NOW + 3600 });
      expect(await getHeldEvent(db.kysely, e.id, NOW + 3600)).toBeUndefined();
      expect(await holdEvent(db.kysely, e, { ...limits, now: NOW + 1000 })).toBe('already-held');
      expect((await getHeldEvent(db.kysely, e.id, NOW + 4000))?.expiresAt).toBe(NOW + 4600);
      expect(await getHeldEvent(db.kysely, hex32(), NOW)).toBeUndefined();
      expect(await getHeldEvent(db.kysely, 'bad', NOW)).toBeUndefined();
      expect(await purgeHeldEvents(db.kysely, NOW + 4599)).toBe(0);
      expect(await purgeHeldEvents(db.kysely, NOW + 4600)).toBe(1);
    });

    const heldBytesFrom = async (ip: string) =>
      Number(
        (
          await db.kysely
            .selectFrom('held_events')
            .select((eb) => eb.fn.coalesce(eb.fn.sum<number>('bytes'), eb.lit(0)).as('b'))
            .where('ip', '=', ip)
            .executeTakeFirstOrThrow()
        ).b,
      );

    it('bounds the bytes held per client address across fresh keys: oldest dropped, never one being paid', async () => {
      const ip = '198.51.100.7';
      const raw = 'x'.repeat(1000);
      const perIp = { ...limits, maxBytesPerIp: 3500 };
      const first = ev(hex32(), { raw });
      expect(await holdEvent(db.kysely, { ...first, ip }, perIp)).toBe('held');
      await createInvoice(db.kysely, newInvoice({ pubkey: first.pubkey, product: 'event', eventId: first.id, expiresAt: NOW + 10_000 }));
      const later = [];
      for (let i = 1; i <= 6; i++) {
        const e = ev(hex32(), { raw });
        later.push(e);
        expect(await holdEvent(db.kysely, { ...e, ip }, { ...perIp, now: NOW + i })).toBe('held');
        expect(await heldBytesFrom(ip)).toBeLessThanOrEqual(3500);
      }
      // The one being paid for stays; the newest two fill the rest.
      expect(await getHeldEvent(db.kysely, first.id, NOW + 10)).toBeDefined();
      expect(await getHeldEvent(db.kysely, later[5].id, NOW + 10)).toBeDefined();
      expect(await getHeldEvent(db.kysely, later[4].id, NOW + 10)).toBeDefined();
      expect(await getHeldEvent(db.kysely, later[3].id, NOW + 10)).toBeUndefined();
      // Another address is not affected, and an event larger than the bound is not held.
      expect(await holdEvent(db.kysely, { ...ev(hex32(), { raw }), ip: '203.0.113.1' }, perIp)).toBe('held');
      expect(await holdEvent(db.kysely, { ...ev(hex32(), { raw: 'y'.repeat(4000) }), ip }, perIp)).toBe('limit-reached');
    });

    it('trims held events to a global byte bound, newest kept, never one being paid', async () => {
      const raw = 'z'.repeat(1000);
      const es = Array.from({ length: 8 }, () => ev(hex32(), { raw }));
      for (let i = 0; i < es.length; i++) await holdEvent(db.kysely, es[i], { ...limits, now: NOW + i });
      await createInvoice(db.kysely, newInvoice({ pubkey: es[0].pubkey, product: 'event', eventId: es[0].id, expiresAt: NOW + 10_000 }));
      expect(await heldEventStats(db.kysely)).toEqual({ events: 8, bytes: 8000 });
      const r = await trimHeldEvents(db.kysely, 3000, NOW + 10);
      expect(r).toEqual({ deleted: 4, events: 4, bytes: 4000 });
      const kept = (await Promise.all(es.map((e) => getHeldEvent(db.kysely, e.id, NOW + 10)))).map((h) => h !== undefined);
      expect(kept).toEqual([true, false, false, false, false, true, true, true]);
      expect(await trimHeldEvents(db.kysely, 3000, NOW + 10)).toEqual({ deleted: 0, events: 4, bytes: 4000 });
    });

    it("lists a pubkey's held events nothing is paying for, oldest first, and deletes them", async () => {
      const pubkey = hex32();
      const es = Array.from({ length: 3 }, () => ev(pubkey));
      for (let i = 0; i < es.length; i++) await holdEvent(db.kysely, es[i], { ...limits, now: NOW + i });
      await holdEvent(db.kysely, ev(hex32()), limits);
      await createInvoice(db.kysely, newInvoice({ pubkey, product: 'event', eventId: es[1].id, expiresAt: NOW + 10_000 }));
      expect((await listHeldEvents(db.kysely, pubkey, NOW + 5)).map((h) => h.id)).toEqual([es[0].id, es[2].id]);
      expect((await listHeldEvents(db.kysely, pubkey, NOW + 3601)).map((h) => h.id)).toEqual([es[2].id]); // the others expired
      expect(await deleteHeldEvents(db.kysely, [es[0].id, es[2].id])).toBe(2);
      expect(await deleteHeldEvents(db.kysely, [])).toBe(0);
      expect(await listHeldEvents(db.kysely, pubkey, NOW + 5)).toEqual([]);
      expect((await getHeldEvent(db.kysely, es[1].id, NOW + 5))?.id).toBe(es[1].id);
    });

    it('refuses events over maxBytes and bad input', async () => {
      const pubkey = hex32();
      expect(await holdEvent(db.kysely, ev(pubkey, { raw: 'é'.repeat(6) }), { ...limits, maxBytes: 11 })).toBe('too-large');
      expect(await holdEvent(db.kysely, ev(pubkey, { raw: 'é'.repeat(6) }), { ...limits, maxBytes: 12 })).toBe('held');
      await expect(holdEvent(db.kysely, ev(pubkey, { amountMsat: -1 }), limits)).rejects.toThrow(RangeError);
      await expect(holdEvent(db.kysely, ev(pubkey, { id: 'x' }), limits)).rejects.toThrow(TypeError);
      expect(await holdEvent(db.kysely, ev(pubkey), { ...limits, maxPerPubkey: 0 })).toBe('limit-reached');
    });

    it('at the limit drops the oldest, so the newest refused write can be paid for', async () => {
      const pubkey = hex32();
      const es = Array.from({ length: 5 }, () => ev(pubkey));
      for (let i = 0; i < es.length; i++) expect(await holdEvent(db.kysely, es[i], { ...limits, now: NOW + i })).toBe('held');
      expect(await heldIds(pubkey)).toEqual([es[2].id, es[3].id, es[4].id]);
      // Another pubkey is not affected.
      const other = hex32();
      expect(await holdEvent(db.kysely, ev(other), limits)).toBe('held');
      expect(await heldIds(pubkey)).toHaveLength(3);
    });

    it('never drops an event that is being paid; limit-reached when all slots are being paid', async () => {
      const pubkey = hex32();
      const es = Array.from({ length: 4 }, () => ev(pubkey));
      for (let i = 0; i < 3; i++) {
        expect(await holdEvent(db.kysely, es[i], { ...limits, now: NOW + i })).toBe('held');
        if (i < 2) await createInvoice(db.kysely, newInvoice({ pubkey, product: 'event', eventId: es[i].id, expiresAt: NOW + 10_000 }));
      }
      expect(await holdEvent(db.kysely, es[3], { ...limits, now: NOW + 3 })).toBe('held');
      expect(await heldIds(pubkey)).toEqual([es[0].id, es[1].id, es[3].id]); // es[2] (unpaid) went
      await createInvoice(db.kysely, newInvoice({ pubkey, product: 'event', eventId: es[3].id, expiresAt: NOW + 10_000 }));
      expect(await holdEvent(db.kysely, ev(pubkey), { ...limits, now: NOW + 4 })).toBe('limit-reached');
      // Expired held events with a payable invoice survive the purge; once the invoice expires they go.
      expect(await purgeHeldEvents(db.kysely, NOW + 3605)).toBe(0);
      expect(await purgeHeldEvents(db.kysely, NOW + 100_000)).toBe(3);
    });

    it('racing holds of one pubkey respect the bound', async () => {
      const pubkey = hex32();
      const results = await Promise.all(Array.from({ length: 10 }, () => holdEvent(db.kysely, ev(pubkey), limits)));
      expect(results).toEqual(Array(10).fill('held'));
      expect(await heldIds(pubkey)).toHaveLength(3);
    });

    /** db.kysely that counts the statements sent through it (raw `sql` included; BEGIN/COMMIT not). */
    const counting = () => {
      const seen = { statements: 0 };
      const kysely = db.kysely.withPlugin({
        transformQuery: (a) => {
          seen.statements++;
          return a.node;
        },
        transformResult: async (a) => a.result,
      });
      return { kysely, seen };
    };

    it('holds a batch in a fixed number of statements, however large (a refusal stays cheap)', async () => {
      const perIp = { ...limits, maxBytesPerIp: 5_000 };
      const keys = [hex32(), hex32(), hex32()];
      const ips = ['198.51.100.1', '198.51.100.2'];
      for (const size of [1, 10, 200]) {
        const batch = Array.from({ length: size }, (_, i) => ({ ...ev(keys[i % 3]), ip: ips[i % 2] }));
        const { kysely, seen } = counting();
        const results = await holdEvents(kysely, batch, { ...perIp, now: NOW + size });
        expect(results).toEqual(Array(size).fill('held'));
        // Lock pubkeys and addresses, read what they hold, write the difference.
        expect(seen.statements).toBe(3);
      }
      for (const k of keys) expect(await heldIds(k)).toHaveLength(3);
    });

    it('events held in the same second go oldest first by id, as the index orders them', async () => {
      const pubkey = hex32();
      const es = Array.from({ length: 5 }, () => ev(pubkey));
      expect(await holdEvents(db.kysely, es, limits)).toEqual(Array(5).fill('held'));
      // Each one, at the limit, drops the smallest id held before it.
      const kept: string[] = [];
      for (const e of es) {
        if (kept.length === limits.maxPerPubkey) kept.splice(kept.indexOf([...kept].sort()[0]), 1);
        kept.push(e.id);
      }
      expect((await heldIds(pubkey)).sort()).toEqual(kept.sort());
    });

    it('a batch decides exactly as holding its events one after another would', async () => {
      const perIp = { ...limits, maxBytes: 1_200, maxBytesPerIp: 3_000 };
      const keys = [hex32(), hex32(), hex32()];
      const ips = ['', '198.51.100.1', '198.51.100.2'];
      const before = fc.record({
        k: fc.nat(2),
        ip: fc.nat(2),
        size: fc.integer({ min: 1, max: 1_000 }),
        age: fc.integer({ min: 0, max: 5_000 }),
        paid: fc.boolean(),
      });
      const item = fc.record({ k: fc.nat(2), ip: fc.nat(2), size: fc.integer({ min: 1, max: 1_500 }), again: fc.option(fc.nat(30)) });
      const table = async () =>
        (
          await db.kysely
            .selectFrom('held_events')
            .select(['event_id', 'pubkey', 'kind', 'raw', 'amount_msat', 'created_at', 'expires_at', 'ip', 'bytes'])
            .orderBy('event_id')
            .execute()
        ).map((r) => ({ ...r, event_id: Buffer.from(r.event_id).toString('hex'), pubkey: Buffer.from(r.pubkey).toString('hex') }));
      await fc.assert(
        fc.asyncProperty(
          fc.array(before, { maxLength: 8 }),
          fc.array(item, { minLength: 1, maxLength: 20 }),
          fc.integer({ min: 0, max: 4 }),
          async (held, items, maxPerPubkey) => {
            const opts = { ...perIp, maxPerPubkey };
            const old = held.map((h) => ({ ...ev(keys[h.k], { raw: 'o'.repeat(h.size) }), ip: ips[h.ip], age: h.age, paid: h.paid }));
            const setUp = async () => {
              await truncate();
              for (const h of old) {
                await holdEvent(db.kysely, h, { ...opts, maxPerPubkey: 100, maxBytesPerIp: undefined, now: NOW - h.age });
                if (h.paid)
                  await createInvoice(
                    db.kysely,
                    newInvoice({ pubkey: h.pubkey, product: 'event', eventId: h.id, expiresAt: NOW + 10_000 }),
                  );
              }
            };
            // Some items send again an event held before or one earlier in the batch.
            const batch: HoldItem[] = [];
            for (const it of items) {
              const pool = [...old, ...batch];
              const again = it.again !== null && pool.length > 0 ? pool[it.again % pool.length] : undefined;
              const e = again ?? { ...ev(keys[it.k], { raw: 'n'.repeat(it.size), amountMsat: it.size }), ip: ips[it.ip] };
              batch.push({ id: e.id, pubkey: e.pubkey, kind: e.kind, raw: e.raw, amountMsat: e.amountMsat, ip: e.ip });
            }
            await setUp();
            const together = await holdEvents(db.kysely, batch, opts);
            const afterTogether = await table();
            await setUp();
            const oneByOne: string[] = [];
            for (const b of batch) oneByOne.push(await holdEvent(db.kysely, b, opts));
            expect(together).toEqual(oneByOne);
            expect(afterTogether).toEqual(await table());
          },
        ),
        { numRuns: 30 },
      );
    });

    it('paying an event invoice releases the held event, in the same transaction as its insert', async () => {
      const a = author();
      const e = mk(a, { created_at: NOW });
      await holdEvent(db.kysely, { id: e.event.id, pubkey: a.pubkey, kind: 1, raw: e.raw, amountMsat: 2_000 }, limits);
      const inv = await createInvoice(
        db.kysely,
        newInvoice({ pubkey: a.pubkey, product: 'event', eventId: e.event.id, amountMsat: 2_000 }),
      );
      const r = await db.kysely.transaction().execute(async (trx) => {
        const s = await settleInvoice(trx, inv.paymentHash, { now: NOW + 5, subscriptionPeriodSeconds: MONTH });
        expect(s.heldEvent).toEqual({ id: e.event.id, raw: e.raw });
        expect(await storeEvents(trx, [{ event: JSON.parse(s.heldEvent!.raw), raw: s.heldEvent!.raw }], NOW + 5)).toEqual([
          { status: 'stored' },
        ]);
        return s;
      });
      expect(r.settled).toBe(true);
      // Pay-per-event needs no admission; the payment is kept as paid history on an account (0007).
      expect(r.account).toMatchObject({ admitted: false, balanceMsat: 0, paidMsat: 2_000 });
      expect(await getEventById(db.kysely, e.event.id)).toBe(e.raw);
      expect(await getHeldEvent(db.kysely, e.event.id, NOW)).toBeUndefined();
      expect(await ledgerBalance(db.kysely, 'revenue:event')).toBe(2_000);
      const rows = await db.kysely.selectFrom('ledger').select('event_id').execute();
      expect(rows.every((row) => Buffer.from(row.event_id!).toString('hex') === e.event.id)).toBe(true);
      // Settling again changes nothing and releases nothing.
      const again = await settle(inv.paymentHash);
      expect(again).toEqual({ settled: false, invoice: r.invoice });
      await expectBooksBalanced();
    });

    it('credits the payer when the held event is gone (purged, or paid by an earlier invoice)', async () => {
      const pubkey = hex32();
      const e = ev(pubkey);
      await holdEvent(db.kysely, e, limits);
      const inv1 = await createInvoice(db.kysely, newInvoice({ pubkey, product: 'event', eventId: e.id, amountMsat: 2_000 }));
      const inv2 = await createInvoice(db.kysely, newInvoice({ pubkey, product: 'event', eventId: e.id, amountMsat: 2_000 }));
      expect((await settle(inv1.paymentHash, { amountMsat: 2_100 })).heldEvent?.id).toBe(e.id);
      expect(await getAccount(db.kysely, pubkey)).toMatchObject({ balanceMsat: 100 }); // overpayment
      const r2 = await settle(inv2.paymentHash);
      expect(r2.settled).toBe(true);
      expect(r2.heldEvent).toBeUndefined();
      expect(r2.account).toMatchObject({ balanceMsat: 2_100, admitted: false });
      expect(await ledgerBalance(db.kysely, 'revenue:event')).toBe(2_000);
      await expectBooksBalanced();
    });
  });

  // -------------------------------------------------------------------------------------------

  describe('property: the books always balance', () => {
    type Op =
      | { t: 'pay'; user: number; product: 'credit' | 'admission' | 'subscription' | 'zap'; amount: number; extra: number; times: number }
      | { t: 'debit'; user: number; event: number; amount: number }
      | { t: 'tick'; dt: number };

    const users = [0, 1, 2].map((i) => hashOf(`user ${i}`));
    const opArb: fc.Arbitrary<Op> = fc.oneof(
      fc.record({
        t: fc.constant('pay' as const),
        user: fc.nat(2),
        product: fc.constantFrom('credit' as const, 'admission' as const, 'subscription' as const, 'zap' as const),
        amount: fc.integer({ min: 1, max: 5_000 }),
        extra: fc.oneof(fc.constant(0), fc.integer({ min: 0, max: 300 })),
        times: fc.integer({ min: 1, max: 2 }),
      }),
      fc.record({ t: fc.constant('debit' as const), user: fc.nat(2), event: fc.nat(4), amount: fc.integer({ min: 0, max: 2_000 }) }),
      fc.record({ t: fc.constant('tick' as const), dt: fc.integer({ min: 1, max: 2 * MONTH }) }),
    );

    it('after random payments, duplicate settlements and debits', async () => {
      const ADMISSION = 2_000;
      await fc.assert(
        fc.asyncProperty(fc.array(opArb, { minLength: 1, maxLength: 25 }), async (ops) => {
          await truncate();
          const model = new Map<string, Omit<AccountRow, 'createdAt'>>();
          const charged = new Set<string>();
          let now = NOW;
          let n = 0;
          for (const op of ops) {
            if (op.t === 'tick') {
              now += op.dt;
              continue;
            }
            const pubkey = users[op.user];
            const acc = model.get(pubkey) ?? { pubkey, admitted: false, admittedUntil: null, balanceMsat: 0, paidMsat: 0 };
            if (op.t === 'pay') {
              const inv = await createInvoice(db.kysely, {
                paymentHash: hashOf(`inv ${++n} ${Math.random()}`),
                bolt11: 'lnbc',
                pubkey,
                product: op.product,
                amountMsat: op.amount,
                createdAt: now,
                expiresAt: now + 60,
                eventId: null,
                zapRequest: op.product === 'zap' ? '{}' : null,
                description: null,
              });
              const received = op.amount + op.extra;
              for (let i = 0; i < op.times; i++) {
                const r = await settleInvoice(db.kysely, inv.paymentHash, {
                  now,
                  amountMsat: received,
                  subscriptionPeriodSeconds: MONTH,
                  zap: { admissionMsat: ADMISSION },
                });
                expect(r.settled).toBe(i === 0);
              }
              acc.paidMsat += received; // once, however many times it is settled
              if (op.product === 'credit') acc.balanceMsat += received;
              else if (op.product === 'admission')
                Object.assign(acc, { admitted: true, admittedUntil: null, balanceMsat: acc.balanceMsat + op.extra });
              else if (op.product === 'subscription') {
                if (!(acc.admitted && acc.admittedUntil === null)) acc.admittedUntil = Math.max(now, acc.admittedUntil ?? 0) + MONTH;
                acc.admitted = true;
                acc.balanceMsat += op.extra;
              } else if (!isAdmitted(acc, now) && received >= ADMISSION) {
                Object.assign(acc, { admitted: true, admittedUntil: null, balanceMsat: acc.balanceMsat + received - ADMISSION });
              } else acc.balanceMsat += received;
              model.set(pubkey, acc);
            } else {
              const eventId = hashOf(`event ${op.user} ${op.event}`);
              const ok = await debitForEvent(db.kysely, pubkey, eventId, op.amount, now);
              const expected = op.amount === 0 || charged.has(eventId) || (model.has(pubkey) && acc.balanceMsat >= op.amount);
              expect(ok).toBe(expected);
              if (op.amount > 0 && ok && !charged.has(eventId)) {
                acc.balanceMsat -= op.amount;
                charged.add(eventId);
              }
            }
          }
          await expectBooksBalanced();
          expect((await listAccounts(db.kysely)).map(({ createdAt: _, ...a }) => a)).toEqual(
            [...model.values()].sort((a, b) => (a.pubkey < b.pubkey ? -1 : 1)),
          );
        }),
        { numRuns: 25 },
      );
    });
  });
});
