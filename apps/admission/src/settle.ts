import { ACCOUNTS_CHANNEL, encodeEventMessage, EVENTS_CHANNEL, INVOICES_CHANNEL } from '@paidrelay/bus';
import { getInvoiceByHash, setZapReceipt, settleInvoice, storeEvents } from '@paidrelay/db';
import { releaseHeldEvents } from '@paidrelay/payment-gate';
import { eventToJson, type NostrEvent } from '@paidrelay/nostr';
import { sql } from 'kysely';
import { invoiceJson, now, type AdmissionContext } from './context.ts';
import { zapReceipt } from './zap.ts';

/** Advisory lock key: one settler at a time across every admission replica. */
const SETTLE_LOCK = 0x5e771e;

/** Sender id on the events channel for what the admission service publishes. */
export const ADMISSION_SENDER = 'admission';

/**
 * The one path by which money becomes a grant. Called only when the wallet says an invoice
 * is paid (a payment_received notification or lookup_invoice). In one transaction: the
 * invoice is marked paid if it was not, the ledger rows, the grant or credit, the held event
 * stored, the zap receipt stored. Afterwards the bus tells every relay replica.
 * Safe to call any number of times for the same payment.
 */
export async function settle(ctx: AdmissionContext, paymentHash: string, amountMsat: number, preimage?: string): Promise<boolean> {
  const known = await getInvoiceByHash(ctx.db.kysely, paymentHash);
  if (!known) return false; // not one of ours (another app on the same wallet)
  if (known.status === 'paid') return false;
  const at = now();
  const result = await ctx.db.kysely.transaction().execute(async (trx) => {
    if (ctx.db.kind === 'postgres') await sql`SELECT pg_advisory_xact_lock(${SETTLE_LOCK})`.execute(trx);
    const r = await settleInvoice(trx, paymentHash, {
      now: at,
      amountMsat,
      subscriptionPeriodSeconds: ctx.pricing.subscriptionPeriodSeconds,
      zap: { admissionMsat: ctx.pricing.admissionMsat },
    });
    const published: string[] = [];
    if (!r.settled) return { ...r, published };
    if (r.heldEvent) {
      const ev = JSON.parse(r.heldEvent.raw) as NostrEvent;
      const [outcome] = await storeEvents(trx, [{ event: ev, raw: r.heldEvent.raw }], at);
      if (outcome.status === 'stored') published.push(r.heldEvent.raw);
    }
    if (r.invoice.product === 'zap' && r.invoice.zapRequest) {
      const receipt = zapReceipt(ctx.relayKey.secretKey, r.invoice, preimage, at);
      const raw = eventToJson(receipt);
      await storeEvents(trx, [{ event: receipt, raw }], at);
      await setZapReceipt(trx, r.invoice.id, receipt.id);
      published.push(raw);
    }
    if (r.account) published.push(...(await releaseHeldEvents(trx, ctx.pricing, r.account, at)));
    return { ...r, published };
  });
  if (!result.settled) return false;
  ctx.log.info(
    { invoice: result.invoice.id, product: result.invoice.product, amountMsat: result.invoice.amountMsat, pubkey: result.invoice.pubkey },
    'invoice settled',
  );
  if (result.account) ctx.bus.publish(ACCOUNTS_CHANNEL, JSON.stringify(result.account));
  ctx.bus.publish(INVOICES_CHANNEL, JSON.stringify(invoiceJson(result.invoice)));
  for (const raw of result.published) ctx.bus.publish(EVENTS_CHANNEL, encodeEventMessage(ADMISSION_SENDER, raw));
  return true;
}
