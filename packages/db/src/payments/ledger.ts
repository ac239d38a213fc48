/**
 * The double-entry ledger.
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
import type { Kysely } from 'kysely';
import type { Schema } from '../schema.ts';
import { checkHex64 } from './checks.ts';

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

export type Entry = { account: string; amount: number };

/** Writes one balanced ledger transaction: rows of the same account are merged, zeros dropped. */
export async function writeLedger(
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
