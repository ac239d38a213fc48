import { nowSeconds } from '@paidrelay/nostr';
import type { Bus } from '@paidrelay/bus';
import type { Config, RelayKey } from '@paidrelay/config';
import type { Database, InvoiceRow, AccountRow } from '@paidrelay/db';
import type { LightningBackend } from '@paidrelay/lightning';
import { isAdmitted, type Pricing } from '@paidrelay/pricing';
import type { Logger } from 'pino';
import type { AccountView, InvoiceView } from './api-types.ts';
import type { SharedCounters } from './volumes.ts';

/** What the admission service is started with (apps/all-in-one shares its database and bus). */
export type AdmissionDeps = {
  db: Database;
  bus: Bus;
  lightning: LightningBackend;
  /** The config's pricing: its prices seed the stored ones on a first start; the service then follows those. */
  pricing: Pricing;
  relayKey: RelayKey;
  /** Where clients reach the relay (shown on the pay page). */
  relayUrl: string;
};

/** What every part of the admission service shares. */
export type AdmissionContext = AdmissionDeps & {
  config: Config;
  log: Logger;
  /** Origin of PAYMENTS_URL: the public base of this service. */
  origin: string;
  /** The spam pricing's counters, shared with the relay's gate (admissions bought per network, senders' volume). */
  counters: SharedCounters;
  /** The relay-wide load level, followed from the replicas' shared write rate (payment-gate's LoadMonitor). */
  load: { readonly level: number };
};

/** The service's clock, in unix seconds. */
export const now = nowSeconds;

/** An invoice as the API shows it. */
export function invoiceJson(inv: InvoiceRow, at = now()): InvoiceView {
  const status = inv.status === 'pending' && inv.expiresAt <= at ? 'expired' : inv.status;
  return {
    id: inv.id,
    bolt11: inv.bolt11,
    payment_hash: inv.paymentHash,
    amount_msat: inv.amountMsat,
    expires_at: inv.expiresAt,
    status,
    product: inv.product,
    pubkey: inv.pubkey,
    created_at: inv.createdAt,
    paid_at: inv.paidAt,
    ...(inv.eventId ? { event_id: inv.eventId } : {}),
  };
}

/** An account as the API shows it; `admitted` is whether it may write now. */
export function accountJson(pubkey: string, a: AccountRow | undefined, at = now()): AccountView {
  return {
    pubkey,
    admitted: isAdmitted(a, at),
    admitted_until: a?.admitted ? a.admittedUntil : null,
    balance_msat: a?.balanceMsat ?? 0,
  };
}
