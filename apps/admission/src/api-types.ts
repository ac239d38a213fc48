/**
 * The JSON API's request and response bodies: what the service (api.ts, context.ts) sends and
 * what the pay page (web/) reads. Types only, so the browser bundle carries none of the server.
 */

import type { InvoiceProduct, InvoiceStatus } from '@paidrelay/db';
import type { Product } from '@paidrelay/pricing';

export type { InvoiceStatus, Product };

/** GET /api/pricing. */
export interface PricingView {
  admission_msat: number;
  subscription_msat: number;
  subscription_period_seconds: number;
  publication_msat: number;
  publication_kinds: Record<string, number>;
  publication_per_kb_msat: number;
  event_msat: number;
  /** What is on sale now (a product that costs nothing is not). */
  products: { product: Product; label: string }[];
  credit: { min_msat: number; max_msat: number };
  relay_url: string;
  payments_url: string;
  lightning_address: string;
  /** With `?pubkey=`: that sender's spam pricing now. */
  sender?: SenderView;
}

/**
 * GET /api/pricing?pubkey=: what the gate would apply to this sender's next write, from the
 * counters every relay replica shares. Without spam pricing: multiplier 1, allowances null.
 */
export interface SenderView {
  /** Lowercase hex. */
  pubkey: string;
  /** The write multiplier now (volume × load, >= 1). */
  multiplier: number;
  /** Why, in the words of a refusal ('' at 1). */
  why: string;
  /** The daily allowance at its trust, and what is left of it today. */
  allowance: { events: number; bytes: number } | null;
  allowance_left: { events: number; bytes: number } | null;
  window_seconds: number;
  /** The admission price for the asking network now, and its multiplier. */
  admission_msat: number;
  admission_multiplier: number;
  /** 0 (fresh) to 1 (full allowance): from the account's age and what the key has paid in all. */
  trust: number;
}

/** POST /api/invoices. */
export interface CreateInvoiceBody {
  /** 64 hex characters or an npub. */
  pubkey: string;
  product: Product;
  /** Credit only: how much to buy. */
  amount_msat?: number;
  /** Product 'event' only: the held event to publish. */
  event_id?: string;
}

/** An invoice: the answer to POST /api/invoices and GET /api/invoices/:id, and each SSE `status` message. */
export interface InvoiceView {
  id: string;
  bolt11: string;
  payment_hash: string;
  amount_msat: number;
  expires_at: number;
  /** 'expired' as soon as expires_at has passed, before the reconciler marks the row. */
  status: InvoiceStatus;
  product: InvoiceProduct;
  pubkey: string;
  created_at: number;
  paid_at: number | null;
  event_id?: string;
}

/** GET /api/accounts/:pubkey; `admitted` is whether the key may write now. */
export interface AccountView {
  pubkey: string;
  admitted: boolean;
  admitted_until: number | null;
  balance_msat: number;
}

/** GET /api/held/:event_id: a held event without its content, at the price of now. */
export interface HeldEventView {
  id: string;
  pubkey: string;
  kind: number;
  amount_msat: number;
  expires_at: number;
}
