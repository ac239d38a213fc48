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
   * (very long, or containing NUL) are replaced by a hash, see events.ts `addressD`.
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

export interface Schema {
  events: EventsTable;
  event_tags: EventTagsTable;
  deletions: DeletionsTable;
}
