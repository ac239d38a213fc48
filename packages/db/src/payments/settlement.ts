/** Settlement: an invoice is paid, once, and what it bought is granted, in one transaction. */
import type { Kysely, Selectable } from 'kysely';
import type { AccountsTable, Schema } from '../schema.ts';
import { atomically } from '../transaction.ts';
import { isAdmitted, lockAccount, toAccount, type AccountRow } from './accounts.ts';
import { toInvoice, type InvoiceRow } from './invoices.ts';
import { LEDGER_WALLET, REVENUE_ADMISSION, REVENUE_EVENT, REVENUE_SUBSCRIPTION, writeLedger, type Entry } from './ledger.ts';
import { bufHex, hexBuf } from '../hex.ts';
import { checkHex64, checkInt } from './checks.ts';

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
  /**
   * This settlement bought admission or writing time (an admission, a subscription, a zap that
   * admitted): what counts as an admission bought from the invoice's network. Only when settled.
   */
  admits?: boolean;
};

/** A payment that cannot be settled: unknown payment hash, or less received than invoiced. */
export class PaymentError extends Error {
  readonly code: 'unknown-invoice' | 'underpaid';
  constructor(code: 'unknown-invoice' | 'underpaid', message: string) {
    super(message);
    this.name = 'PaymentError';
    this.code = code;
  }
}

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
 * Whatever the product, what was received is added to the payer's `paid_msat` (its paid
 * history, for the spam pricing's trust), so the payer always has an account afterwards. The
 * gate on the invoice's status makes that, like everything else here, happen once per invoice.
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
    const pubkey = hexBuf(invoice.pubkey);

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
          .where('event_id', '=', hexBuf(invoice.eventId as string))
          .returning(['event_id', 'raw'])
          .executeTakeFirst();
        if (held) {
          heldEvent = { id: bufHex(held.event_id), raw: held.raw };
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

    // Every payment is paid history: the account is made if need be (a paid held event).
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
        paid_msat: eb('paid_msat', '+', received),
        updated_at: now,
      }))
      .where('pubkey', '=', pubkey)
      .returningAll()
      .executeTakeFirstOrThrow();
    const account: AccountRow = toAccount(updated);

    await writeLedger(trx, `invoice:${invoice.id}`, entries, {
      invoiceId: invoice.id,
      eventId: invoice.eventId === null ? null : hexBuf(invoice.eventId),
      memo,
      now,
    });

    const result: SettleResult = { settled: true, invoice, account, admits: admit !== null };
    if (heldEvent) result.heldEvent = heldEvent;
    return result;
  });
}
