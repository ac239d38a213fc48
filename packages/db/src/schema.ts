/**
 * Kysely table types for the one database schema every app shares. Later migrations append
 * tables here. Ids and pubkeys are stored as 32-byte `bytea` (half the index size of hex text);
 * the public API of this package speaks lowercase hex.
 *
 * `bigint` columns come back as JS numbers on both backends (see connect.ts).
 */

export interface EventsTable {
  /** sha256 event id, 32 bytes. */
  id: Uint8Array;
  /** author, 32 bytes. */
  pubkey: Uint8Array;
  created_at: number;
  kind: number;
  /**
   * Address discriminator: NULL for regular events, '' for replaceable events, the first `d` tag
   * value for addressable events ('' if none). Values that cannot be stored in a btree index
   * (very long, or containing NUL) are replaced by a hash, see events-write.ts `addressD`.
   * A partial unique index on (pubkey, kind, d_tag) keeps one row per address.
   */
  d_tag: string | null;
  /** NIP-40 expiration timestamp, NULL if none. */
  expires_at: number | null;
  /** The event JSON exactly as it is sent to clients. */
  raw: string;
}

export interface EventTagsTable {
  event_id: Uint8Array;
  /** Single-letter tag name. */
  name: string;
  /** The tag's first value. */
  value: string;
  /** Copies of the event's columns, so tag queries can filter and order on the tag index. */
  created_at: number;
  kind: number;
}

/**
 * Deletion tombstones (NIP-09). `target` is either an event id (64 lowercase hex chars) or an
 * address `<kind>:<pubkey>:<d>` (always contains ':'). `pubkey` is the author of the deletion
 * request: a tombstone only applies to events of that pubkey. For addresses, `created_at` is
 * the newest deletion request's created_at: versions created at or before it are refused.
 */
export interface DeletionsTable {
  target: string;
  pubkey: Uint8Array;
  created_at: number;
  /** id of the (newest) kind-5 event that wrote the tombstone. */
  deletion_id: Uint8Array;
}

/**
 * One row per pubkey that ever paid (migration 0002_payments). `balance_msat` is a materialized
 * copy of the ledger balance of account `user:<hex>`, updated in the same transaction as the
 * ledger rows (so a debit is one conditional UPDATE); CHECK (balance_msat >= 0).
 */
export interface AccountsTable {
  pubkey: Uint8Array;
  /** With admitted_until NULL: admitted forever (one-time admission). */
  admitted: boolean;
  /** Subscription end (unix seconds), or NULL. */
  admitted_until: number | null;
  balance_msat: number;
  created_at: number;
  updated_at: number;
  /** What the key has paid in all (settled invoices, msat; admin grants excluded): trust (migration 0007). */
  paid_msat: import('kysely').ColumnType<number, number | undefined, number>;
}

export type InvoiceProduct = 'admission' | 'subscription' | 'credit' | 'event' | 'zap';
export type InvoiceStatus = 'pending' | 'paid' | 'expired';

/** Lightning invoices the payments service minted; `payment_hash` is unique (lowercase hex). */
export interface InvoicesTable {
  /** Random URL-safe id (22 chars of base64url by default). */
  id: string;
  payment_hash: string;
  bolt11: string;
  /** Who is granted or credited when it is paid (for zaps: the zapper). */
  pubkey: Uint8Array;
  product: InvoiceProduct;
  amount_msat: number;
  status: InvoiceStatus;
  created_at: number;
  expires_at: number;
  paid_at: number | null;
  /** The held event it pays for (product 'event' only). */
  event_id: Uint8Array | null;
  /** The kind-9734 zap request JSON (product 'zap' only). */
  zap_request: string | null;
  /** Id of the kind-9735 receipt once published (product 'zap', paid). */
  zap_receipt_id: Uint8Array | null;
  description: string | null;
  /** The network (IPv4 /24, IPv6 /56) it was asked from: its settlement counts an admission bought there (0007). */
  network: import('kysely').ColumnType<string | null, string | null | undefined, string | null>;
}

/**
 * The double-entry ledger (append-only). Rows of one `txid` sum to zero (checked at commit);
 * an account's balance is the sum of its rows. See payments/ledger.ts for the account names.
 */
export interface LedgerTable {
  id: import('kysely').Generated<number>;
  txid: string;
  account: string;
  /** Signed, never zero. */
  amount_msat: number;
  invoice_id: string | null;
  event_id: Uint8Array | null;
  memo: import('kysely').ColumnType<string, string | undefined, never>;
  created_at: number;
}

/** Events refused for lack of payment, kept (bounded per pubkey, with a TTL) until paid. */
export interface HeldEventsTable {
  event_id: Uint8Array;
  pubkey: Uint8Array;
  kind: number;
  raw: string;
  /** The price quoted when it was held. */
  amount_msat: number;
  /** When it was held (unix seconds). */
  created_at: number;
  expires_at: number;
  /** The client's network (IPv4 address or IPv6 /64) it came from; '' when unknown. */
  ip: import('kysely').ColumnType<string, string | undefined, string>;
  /** octet_length(raw). */
  bytes: import('kysely').ColumnType<number, number | undefined, number>;
}

/** NIP-86 moderation lists (migration 0004_admin), one row per (list, value). */
export interface ModerationTable {
  list: 'banned_pubkey' | 'allowed_pubkey' | 'banned_event' | 'allowed_event' | 'allowed_kind' | 'blocked_ip';
  /** A hex pubkey or event id, a kind number or an address (as text). */
  value: string;
  reason: string;
  created_at: number;
  /** The admin's hex pubkey. */
  created_by: string;
}

/** NIP-11 texts an admin changed (relay_name, relay_description, relay_icon). */
export interface RelaySettingsTable {
  key: string;
  value: string;
  updated_at: number;
  updated_by: string;
}

/** One row per management change: who, when, which method with which params. */
export interface AdminAuditTable {
  id: import('kysely').Generated<number>;
  at: number;
  pubkey: string;
  method: string;
  params: unknown;
}

/**
 * NIP-98 authorizations already used, kept until they could no longer be valid. Keyed by the
 * signature, not the event id: two identical calls in one second sign the same id (nostr-tools
 * adds no nonce), but BIP-340 signatures are randomised and cannot be re-made without the key.
 */
export interface AdminAuthUsedTable {
  sig: string;
  expires_at: number;
}

export interface Schema {
  events: EventsTable;
  event_tags: EventTagsTable;
  deletions: DeletionsTable;
  accounts: AccountsTable;
  invoices: InvoicesTable;
  ledger: LedgerTable;
  held_events: HeldEventsTable;
  moderation: ModerationTable;
  relay_settings: RelaySettingsTable;
  admin_audit: AdminAuditTable;
  admin_auth_used: AdminAuthUsedTable;
}
