import { sql, type Kysely, type Migration } from 'kysely';

/**
 * Events, their indexed tags and NIP-09 tombstones. One statement per `execute` (PGlite runs
 * parameterised queries through the extended protocol, which allows only one statement).
 */
export const m0001_events: Migration = {
  async up(db: Kysely<any>): Promise<void> {
    const statements = [
      sql`CREATE TABLE events (
        id bytea PRIMARY KEY,
        pubkey bytea NOT NULL,
        created_at bigint NOT NULL,
        kind integer NOT NULL,
        d_tag text,
        expires_at bigint,
        raw text NOT NULL
      )`,
      sql`CREATE INDEX events_created_at_idx ON events (created_at DESC)`,
      sql`CREATE INDEX events_pubkey_created_at_idx ON events (pubkey, created_at DESC)`,
      sql`CREATE INDEX events_kind_created_at_idx ON events (kind, created_at DESC)`,
      sql`CREATE INDEX events_pubkey_kind_created_at_idx ON events (pubkey, kind, created_at DESC)`,
      sql`CREATE INDEX events_expires_at_idx ON events (expires_at) WHERE expires_at IS NOT NULL`,
      // One row per replaceable (pubkey, kind, '') and addressable (pubkey, kind, d) address.
      sql`CREATE UNIQUE INDEX events_address_idx ON events (pubkey, kind, d_tag) WHERE d_tag IS NOT NULL`,

      sql`CREATE TABLE event_tags (
        event_id bytea NOT NULL,
        name text NOT NULL,
        value text NOT NULL,
        created_at bigint NOT NULL,
        kind integer NOT NULL
      )`,
      sql`CREATE INDEX event_tags_name_value_created_at_idx ON event_tags (name, value, created_at DESC)`,
      sql`CREATE INDEX event_tags_event_id_idx ON event_tags (event_id)`,

      sql`CREATE TABLE deletions (
        target text NOT NULL,
        pubkey bytea NOT NULL,
        created_at bigint NOT NULL,
        deletion_id bytea NOT NULL,
        PRIMARY KEY (target, pubkey)
      )`,
    ];
    for (const s of statements) await s.execute(db);
  },

  async down(db: Kysely<any>): Promise<void> {
    await sql`DROP TABLE IF EXISTS deletions`.execute(db);
    await sql`DROP TABLE IF EXISTS event_tags`.execute(db);
    await sql`DROP TABLE IF EXISTS events`.execute(db);
  },
};
