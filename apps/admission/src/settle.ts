import { ACCOUNTS_CHANNEL, encodeEventMessage, EVENTS_CHANNEL, INVOICES_CHANNEL } from '@paidrelay/bus';
import { atomically, getInvoiceByHash, setZapReceipt, settleInvoice, storeEvents } from '@paidrelay/db';
import { releaseHeldEvents } from '@paidrelay/payment-gate';
import { admissionOffer, counterKeys, surgeWindow } from '@paidrelay/pricing';
import { eventToJson, type NostrEvent } from '@paidrelay/nostr';
import { sql } from 'kysely';
import { networkAdmissions } from './api.ts';
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
  // A zap admits only if it covers the admission price of the network it was asked from now.
  const zapAdmission =
    known.product === 'zap'
      ? admissionOffer(ctx.pricing.admissionMsat, await networkAdmissions(ctx, known.network ?? ''), ctx.pricing.surge).amountMsat
      : ctx.pricing.admissionMsat;
  const at = now();
  // Run again on a deadlock (a relay replica holding this key's refused events at the same
  // moment locks held_events rows in another order): a payment is never left ungranted for it.
  const result = await atomically(ctx.db.kysely, async (trx) => {
    if (ctx.db.kind === 'postgres') await sql`SELECT pg_advisory_xact_lock(${SETTLE_LOCK})`.execute(trx);
    const r = await settleInvoice(trx, paymentHash, {
      now: at,
      amountMsat,
      subscriptionPeriodSeconds: ctx.pricing.subscriptionPeriodSeconds,
      zap: { admissionMsat: zapAdmission },
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
  // Counted once per invoice (only the settlement that marked it paid gets here), after the
  // grant is on its way: a slow Redis never delays a payer's admission.
  if (result.admits) await countAdmission(ctx, result.invoice.network);
  return true;
}

/** One more admission bought from this network, in the counter every admission replica reads. */
async function countAdmission(ctx: AdmissionContext, network: string | null): Promise<void> {
  const policy = ctx.pricing.surge;
  if (!policy || !network) return;
  await ctx.counters.count(counterKeys('', network, policy).admissions, surgeWindow(policy), { events: 1, bytes: 0 });
}
