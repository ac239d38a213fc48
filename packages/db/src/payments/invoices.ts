/** Invoices: created by the admission API, marked paid by settlement, expired by the reconciler. */
import { randomBytes } from 'node:crypto';
import type { Kysely, Selectable } from 'kysely';
import type { InvoiceProduct, InvoicesTable, InvoiceStatus, Schema } from '../schema.ts';
import { bufHex, hexBuf } from '../hex.ts';
import { checkHex64, checkInt } from './checks.ts';

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
  /** The network (IPv4 /24, IPv6 /56) it was asked from; null when unknown. */
  network: string | null;
};

/** What createInvoice takes: `id` is generated when omitted. */
export type NewInvoice = Omit<InvoiceRow, 'id' | 'status' | 'paidAt' | 'zapReceiptId' | 'network'> & {
  id?: string;
  network?: string | null;
};

const INVOICE_ID = /^[A-Za-z0-9_-]{1,64}$/;
const PRODUCTS: ReadonlySet<string> = new Set(['admission', 'subscription', 'credit', 'event', 'zap']);

/** A random URL-safe invoice id: 22 characters of base64url (16 random bytes). */
export function newInvoiceId(): string {
  return randomBytes(16).toString('base64url');
}

export function toInvoice(r: Selectable<InvoicesTable>): InvoiceRow {
  return {
    id: r.id,
    paymentHash: r.payment_hash,
    bolt11: r.bolt11,
    pubkey: bufHex(r.pubkey),
    product: r.product,
    amountMsat: r.amount_msat,
    status: r.status,
    createdAt: r.created_at,
    expiresAt: r.expires_at,
    paidAt: r.paid_at,
    eventId: r.event_id === null ? null : bufHex(r.event_id),
    zapRequest: r.zap_request,
    zapReceiptId: r.zap_receipt_id === null ? null : bufHex(r.zap_receipt_id),
    description: r.description,
    network: r.network,
  };
}

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
  if (inv.network != null && (typeof inv.network !== 'string' || inv.network.length > 64)) {
    throw new TypeError('network must be a string of at most 64 characters');
  }

  const row = await db
    .insertInto('invoices')
    .values({
      id,
      payment_hash: inv.paymentHash,
      bolt11: inv.bolt11,
      pubkey: hexBuf(inv.pubkey),
      product: inv.product,
      amount_msat: inv.amountMsat,
      status: 'pending',
      created_at: inv.createdAt,
      expires_at: inv.expiresAt,
      paid_at: null,
      event_id: inv.product === 'event' ? hexBuf(inv.eventId as string) : null,
      zap_request: inv.product === 'zap' ? (inv.zapRequest as string) : null,
      zap_receipt_id: null,
      description: inv.description ?? null,
      network: inv.network ?? null,
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
 * `limit` bounds the answer.
 */
export async function listPendingInvoices(db: Kysely<Schema>, opts: { limit?: number } = {}): Promise<InvoiceRow[]> {
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
    .set({ zap_receipt_id: hexBuf(receiptId) })
    .where('id', '=', invoiceId)
    .where('product', '=', 'zap')
    .where('status', '=', 'paid')
    .where('zap_receipt_id', 'is', null)
    .executeTakeFirst();
  return Number(r.numUpdatedRows) === 1;
}
