/**
 * The money side of the database: accounts, invoices, the double-entry ledger, held events.
 *
 * Units: amounts are integer millisatoshis (JS numbers, safe integers, never negative in the
 * API); times are unix seconds. Pubkeys, event ids are lowercase hex in the API, bytea in the DB.
 *
 * Every function takes a `Kysely<Schema>` first. When it is a transaction (`db.isTransaction`)
 * the function joins it and the caller owns commit and rollback (validation happens before any
 * write, so a thrown validation error leaves the caller's transaction untouched); otherwise the
 * functions that write more than one row open their own transaction, retried a few times on
 * deadlock/serialization failures.
 *
 * Ledger conventions (every txid sums to zero, so all rows sum to zero):
 *
 * | account                | meaning                                                     |
 * |------------------------|-------------------------------------------------------------|
 * | `wallet`               | the Lightning wallet, seen from the books: money received   |
 * |                        | is written NEGATIVE here (-X = "X came in from outside"),   |
 * |                        | so -ledgerBalance('wallet') is the total ever received      |
 * | `user:<hex>`           | a prepaid balance, POSITIVE; always equal to               |
 * |                        | accounts.balance_msat of that pubkey                        |
 * | `revenue:admission`    | one-time admissions (also zaps that admitted the zapper)    |
 * | `revenue:subscription` | subscription periods                                        |
 * | `revenue:event`        | pay-per-event (held events paid with their own invoice)     |
 * | `revenue:publication`  | per-event prices debited from prepaid balances              |
 *
 * Transactions:
 * - settlement of invoice I (txid `invoice:<I>`): (`wallet`, -received) and, on the product
 *   side, (`revenue:<product>`, +price) and/or (`user:<hex>`, +credit). Anything received above
 *   the invoice amount is credited to the payer's balance (money received is never dropped).
 *   A paid 'event' invoice whose held event is gone (purged, or already published by an
 *   earlier invoice) credits the whole amount to the payer's balance instead.
 * - publication debit of event E (txid `publication:<E>`): (`user:<hex>`, -P),
 *   (`revenue:publication`, +P), both carrying E's id. At most once per event id.
 */
import { createHash, randomBytes } from 'node:crypto';
import { sql, type ExpressionBuilder, type Kysely, type Selectable } from 'kysely';
import { isHex64 } from '@paidrelay/nostr';
import { atomically } from './transaction.ts';
import type { AccountsTable, InvoiceProduct, InvoicesTable, InvoiceStatus, Schema } from './schema.ts';

// ---------------------------------------------------------------------------------------------
// Public types and names

export type AccountRow = { pubkey: string; admitted: boolean; admittedUntil: number | null; balanceMsat: number };

export type InvoiceRow = {
  id: string;
  paymentHash: string;
  bolt11: string;
  pubkey: string;
  product: InvoiceProduct;
  amountMsat: number;
  status: InvoiceStatus;
  createdAt: number;
  expiresAt: number;
  paidAt: number | null;
  eventId: string | null;
  zapRequest: string | null;
  /** Id of the kind-9735 receipt, once recorded with setZapReceipt (zaps only). */
  zapReceiptId: string | null;
  description: string | null;
};

/** What createInvoice takes: `id` is generated when omitted. */
export type NewInvoice = Omit<InvoiceRow, 'id' | 'status' | 'paidAt' | 'zapReceiptId'> & { id?: string };

export type HeldEvent = { id: string; pubkey: string; kind: number; raw: string; amountMsat: number; expiresAt: number };

export type SettleOptions = {
  /** Unix seconds. */
  now: number;
  /** What the wallet says was received; must be >= the invoice amount, else PaymentError 'underpaid'. */
  amountMsat?: number;
  /** Length of one subscription period in seconds (>= 1; validated for every settlement, before
   * anything is written, since the product is only known from the invoice row). */
  subscriptionPeriodSeconds: number;
  /** Zaps: a zapper who is not admitted and zapped at least admissionMsat (> 0) is admitted and
   * credited the rest; otherwise the whole zap is credited. Without it, zaps are credited. */
  zap?: { admissionMsat: number };
};

export type SettleResult = {
  settled: boolean;
  invoice: InvoiceRow;
  /** The payer's account after settlement (absent if it has none, e.g. a paid held event). */
  account?: AccountRow;
  /** Product 'event': the held event, now removed from held_events; the caller stores/publishes it. */
  heldEvent?: { id: string; raw: string };
};

export type HoldResult = 'held' | 'already-held' | 'too-large' | 'limit-reached';

export const LEDGER_WALLET = 'wallet';
export const REVENUE_ADMISSION = 'revenue:admission';
export const REVENUE_SUBSCRIPTION = 'revenue:subscription';
export const REVENUE_EVENT = 'revenue:event';
export const REVENUE_PUBLICATION = 'revenue:publication';

/** The ledger account of a pubkey's prepaid balance. */
export function userAccount(pubkey: string): string {
  checkHex64(pubkey, 'pubkey');
  return `user:${pubkey}`;
}

/**
 * Admitted at `now`: one-time admission (no end), or a subscription that has not ended. The
 * database's reading of its own rows, for settlement; the relay and the pay page use the
 * pricing package's, which reads the same fields from the relay's cache.
 */
function isAdmitted(account: AccountRow | undefined, now: number): boolean {
  return account?.admitted === true && (account.admittedUntil === null || account.admittedUntil > now);
}

/** A random URL-safe invoice id: 22 characters of base64url (16 random bytes). */
export function newInvoiceId(): string {
  return randomBytes(16).toString('base64url');
}

/** A payment that cannot be settled: unknown payment hash, or less received than invoiced. */
export class PaymentError extends Error {
  readonly code: 'unknown-invoice' | 'underpaid';
  constructor(code: 'unknown-invoice' | 'underpaid', message: string) {
    super(message);
    this.name = 'PaymentError';
    this.code = code;
  }
}

// ---------------------------------------------------------------------------------------------
// Helpers

const INVOICE_ID = /^[A-Za-z0-9_-]{1,64}$/;
const PRODUCTS: ReadonlySet<string> = new Set(['admission', 'subscription', 'credit', 'event', 'zap']);

function checkHex64(value: unknown, what: string): asserts value is string {
  if (!isHex64(value)) throw new TypeError(`${what} must be 64 lowercase hex characters`);
}

/** A safe integer >= min (amounts, times, limits). */
function checkInt(value: unknown, what: string, min = 0): asserts value is number {
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < min) {
    throw new RangeError(`${what} must be an integer >= ${min}, got ${String(value)}`);
  }
}

function buf(hex: string): Buffer {
  return Buffer.from(hex, 'hex');
}

function hex(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('hex');
}

function toAccount(r: Selectable<AccountsTable>): AccountRow {
  return { pubkey: hex(r.pubkey), admitted: r.admitted, admittedUntil: r.admitted_until, balanceMsat: r.balance_msat };
}

function toInvoice(r: Selectable<InvoicesTable>): InvoiceRow {
  return {
    id: r.id,
    paymentHash: r.payment_hash,
    bolt11: r.bolt11,
    pubkey: hex(r.pubkey),
    product: r.product,
    amountMsat: r.amount_msat,
    status: r.status,
    createdAt: r.created_at,
    expiresAt: r.expires_at,
    paidAt: r.paid_at,
    eventId: r.event_id === null ? null : hex(r.event_id),
    zapRequest: r.zap_request,
    zapReceiptId: r.zap_receipt_id === null ? null : hex(r.zap_receipt_id),
    description: r.description,
  };
}

type Entry = { account: string; amount: number };

/** Writes one balanced ledger transaction: rows of the same account are merged, zeros dropped. */
async function writeLedger(
  db: Kysely<Schema>,
  txid: string,
  entries: Entry[],
  ctx: { invoiceId: string | null; eventId: Buffer | null; memo: string; now: number },
): Promise<void> {
  const merged = new Map<string, number>();
  for (const e of entries) merged.set(e.account, (merged.get(e.account) ?? 0) + e.amount);
  let sum = 0;
  const rows = [];
  for (const [account, amount] of merged) {
    sum += amount;
    if (amount === 0) continue;
    rows.push({
      txid,
      account,
      amount_msat: amount,
      invoice_id: ctx.invoiceId,
      event_id: ctx.eventId,
      memo: ctx.memo,
      created_at: ctx.now,
    });
  }
  if (sum !== 0) throw new Error(`internal error: ledger transaction ${txid} does not balance (${sum})`);
  if (rows.length > 0) await db.insertInto('ledger').values(rows).execute();
}

// ---------------------------------------------------------------------------------------------
// Accounts

export async function getAccount(db: Kysely<Schema>, pubkey: string): Promise<AccountRow | undefined> {
  checkHex64(pubkey, 'pubkey');
  const r = await db.selectFrom('accounts').selectAll().where('pubkey', '=', buf(pubkey)).executeTakeFirst();
  return r && toAccount(r);
}

/**
 * Every account, or those changed at or after `sinceUpdatedAt` (unix seconds), by pubkey.
 * For incremental cache refreshes pass a `since` a little before the previous refresh: a
 * transaction stamps `updated_at` with its own `now` but may commit a moment later.
 */
export async function listAccounts(db: Kysely<Schema>, opts: { sinceUpdatedAt?: number } = {}): Promise<AccountRow[]> {
  let q = db.selectFrom('accounts').selectAll();
  if (opts.sinceUpdatedAt !== undefined) {
    checkInt(opts.sinceUpdatedAt, 'sinceUpdatedAt');
    q = q.where('updated_at', '>=', opts.sinceUpdatedAt);
  }
  const rows = await q.orderBy('pubkey').execute();
  return rows.map(toAccount);
}

/** Inserts the account if missing and locks its row until the end of the transaction. */
async function lockAccount(db: Kysely<Schema>, pubkey: Buffer, now: number): Promise<Selectable<AccountsTable>> {
  await db
    .insertInto('accounts')
    .values({ pubkey, admitted: false, admitted_until: null, balance_msat: 0, created_at: now, updated_at: now })
    .onConflict((oc) => oc.column('pubkey').doNothing())
    .execute();
  return db.selectFrom('accounts').selectAll().where('pubkey', '=', pubkey).forUpdate().executeTakeFirstOrThrow();
}

// ---------------------------------------------------------------------------------------------
// Invoices

export async function createInvoice(db: Kysely<Schema>, inv: NewInvoice): Promise<InvoiceRow> {
  const id = inv.id ?? newInvoiceId();
  if (typeof id !== 'string' || !INVOICE_ID.test(id)) throw new TypeError('invoice id must be 1-64 characters of [A-Za-z0-9_-]');
  checkHex64(inv.paymentHash, 'paymentHash');
  if (typeof inv.bolt11 !== 'string' || inv.bolt11.length === 0) throw new TypeError('bolt11 must be a non-empty string');
  checkHex64(inv.pubkey, 'pubkey');
  if (!PRODUCTS.has(inv.product)) throw new TypeError(`unknown product ${String(inv.product)}`);
  checkInt(inv.amountMsat, 'amountMsat', 1);
  checkInt(inv.createdAt, 'createdAt');
  checkInt(inv.expiresAt, 'expiresAt', inv.createdAt);
  if (inv.product === 'event') checkHex64(inv.eventId, 'eventId');
  else if (inv.eventId != null) throw new TypeError('eventId is only for product "event"');
  if (inv.product === 'zap') {
    if (typeof inv.zapRequest !== 'string' || inv.zapRequest.length === 0) throw new TypeError('a zap invoice needs zapRequest');
  } else if (inv.zapRequest != null) throw new TypeError('zapRequest is only for product "zap"');
  if (inv.description != null && typeof inv.description !== 'string') throw new TypeError('description must be a string');

  const row = await db
    .insertInto('invoices')
    .values({
      id,
      payment_hash: inv.paymentHash,
      bolt11: inv.bolt11,
      pubkey: buf(inv.pubkey),
      product: inv.product,
      amount_msat: inv.amountMsat,
      status: 'pending',
      created_at: inv.createdAt,
      expires_at: inv.expiresAt,
      paid_at: null,
      event_id: inv.product === 'event' ? buf(inv.eventId as string) : null,
      zap_request: inv.product === 'zap' ? (inv.zapRequest as string) : null,
      zap_receipt_id: null,
      description: inv.description ?? null,
    })
    .returningAll()
    .executeTakeFirstOrThrow();
  return toInvoice(row);
}

export async function getInvoice(db: Kysely<Schema>, id: string): Promise<InvoiceRow | undefined> {
  if (typeof id !== 'string' || !INVOICE_ID.test(id)) return undefined;
  const r = await db.selectFrom('invoices').selectAll().where('id', '=', id).executeTakeFirst();
  return r && toInvoice(r);
}

export async function getInvoiceByHash(db: Kysely<Schema>, paymentHash: string): Promise<InvoiceRow | undefined> {
  if (typeof paymentHash !== 'string') return undefined;
  const r = await db.selectFrom('invoices').selectAll().where('payment_hash', '=', paymentHash.toLowerCase()).executeTakeFirst();
  return r && toInvoice(r);
}

/**
 * Every invoice still 'pending' (including ones whose expires_at has passed but that
 * expireInvoices has not marked yet), soonest expiry first: what the reconciler looks up.
 * `now` is accepted for symmetry with the other calls and does not filter; `limit` bounds
 * the answer.
 */
export async function listPendingInvoices(db: Kysely<Schema>, now: number, opts: { limit?: number } = {}): Promise<InvoiceRow[]> {
  checkInt(now, 'now');
  let q = db.selectFrom('invoices').selectAll().where('status', '=', 'pending').orderBy('expires_at').orderBy('id');
  if (opts.limit !== undefined) {
    checkInt(opts.limit, 'limit');
    q = q.limit(opts.limit);
  }
  return (await q.execute()).map(toInvoice);
}

/** Marks 'expired' every pending invoice with expires_at <= now (the caller subtracts any grace). */
export async function expireInvoices(db: Kysely<Schema>, now: number): Promise<number> {
  checkInt(now, 'now');
  const r = await db
    .updateTable('invoices')
    .set({ status: 'expired' })
    .where('status', '=', 'pending')
    .where('expires_at', '<=', now)
    .executeTakeFirst();
  return Number(r.numUpdatedRows);
}

/**
 * Records the published kind-9735 receipt of a paid zap invoice. Returns false when the invoice
 * is not a paid zap, or already has a receipt (the first one recorded stays).
 */
export async function setZapReceipt(db: Kysely<Schema>, invoiceId: string, receiptId: string): Promise<boolean> {
  checkHex64(receiptId, 'receiptId');
  if (typeof invoiceId !== 'string' || !INVOICE_ID.test(invoiceId)) return false;
  const r = await db
    .updateTable('invoices')
    .set({ zap_receipt_id: buf(receiptId) })
    .where('id', '=', invoiceId)
    .where('product', '=', 'zap')
    .where('status', '=', 'paid')
    .where('zap_receipt_id', 'is', null)
    .executeTakeFirst();
  return Number(r.numUpdatedRows) === 1;
}

/** Paid zap invoices without a recorded receipt, oldest payment first (to retry after a crash). */
export async function listZapsAwaitingReceipt(db: Kysely<Schema>, opts: { limit?: number } = {}): Promise<InvoiceRow[]> {
  let q = db
    .selectFrom('invoices')
    .selectAll()
    .where('product', '=', 'zap')
    .where('status', '=', 'paid')
    .where('zap_receipt_id', 'is', null)
    .orderBy('paid_at')
    .orderBy('id');
  if (opts.limit !== undefined) {
    checkInt(opts.limit, 'limit');
    q = q.limit(opts.limit);
  }
  return (await q.execute()).map(toInvoice);
}

// ---------------------------------------------------------------------------------------------
// Settlement

/**
 * The one settlement path, atomic and idempotent. In one transaction: the gate
 * `UPDATE invoices SET status='paid' WHERE payment_hash=$1 AND status IN ('pending','expired')`
 * (a late payment of an expired invoice still counts: the money was received), then the ledger
 * rows (txid `invoice:<id>`), then the product:
 * - admission: admitted, admitted_until = NULL (forever);
 * - subscription: admitted, admitted_until = max(now, admitted_until) + period (an account
 *   admitted forever stays so);
 * - credit: balance += received;
 * - event: the held event is removed from held_events and returned (the caller stores and
 *   publishes it; pass a transaction to do that in the same commit). If it is gone, the amount
 *   is credited to the payer's balance instead;
 * - zap: per `opts.zap` (see SettleOptions).
 * Anything received above the invoice amount is credited to the payer's balance.
 *
 * Returns settled: true the first time; settled: false (and changes nothing) when the invoice
 * was already paid, also when two settlers race (the row lock makes the second wait, and then
 * its gate matches nothing). Throws PaymentError 'unknown-invoice' for a hash that is not ours
 * (a shared wallet reports every incoming payment) and 'underpaid' when `amountMsat` is below
 * the invoice amount; in both cases nothing is written.
 */
export async function settleInvoice(db: Kysely<Schema>, paymentHash: string, opts: SettleOptions): Promise<SettleResult> {
  if (typeof paymentHash !== 'string') throw new TypeError('paymentHash must be a string');
  const hash = paymentHash.toLowerCase();
  checkHex64(hash, 'paymentHash');
  checkInt(opts.now, 'now');
  checkInt(opts.subscriptionPeriodSeconds, 'subscriptionPeriodSeconds', 1);
  if (opts.amountMsat !== undefined) checkInt(opts.amountMsat, 'amountMsat', 1);
  if (opts.zap !== undefined) checkInt(opts.zap.admissionMsat, 'zap.admissionMsat');
  const now = opts.now;

  return atomically(db, async (trx) => {
    let gate = trx
      .updateTable('invoices')
      .set({ status: 'paid', paid_at: now })
      .where('payment_hash', '=', hash)
      .where('status', 'in', ['pending', 'expired']);
    if (opts.amountMsat !== undefined) gate = gate.where('amount_msat', '<=', opts.amountMsat);
    const paid = await gate.returningAll().executeTakeFirst();

    if (paid === undefined) {
      const existing = await trx.selectFrom('invoices').selectAll().where('payment_hash', '=', hash).executeTakeFirst();
      if (existing === undefined) throw new PaymentError('unknown-invoice', `no invoice with payment hash ${hash}`);
      if (existing.status !== 'paid') {
        throw new PaymentError(
          'underpaid',
          `invoice ${existing.id} is for ${existing.amount_msat} msat, the wallet reports ${String(opts.amountMsat)} msat`,
        );
      }
      return { settled: false, invoice: toInvoice(existing) };
    }

    const invoice = toInvoice(paid);
    const received = opts.amountMsat ?? invoice.amountMsat;
    const surplus = received - invoice.amountMsat;
    const user = `user:${invoice.pubkey}`;
    const entries: Entry[] = [{ account: LEDGER_WALLET, amount: -received }];
    let credit = 0;
    let admit: 'forever' | 'extend' | null = null;
    let memo: string = invoice.product;
    let heldEvent: { id: string; raw: string } | undefined;
    let acc: Selectable<AccountsTable> | undefined;
    const pubkey = buf(invoice.pubkey);

    switch (invoice.product) {
      case 'admission':
        entries.push({ account: REVENUE_ADMISSION, amount: invoice.amountMsat });
        admit = 'forever';
        credit = surplus;
        break;
      case 'subscription':
        entries.push({ account: REVENUE_SUBSCRIPTION, amount: invoice.amountMsat });
        admit = 'extend';
        credit = surplus;
        memo = `subscription ${opts.subscriptionPeriodSeconds}s`;
        break;
      case 'credit':
        credit = received;
        break;
      case 'event': {
        const held = await trx
          .deleteFrom('held_events')
          .where('event_id', '=', buf(invoice.eventId as string))
          .returning(['event_id', 'raw'])
          .executeTakeFirst();
        if (held) {
          heldEvent = { id: hex(held.event_id), raw: held.raw };
          entries.push({ account: REVENUE_EVENT, amount: invoice.amountMsat });
          credit = surplus;
          memo = `event ${heldEvent.id}`;
        } else {
          credit = received;
          memo = `event ${invoice.eventId as string} no longer held: credited`;
        }
        break;
      }
      case 'zap': {
        acc = await lockAccount(trx, pubkey, now);
        const admission = opts.zap?.admissionMsat ?? 0;
        if (admission > 0 && !isAdmitted(toAccount(acc), now) && received >= admission) {
          admit = 'forever';
          entries.push({ account: REVENUE_ADMISSION, amount: admission });
          credit = received - admission;
          memo = 'zap: admission';
        } else {
          credit = received;
          memo = 'zap: credit';
        }
        break;
      }
    }
    if (credit > 0) entries.push({ account: user, amount: credit });

    let account: AccountRow | undefined;
    if (admit !== null || credit > 0) {
      acc ??= await lockAccount(trx, pubkey, now);
      let until = acc.admitted_until;
      if (admit === 'forever') until = null;
      else if (admit === 'extend' && !(acc.admitted && acc.admitted_until === null)) {
        until = Math.max(now, acc.admitted_until ?? 0) + opts.subscriptionPeriodSeconds;
      }
      const updated = await trx
        .updateTable('accounts')
        .set((eb) => ({
          admitted: acc!.admitted || admit !== null,
          admitted_until: until,
          balance_msat: eb('balance_msat', '+', credit),
          updated_at: now,
        }))
        .where('pubkey', '=', pubkey)
        .returningAll()
        .executeTakeFirstOrThrow();
      account = toAccount(updated);
    } else {
      const r = await trx.selectFrom('accounts').selectAll().where('pubkey', '=', pubkey).executeTakeFirst();
      account = r && toAccount(r);
    }

    await writeLedger(trx, `invoice:${invoice.id}`, entries, {
      invoiceId: invoice.id,
      eventId: invoice.eventId === null ? null : buf(invoice.eventId),
      memo,
      now,
    });

    const result: SettleResult = { settled: true, invoice };
    if (account) result.account = account;
    if (heldEvent) result.heldEvent = heldEvent;
    return result;
  });
}

// ---------------------------------------------------------------------------------------------
// Publication debits

/**
 * Debits the publication price of event `eventId` from `pubkey`'s prepaid balance: one
 * conditional `UPDATE accounts ... WHERE balance_msat >= amount` plus the ledger rows
 * (`user:<hex>` -amount, `revenue:publication` +amount, txid `publication:<eventId>`).
 * Call it inside the transaction that inserts the event, so both commit or neither does.
 *
 * - false, and nothing changes, when the balance is too low (or there is no account);
 * - true without a second charge when this event was already debited (a client resending an
 *   event pays once). Two transactions debiting the same event at the same moment: the second
 *   fails at its ledger insert with a unique violation (23505) and must roll back; on its own
 *   transaction this function retries and then answers true;
 * - an amount of 0 is free: true, nothing written.
 */
export async function debitForEvent(
  db: Kysely<Schema>,
  pubkey: string,
  eventId: string,
  amountMsat: number,
  now: number,
): Promise<boolean> {
  checkHex64(pubkey, 'pubkey');
  checkHex64(eventId, 'eventId');
  checkInt(amountMsat, 'amountMsat');
  checkInt(now, 'now');
  if (amountMsat === 0) return true;
  const pk = buf(pubkey);
  const eid = buf(eventId);
  return atomically(
    db,
    async (trx) => {
      const already = await trx
        .selectFrom('ledger')
        .select('id')
        .where('event_id', '=', eid)
        .where('account', '=', REVENUE_PUBLICATION)
        .executeTakeFirst();
      if (already) return true;
      const debited = await trx
        .updateTable('accounts')
        .set((eb) => ({ balance_msat: eb('balance_msat', '-', amountMsat), updated_at: now }))
        .where('pubkey', '=', pk)
        .where('balance_msat', '>=', amountMsat)
        .returning('balance_msat')
        .executeTakeFirst();
      if (!debited) return false;
      await writeLedger(
        trx,
        `publication:${eventId}`,
        [
          { account: `user:${pubkey}`, amount: -amountMsat },
          { account: REVENUE_PUBLICATION, amount: amountMsat },
        ],
        { invoiceId: null, eventId: eid, memo: 'publication', now },
      );
      return true;
    },
    ['23505'],
  );
}

/**
 * For a group commit that charges several events: locks the payers' account rows for the
 * caller's transaction (in pubkey order, so concurrent commits cannot deadlock on them) and
 * answers, in input order, which charges their balances cover (earlier charges of one pubkey
 * first) and what was left for each before it. A charge that is not covered fails alone; the rest of the batch goes on, and
 * debitForEvent for the covered ones cannot fail on the balance while the rows are locked.
 */
export async function affordableCharges(
  trx: Kysely<Schema>,
  charges: { pubkey: string; amountMsat: number }[],
): Promise<{ covered: boolean; balanceMsat: number }[]> {
  if (!trx.isTransaction) throw new TypeError('affordableCharges must run in a transaction');
  for (const c of charges) {
    checkHex64(c.pubkey, 'pubkey');
    checkInt(c.amountMsat, 'amountMsat');
  }
  const pubkeys = [...new Set(charges.map((c) => c.pubkey))].sort();
  if (pubkeys.length === 0) return [];
  const rows = await trx
    .selectFrom('accounts')
    .select(['pubkey', 'balance_msat'])
    .where('pubkey', 'in', pubkeys.map(buf))
    .orderBy('pubkey')
    .forUpdate()
    .execute();
  const left = new Map(rows.map((r) => [hex(r.pubkey), Number(r.balance_msat)]));
  return charges.map((c) => {
    const have = left.get(c.pubkey) ?? 0;
    if (have < c.amountMsat) return { covered: false, balanceMsat: have };
    left.set(c.pubkey, have - c.amountMsat);
    return { covered: true, balanceMsat: have };
  });
}

// ---------------------------------------------------------------------------------------------
// Held events

/** Namespace (first key) of the advisory locks that serialise holdEvent per pubkey. */
const HOLD_LOCK_NAMESPACE = 0x484c4450;
/** Namespace of the advisory locks that serialise holds per client address (taken after the pubkeys'). */
const HOLD_IP_LOCK_NAMESPACE = 0x484c4449;

export type HoldItem = { id: string; pubkey: string; kind: number; raw: string; amountMsat: number; ip?: string };
export type HoldOptions = { now: number; ttlSeconds: number; maxPerPubkey: number; maxBytes: number; maxBytesPerIp?: number };

/**
 * Keeps a refused event until it is paid for, for `ttlSeconds`, at most `maxPerPubkey` per
 * pubkey, `maxBytesPerIp` bytes per client address (when the event names one) and `maxBytes`
 * of JSON each.
 *
 * - 'already-held': the same event is held; its expiry is pushed to now + ttl (price unchanged).
 * - When the pubkey (or the address) is at its limit the OLDEST held events are dropped, so the
 *   newest refused write is always the one that can be paid for; an event with a pending,
 *   unexpired invoice is never dropped (someone is paying for it). 'limit-reached' only when
 *   every slot is taken by such events (or maxPerPubkey is 0).
 * - 'too-large': raw is over maxBytes (UTF-8).
 */
export async function holdEvent(db: Kysely<Schema>, ev: HoldItem, opts: HoldOptions): Promise<HoldResult> {
  return (await holdEvents(db, [ev], opts))[0];
}

/**
 * holdEvent for many events in one transaction (a refusal must stay cheap: the relay batches
 * the events it refuses, as it batches the ones it stores). Results are in input order.
 */
export async function holdEvents(db: Kysely<Schema>, evs: HoldItem[], opts: HoldOptions): Promise<HoldResult[]> {
  for (const ev of evs) {
    checkHex64(ev.id, 'id');
    checkHex64(ev.pubkey, 'pubkey');
    checkInt(ev.kind, 'kind');
    if (typeof ev.raw !== 'string') throw new TypeError('raw must be a string');
    checkInt(ev.amountMsat, 'amountMsat');
  }
  checkInt(opts.now, 'now');
  checkInt(opts.ttlSeconds, 'ttlSeconds', 1);
  checkInt(opts.maxPerPubkey, 'maxPerPubkey');
  checkInt(opts.maxBytes, 'maxBytes');
  const items = evs.map((ev) => ({ ev, bytes: Buffer.byteLength(ev.raw, 'utf8'), ip: ev.ip ?? '' }));
  const results: HoldResult[] = items.map((it) => (it.bytes > opts.maxBytes ? 'too-large' : 'held'));
  const todo = items.map((it, i) => ({ ...it, i })).filter((it) => results[it.i] !== 'too-large');
  if (todo.length === 0) return results;

  return atomically(db, async (trx) => {
    // Serialise holds of one pubkey, then of one address (each hashed to 2^32 keys), so the bounds
    // hold across replicas; every transaction takes its locks in the same order, so none deadlock.
    const perIp = opts.maxBytesPerIp !== undefined;
    await lockAll(
      trx,
      HOLD_LOCK_NAMESPACE,
      todo.map((t) => buf(t.ev.pubkey).readInt32BE(0)),
    );
    if (perIp)
      await lockAll(
        trx,
        HOLD_IP_LOCK_NAMESPACE,
        todo.filter((t) => t.ip !== '').map((t) => addressLockKey(t.ip)),
      );
    for (const t of todo) results[t.i] = await holdOne(trx, t.ev, t.bytes, t.ip, opts);
    return results;
  });
}

/** Takes transaction-level advisory locks on `keys` in ascending order (duplicates once). */
async function lockAll(trx: Kysely<Schema>, namespace: number, keys: number[]): Promise<void> {
  const sorted = [...new Set(keys)].sort((a, b) => a - b);
  if (sorted.length === 0) return;
  await sql`SELECT count(pg_advisory_xact_lock(${namespace}::int4, k)) FROM (SELECT k FROM unnest(${sorted}::int4[]) k ORDER BY k) s`.execute(
    trx,
  );
}

function addressLockKey(ip: string): number {
  return createHash('sha256').update(ip).digest().readInt32BE(0);
}

async function holdOne(trx: Kysely<Schema>, ev: HoldItem, bytes: number, ip: string, opts: HoldOptions): Promise<HoldResult> {
  const { now } = opts;
  const expiresAt = now + opts.ttlSeconds;
  const id = buf(ev.id);
  const pk = buf(ev.pubkey);
  const refreshed = await trx
    .updateTable('held_events')
    .set((eb) => ({ expires_at: eb.fn('greatest', ['expires_at', eb.val(expiresAt)]) }))
    .where('event_id', '=', id)
    .executeTakeFirst();
  if (Number(refreshed.numUpdatedRows) > 0) return 'already-held';
  if (opts.maxPerPubkey === 0) return 'limit-reached';

  const rows = await trx
    .selectFrom('held_events as h')
    .select(['h.event_id', 'h.expires_at'])
    .select((eb) => beingPaid(eb, now))
    .where('h.pubkey', '=', pk)
    .orderBy('h.created_at')
    .orderBy('h.event_id')
    .execute();
  // Drop what has expired (unless being paid), then the oldest until there is room.
  const drop: Uint8Array[] = [];
  let live = rows.length;
  for (const r of rows) {
    if (!r.being_paid && r.expires_at <= now) {
      drop.push(r.event_id);
      live--;
    }
  }
  for (const r of rows) {
    if (live < opts.maxPerPubkey) break;
    if (!r.being_paid && r.expires_at > now) {
      drop.push(r.event_id);
      live--;
    }
  }
  if (live >= opts.maxPerPubkey) return 'limit-reached';
  if (ip !== '' && opts.maxBytesPerIp !== undefined) {
    const room = await makeRoomForAddress(trx, ip, bytes, opts.maxBytesPerIp, now, drop);
    if (!room) return 'limit-reached';
  }
  if (drop.length > 0) await trx.deleteFrom('held_events').where('event_id', 'in', drop).execute();
  await trx
    .insertInto('held_events')
    .values({
      event_id: id,
      pubkey: pk,
      kind: ev.kind,
      raw: ev.raw,
      amount_msat: ev.amountMsat,
      created_at: now,
      expires_at: expiresAt,
      ip,
      bytes,
    })
    .execute();
  return 'held';
}

/**
 * Per-address bound: fresh keys are free, so one address could otherwise hold
 * `maxPerPubkey × keys` events. Adds to `drop` the address's oldest held events (never one
 * being paid for) until `bytes` more fit under `maxBytes`; false when they cannot.
 */
async function makeRoomForAddress(
  trx: Kysely<Schema>,
  ip: string,
  bytes: number,
  maxBytes: number,
  now: number,
  drop: Uint8Array[],
): Promise<boolean> {
  if (bytes > maxBytes) return false;
  const rows = await trx
    .selectFrom('held_events as h')
    .select(['h.event_id', 'h.bytes'])
    .select((eb) => beingPaid(eb, now))
    .where('h.ip', '=', ip)
    .orderBy('h.created_at')
    .orderBy('h.event_id')
    .execute();
  const dropping = new Set(drop.map((d) => hex(d)));
  let used = 0;
  for (const r of rows) if (!dropping.has(hex(r.event_id))) used += r.bytes;
  for (const r of rows) {
    if (used + bytes <= maxBytes) break;
    if (r.being_paid || dropping.has(hex(r.event_id))) continue;
    drop.push(r.event_id);
    dropping.add(hex(r.event_id));
    used -= r.bytes;
  }
  return used + bytes <= maxBytes;
}

/** `being_paid`: the held event has a pending invoice that has not expired (someone is paying for it). */
function beingPaid(eb: ExpressionBuilder<Schema & { h: Schema['held_events'] }, 'h'>, now: number) {
  return eb
    .exists(
      eb
        .selectFrom('invoices as i')
        .select('i.id')
        .whereRef('i.event_id', '=', 'h.event_id')
        .where('i.status', '=', 'pending')
        .where('i.expires_at', '>', now),
    )
    .as('being_paid');
}

export type HeldStats = { events: number; bytes: number };

/**
 * The global bound: keeps the newest held events whose bytes add up to at most `maxTotalBytes`
 * and deletes the older ones, except those being paid for. One statement, safe to run from
 * every replica at once. Returns how many were deleted and what is held afterwards.
 */
export async function trimHeldEvents(db: Kysely<Schema>, maxTotalBytes: number, now: number): Promise<HeldStats & { deleted: number }> {
  checkInt(maxTotalBytes, 'maxTotalBytes');
  checkInt(now, 'now');
  const r = await sql<{ n: number }>`
    WITH ranked AS (
      SELECT event_id, sum(bytes) OVER (ORDER BY created_at DESC, event_id DESC) AS newer_bytes FROM held_events
    ), gone AS (
      DELETE FROM held_events d USING ranked r
      WHERE d.event_id = r.event_id AND r.newer_bytes > ${maxTotalBytes}
        AND NOT EXISTS (SELECT 1 FROM invoices i WHERE i.event_id = d.event_id AND i.status = 'pending' AND i.expires_at > ${now})
      RETURNING 1
    )
    SELECT count(*)::int8 AS n FROM gone`.execute(db);
  return { deleted: Number(r.rows[0]?.n ?? 0), ...(await heldEventStats(db)) };
}

/** How many events, and how many bytes of them, are held now. */
export async function heldEventStats(db: Kysely<Schema>): Promise<HeldStats> {
  const r = await db
    .selectFrom('held_events')
    .select((eb) => [
      eb.fn.countAll<number>().as('events'),
      eb.cast<number>(eb.fn.coalesce(eb.fn.sum<number>('bytes'), eb.lit(0)), 'int8').as('bytes'),
    ])
    .executeTakeFirstOrThrow();
  return { events: Number(r.events), bytes: Number(r.bytes) };
}

/** A held event that has not expired at `now`, or undefined. */
export async function getHeldEvent(db: Kysely<Schema>, eventId: string, now: number): Promise<HeldEvent | undefined> {
  if (!isHex64(eventId)) return undefined;
  checkInt(now, 'now');
  const r = await db
    .selectFrom('held_events')
    .selectAll()
    .where('event_id', '=', buf(eventId))
    .where('expires_at', '>', now)
    .executeTakeFirst();
  return r && { id: hex(r.event_id), pubkey: hex(r.pubkey), kind: r.kind, raw: r.raw, amountMsat: r.amount_msat, expiresAt: r.expires_at };
}

/**
 * A pubkey's held events that nothing is paying for yet (no pending, unexpired invoice of their
 * own), oldest first: after a grant, the admission service publishes those the gate now accepts.
 */
export async function listHeldEvents(db: Kysely<Schema>, pubkey: string, now: number): Promise<HeldEvent[]> {
  checkHex64(pubkey, 'pubkey');
  checkInt(now, 'now');
  const rows = await db
    .selectFrom('held_events as h')
    .selectAll('h')
    .where('h.pubkey', '=', buf(pubkey))
    .where('h.expires_at', '>', now)
    .where(({ not, exists, selectFrom }) =>
      not(
        exists(
          selectFrom('invoices as i')
            .select('i.id')
            .whereRef('i.event_id', '=', 'h.event_id')
            .where('i.status', '=', 'pending')
            .where('i.expires_at', '>', now),
        ),
      ),
    )
    .orderBy('h.created_at')
    .execute();
  return rows.map((r) => ({
    id: hex(r.event_id),
    pubkey: hex(r.pubkey),
    kind: r.kind,
    raw: r.raw,
    amountMsat: r.amount_msat,
    expiresAt: r.expires_at,
  }));
}

/** Removes held events (published by other means). Returns how many were removed. */
export async function deleteHeldEvents(db: Kysely<Schema>, eventIds: string[]): Promise<number> {
  if (eventIds.length === 0) return 0;
  for (const id of eventIds) checkHex64(id, 'eventId');
  const r = await db.deleteFrom('held_events').where('event_id', 'in', eventIds.map(buf)).executeTakeFirst();
  return Number(r.numDeletedRows);
}

/**
 * Deletes held events whose expiry is due (expires_at <= now), except those with a pending
 * invoice that has not expired (a payment may still arrive). Returns how many were deleted.
 * (A payment that arrives after its held event was purged is credited to the payer's balance.)
 */
export async function purgeHeldEvents(db: Kysely<Schema>, now: number): Promise<number> {
  checkInt(now, 'now');
  const r = await db
    .deleteFrom('held_events as h')
    .where('h.expires_at', '<=', now)
    .where(({ not, exists, selectFrom }) =>
      not(
        exists(
          selectFrom('invoices as i')
            .select('i.id')
            .whereRef('i.event_id', '=', 'h.event_id')
            .where('i.status', '=', 'pending')
            .where('i.expires_at', '>', now),
        ),
      ),
    )
    .executeTakeFirst();
  return Number(r.numDeletedRows);
}

// ---------------------------------------------------------------------------------------------
// Ledger reads

/** The sum of an account's ledger rows (0 for an account without rows). */
export async function ledgerBalance(db: Kysely<Schema>, account: string): Promise<number> {
  const r = await db
    .selectFrom('ledger')
    .select((eb) => eb.cast<number>(eb.fn.coalesce(eb.fn.sum<number>('amount_msat'), eb.lit(0)), 'int8').as('s'))
    .where('account', '=', account)
    .executeTakeFirstOrThrow();
  return Number(r.s);
}

/** The sum of every ledger row: always 0. */
export async function ledgerTotal(db: Kysely<Schema>): Promise<number> {
  const r = await db
    .selectFrom('ledger')
    .select((eb) => eb.cast<number>(eb.fn.coalesce(eb.fn.sum<number>('amount_msat'), eb.lit(0)), 'int8').as('s'))
    .executeTakeFirstOrThrow();
  return Number(r.s);
}
