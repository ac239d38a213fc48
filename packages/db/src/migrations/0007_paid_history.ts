import { sql, type Kysely, type Migration } from 'kysely';

/**
 * Spam pricing's trust from paid history, and the admission price per network:
 * - `accounts.paid_msat`: what a key has paid in all (every settled invoice of any product, as
 *   the wallet received it; admin grants are not money and do not count). Settlement adds to it
 *   in its own transaction. Backfilled from the ledger's `wallet` rows of paid invoices, which
 *   hold what was received (an overpayment included); a payer without an account row (a paid
 *   held event) gets one, as settlement now makes it.
 * - `invoices.network`: the network (IPv4 /24, IPv6 /56) the invoice was asked from, so that its
 *   settlement counts one more admission bought from that network. NULL: unknown (older rows).
 */
export const m0007_paid_history: Migration = {
  async up(db: Kysely<any>): Promise<void> {
    const statements = [
      sql`ALTER TABLE accounts ADD COLUMN paid_msat bigint NOT NULL DEFAULT 0 CHECK (paid_msat >= 0)`,
      sql`ALTER TABLE invoices ADD COLUMN network text`,
      sql`INSERT INTO accounts (pubkey, admitted, admitted_until, balance_msat, created_at, updated_at, paid_msat)
        SELECT i.pubkey, false, NULL, 0, min(i.paid_at), max(i.paid_at), sum(-l.amount_msat)
        FROM invoices i JOIN ledger l ON l.invoice_id = i.id AND l.account = 'wallet'
        WHERE i.status = 'paid'
        GROUP BY i.pubkey
        ON CONFLICT (pubkey) DO UPDATE SET paid_msat = EXCLUDED.paid_msat`,
    ];
    for (const s of statements) await s.execute(db);
  },

  async down(db: Kysely<any>): Promise<void> {
    await sql`ALTER TABLE invoices DROP COLUMN IF EXISTS network`.execute(db);
    await sql`ALTER TABLE accounts DROP COLUMN IF EXISTS paid_msat`.execute(db);
  },
};
