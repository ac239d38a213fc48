/** Accounts: admission and the prepaid balance of a pubkey, one row each. */
import type { Kysely, Selectable } from 'kysely';
import type { AccountsTable, Schema } from '../schema.ts';
import { bufHex, hexBuf } from '../hex.ts';
import { checkHex64, checkInt } from './checks.ts';

export type AccountRow = {
  pubkey: string;
  admitted: boolean;
  admittedUntil: number | null;
  balanceMsat: number;
  /** When the account was made (unix seconds): its age, for the spam pricing's trust. */
  createdAt: number;
  /** What the key has paid in all (msat, every settled invoice; admin grants excluded): its paid history, for trust. */
  paidMsat: number;
};

/**
 * Admitted at `now`: one-time admission (no end), or a subscription that has not ended. The one
 * reading of these fields: settlement uses it on the locked row, the payment gate (through the
 * pricing package) on the relay's cache of the same rows.
 */
export function isAdmitted(account: Pick<AccountRow, 'admitted' | 'admittedUntil'> | undefined, now: number): boolean {
  return account?.admitted === true && (account.admittedUntil === null || account.admittedUntil > now);
}

export function toAccount(r: Selectable<AccountsTable>): AccountRow {
  return {
    pubkey: bufHex(r.pubkey),
    admitted: r.admitted,
    admittedUntil: r.admitted_until,
    balanceMsat: r.balance_msat,
    createdAt: Number(r.created_at),
    paidMsat: Number(r.paid_msat),
  };
}

export async function getAccount(db: Kysely<Schema>, pubkey: string): Promise<AccountRow | undefined> {
  checkHex64(pubkey, 'pubkey');
  const r = await db.selectFrom('accounts').selectAll().where('pubkey', '=', hexBuf(pubkey)).executeTakeFirst();
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
export async function lockAccount(db: Kysely<Schema>, pubkey: Buffer, now: number): Promise<Selectable<AccountsTable>> {
  await db
    .insertInto('accounts')
    .values({ pubkey, admitted: false, admitted_until: null, balance_msat: 0, created_at: now, updated_at: now })
    .onConflict((oc) => oc.column('pubkey').doNothing())
    .execute();
  return db.selectFrom('accounts').selectAll().where('pubkey', '=', pubkey).forUpdate().executeTakeFirstOrThrow();
}
