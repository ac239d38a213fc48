import { sql, type Kysely, type Migration } from 'kysely';

/**
 * Money: accounts (admission state and prepaid balance), Lightning invoices, the double-entry
 * ledger, and events held until they are paid for. Amounts are integer millisatoshis (bigint),
 * times are unix seconds (bigint), ids and pubkeys are 32-byte bytea. One statement per
 * `execute` (PGlite's extended protocol allows only one).
 *
 * The database itself guards the money rules, so that a bug in application code fails a
 * transaction instead of corrupting the books:
 * - `accounts.balance_msat >= 0` (a debit can never overdraw, even when racing);
 * - every ledger transaction (`txid`) sums to zero, checked at commit by a deferred constraint
 *   trigger, so the whole ledger sums to zero too;
 * - ledger rows are append-only (UPDATE and DELETE raise; corrections are new transactions);
 * - one row per (txid, account): settling an invoice twice (txid `invoice:<id>`) cannot write
 *   twice, and an event's publication price is debited at most once (unique partial index).
 */
export const m0002_payments: Migration = {
  async up(db: Kysely<any>): Promise<void> {
    const statements = [
      sql`CREATE TABLE accounts (
        pubkey bytea PRIMARY KEY CHECK (octet_length(pubkey) = 32),
        admitted boolean NOT NULL DEFAULT false,
        admitted_until bigint,
        balance_msat bigint NOT NULL DEFAULT 0 CHECK (balance_msat >= 0),
        created_at bigint NOT NULL,
        updated_at bigint NOT NULL
      )`,
      sql`CREATE INDEX accounts_updated_at_idx ON accounts (updated_at)`,

      sql`CREATE TABLE invoices (
        id text PRIMARY KEY CHECK (id ~ '^[A-Za-z0-9_-]{1,64}$'),
        payment_hash text NOT NULL UNIQUE CHECK (payment_hash ~ '^[0-9a-f]{64}$'),
        bolt11 text NOT NULL,
        pubkey bytea NOT NULL CHECK (octet_length(pubkey) = 32),
        product text NOT NULL CHECK (product IN ('admission', 'subscription', 'credit', 'event', 'zap')),
        amount_msat bigint NOT NULL CHECK (amount_msat > 0),
        status text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'paid', 'expired')),
        created_at bigint NOT NULL,
        expires_at bigint NOT NULL,
        paid_at bigint,
        event_id bytea CHECK (octet_length(event_id) = 32),
        zap_request text,
        zap_receipt_id bytea CHECK (octet_length(zap_receipt_id) = 32),
        description text,
        CONSTRAINT invoices_paid_iff_paid_at CHECK ((status = 'paid') = (paid_at IS NOT NULL)),
        CONSTRAINT invoices_event_product_has_event_id CHECK ((product = 'event') = (event_id IS NOT NULL)),
        CONSTRAINT invoices_zap_product_has_request CHECK ((product = 'zap') = (zap_request IS NOT NULL)),
        CONSTRAINT invoices_receipt_only_for_paid_zap CHECK (zap_receipt_id IS NULL OR (product = 'zap' AND status = 'paid'))
      )`,
      sql`CREATE INDEX invoices_status_expires_at_idx ON invoices (status, expires_at)`,
      sql`CREATE INDEX invoices_pubkey_created_at_idx ON invoices (pubkey, created_at DESC)`,
      sql`CREATE INDEX invoices_event_id_idx ON invoices (event_id) WHERE event_id IS NOT NULL`,
      sql`CREATE INDEX invoices_zap_awaiting_receipt_idx ON invoices (paid_at)
        WHERE product = 'zap' AND status = 'paid' AND zap_receipt_id IS NULL`,

      sql`CREATE TABLE ledger (
        id bigserial PRIMARY KEY,
        txid text NOT NULL,
        account text NOT NULL CHECK (account NOT LIKE 'user:%' OR account ~ '^user:[0-9a-f]{64}$'),
        amount_msat bigint NOT NULL CHECK (amount_msat <> 0),
        invoice_id text REFERENCES invoices (id),
        event_id bytea,
        memo text NOT NULL DEFAULT '',
        created_at bigint NOT NULL,
        CONSTRAINT ledger_txid_account_key UNIQUE (txid, account)
      )`,
      sql`CREATE INDEX ledger_account_idx ON ledger (account, id)`,
      sql`CREATE INDEX ledger_invoice_id_idx ON ledger (invoice_id) WHERE invoice_id IS NOT NULL`,
      sql`CREATE UNIQUE INDEX ledger_publication_event_idx ON ledger (event_id) WHERE account = 'revenue:publication'`,

      sql`CREATE FUNCTION ledger_check_balanced() RETURNS trigger LANGUAGE plpgsql AS $$
        DECLARE s numeric;
        BEGIN
          SELECT sum(amount_msat) INTO s FROM ledger WHERE txid = NEW.txid;
          IF s IS DISTINCT FROM 0 THEN
            RAISE EXCEPTION 'ledger transaction % does not balance (sum %)', NEW.txid, s USING ERRCODE = '23514';
          END IF;
          RETURN NULL;
        END $$`,
      sql`CREATE CONSTRAINT TRIGGER ledger_balanced AFTER INSERT ON ledger
        DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION ledger_check_balanced()`,
      sql`CREATE FUNCTION ledger_reject_change() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
          RAISE EXCEPTION 'ledger rows are append-only' USING ERRCODE = '55000';
        END $$`,
      sql`CREATE TRIGGER ledger_append_only BEFORE UPDATE OR DELETE ON ledger
        FOR EACH ROW EXECUTE FUNCTION ledger_reject_change()`,

      sql`CREATE TABLE held_events (
        event_id bytea PRIMARY KEY CHECK (octet_length(event_id) = 32),
        pubkey bytea NOT NULL CHECK (octet_length(pubkey) = 32),
        kind integer NOT NULL,
        raw text NOT NULL,
        amount_msat bigint NOT NULL CHECK (amount_msat >= 0),
        created_at bigint NOT NULL,
        expires_at bigint NOT NULL
      )`,
      sql`CREATE INDEX held_events_pubkey_created_at_idx ON held_events (pubkey, created_at)`,
      sql`CREATE INDEX held_events_expires_at_idx ON held_events (expires_at)`,
    ];
    for (const s of statements) await s.execute(db);
  },

  async down(db: Kysely<any>): Promise<void> {
    await sql`DROP TABLE IF EXISTS held_events`.execute(db);
    await sql`DROP TABLE IF EXISTS ledger`.execute(db);
    await sql`DROP FUNCTION IF EXISTS ledger_check_balanced()`.execute(db);
    await sql`DROP FUNCTION IF EXISTS ledger_reject_change()`.execute(db);
    await sql`DROP TABLE IF EXISTS invoices`.execute(db);
    await sql`DROP TABLE IF EXISTS accounts`.execute(db);
  },
};
