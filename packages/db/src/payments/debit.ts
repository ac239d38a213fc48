/** Publication debits: a per-event price paid from a prepaid balance, in the event's own commit. */
import { sql, type Kysely } from 'kysely';
import { PREPARED } from '../connect.ts';
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

/** What `debitEvents` did for one item: charged now, charged by an earlier debit, or priced at 0. */
export type DebitOutcome = 'debited' | 'already' | 'free';

export type DebitItem = { pubkey: string; eventId: string; amountMsat: number };

/**
 * The debits of a whole group commit in one statement, so a batch costs one round trip for its
 * charges however many events it holds. Decides as `debitForEvent` called on each item in order
 * would: an event is charged at most once (already in the ledger, or earlier in this batch:
 * 'already'); a price of 0 is 'free' and writes nothing; each payer's account is updated once,
 * by the total of its charges; each charge writes the same two ledger rows as debitForEvent.
 *
 * The caller locks and covers the balances first (affordableCharges, in the same transaction).
 * A payer whose balance does not cover its total is a bug of the caller: nothing is written for
 * anyone and this throws (the caller's transaction should then roll back).
 */
export async function debitEvents(trx: Kysely<Schema>, items: DebitItem[], now: number): Promise<DebitOutcome[]> {
  if (!trx.isTransaction) throw new TypeError('debitEvents must run in a transaction');
  for (const it of items) {
    checkHex64(it.pubkey, 'pubkey');
    checkHex64(it.eventId, 'eventId');
    checkInt(it.amountMsat, 'amountMsat');
  }
  checkInt(now, 'now');
  const { outcomes, charges } = planDebits(items);
  if (charges.length === 0) return outcomes;
  const { payers, paid, short, fresh } = await debitStatement(trx, charges, now);
  if (paid !== payers) {
    throw new Error(
      `debitEvents: ${short.length || payers - paid} of ${payers} payers cannot pay their total (${short.join(', ')}); ` +
        'lock and cover the charges first (affordableCharges)',
    );
  }
  const debited = new Set(fresh);
  for (const c of charges) outcomes[c.index] = debited.has(c.eventId) ? 'debited' : 'already';
  return outcomes;
}

type Charge = DebitItem & { index: number };

/** The items the statement must look at: priced ones, each event id once (its first charge wins). */
function planDebits(items: DebitItem[]): { outcomes: DebitOutcome[]; charges: Charge[] } {
  const seen = new Set<string>();
  const charges: Charge[] = [];
  const outcomes = items.map((it, index): DebitOutcome => {
    if (it.amountMsat === 0) return 'free';
    if (seen.has(it.eventId)) return 'already';
    seen.add(it.eventId);
    charges.push({ ...it, index });
    return 'already'; // until the statement says this one was charged now
  });
  return { outcomes, charges };
}

/**
 * Data-modifying CTEs: charges not yet in the ledger (`fresh`), each payer's total (`due`), the
 * payers it does not cover (`short`), then the account updates and the ledger rows. With any
 * payer short nothing is updated; and ledger rows are written only for accounts the UPDATE did
 * change (a balance changed by a writer that ignored the lock is skipped by the UPDATE's own
 * condition), so accounts always equal their ledger balances.
 */
async function debitStatement(
  trx: Kysely<Schema>,
  charges: Charge[],
  now: number,
): Promise<{ payers: number; paid: number; short: string[]; fresh: string[] }> {
  // A literal, not a parameter: a generic plan can then use the partial index on that account.
  const publication = sql.lit(REVENUE_PUBLICATION);
  const { rows } = await sql<{ payers: number; paid: number; short: string[]; fresh: string[] }>`${sql.raw(PREPARED)}
    WITH item AS (
      SELECT x.pk, x.eid, x.amount, decode(x.pk, 'hex') AS pubkey, decode(x.eid, 'hex') AS event_id
        FROM unnest(${charges.map((c) => c.pubkey)}::text[], ${charges.map((c) => c.eventId)}::text[],
                    ${charges.map((c) => c.amountMsat)}::int8[]) AS x(pk, eid, amount)
    ), fresh AS (
      SELECT i.* FROM item i
        WHERE NOT EXISTS (SELECT 1 FROM ledger l WHERE l.event_id = i.event_id AND l.account = ${publication})
    ), due AS (
      SELECT pubkey, sum(amount)::int8 AS total FROM fresh GROUP BY pubkey
    ), short AS (
      SELECT d.pubkey FROM due d
        WHERE NOT EXISTS (SELECT 1 FROM accounts a WHERE a.pubkey = d.pubkey AND a.balance_msat >= d.total)
    ), paid AS (
      UPDATE accounts a SET balance_msat = a.balance_msat - d.total, updated_at = ${now}
        FROM due d
        WHERE a.pubkey = d.pubkey AND a.balance_msat >= d.total AND NOT EXISTS (SELECT 1 FROM short)
        RETURNING a.pubkey
    ), booked AS (
      INSERT INTO ledger (txid, account, amount_msat, invoice_id, event_id, memo, created_at)
        SELECT 'publication:' || f.eid, e.account, e.amount, NULL, f.event_id, 'publication', ${now}
          FROM fresh f JOIN paid p ON p.pubkey = f.pubkey
          CROSS JOIN LATERAL (VALUES ('user:' || f.pk, -f.amount), (${publication}, f.amount)) AS e(account, amount)
    )
    SELECT (SELECT count(*) FROM due)::int4 AS payers, (SELECT count(*) FROM paid)::int4 AS paid,
           ARRAY(SELECT encode(pubkey, 'hex') FROM short ORDER BY 1) AS short, ARRAY(SELECT eid FROM fresh) AS fresh`.execute(trx);
  return rows[0];
}

/**
 * For a group commit that charges several events: locks the payers' account rows for the
 * caller's transaction (in pubkey order, so concurrent commits cannot deadlock on them) and
 * answers, in input order, which charges their balances cover (earlier charges of one pubkey
 * first) and what was left for each before it. A charge that is not covered fails alone; the rest of the batch goes on, and
 * debitEvents (or debitForEvent) for the covered ones cannot fail on the balance while the rows
 * are locked.
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
