/** Publication debits: a per-event price paid from a prepaid balance, in the event's own commit. */
import type { Kysely } from 'kysely';
import type { Schema } from '../schema.ts';
import { atomically } from '../transaction.ts';
import { REVENUE_PUBLICATION, writeLedger } from './ledger.ts';
import { bufHex, hexBuf } from '../hex.ts';
import { checkHex64, checkInt } from './checks.ts';

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
  const pk = hexBuf(pubkey);
  const eid = hexBuf(eventId);
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
    .where('pubkey', 'in', pubkeys.map(hexBuf))
    .orderBy('pubkey')
    .forUpdate()
    .execute();
  const left = new Map(rows.map((r) => [bufHex(r.pubkey), Number(r.balance_msat)]));
  return charges.map((c) => {
    const have = left.get(c.pubkey) ?? 0;
    if (have < c.amountMsat) return { covered: false, balanceMsat: have };
    left.set(c.pubkey, have - c.amountMsat);
    return { covered: true, balanceMsat: have };
  });
}
