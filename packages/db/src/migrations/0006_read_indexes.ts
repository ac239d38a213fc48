import { sql, type Kysely } from 'kysely';
import type { OnlineMigration } from './index.ts';

/**
 * Indexes in the read order `created_at DESC, id` for every access path (ids, authors, authors
 * and kinds, kinds, tag values, everything), so that one index scan per author, kind or tag
 * value returns its events already in the order a REQ wants, and stops at the limit, ties on
 * created_at included (queries order by created_at DESC, id). They replace the indexes of
 * 0001_events that lacked the id (a tie then meant reading and sorting every tied row). The
 * columns they include let a scan per author or kind run on the index alone (events-query.ts).
 *
 * Online: built with CREATE INDEX CONCURRENTLY outside a transaction, so a store of millions of
 * events keeps taking writes while they build. Each step can be run again: a build that was
 * interrupted leaves an invalid index, which is dropped and built again.
 */
const INDEXES: [name: string, definition: string][] = [
  ['events_created_at_id_idx', 'events (created_at DESC, id)'],
  ['events_pubkey_created_at_id_idx', 'events (pubkey, created_at DESC, id) INCLUDE (kind, expires_at)'],
  ['events_kind_created_at_id_idx', 'events (kind, created_at DESC, id) INCLUDE (expires_at)'],
  ['events_pubkey_kind_created_at_id_idx', 'events (pubkey, kind, created_at DESC, id) INCLUDE (expires_at)'],
  ['event_tags_name_value_created_at_id_idx', 'event_tags (name, value, created_at DESC, event_id) INCLUDE (kind)'],
];

/** The 0001_events indexes the ones above replace, and how to build them again (down). */
const REPLACED: [name: string, definition: string][] = [
  ['events_created_at_idx', 'events (created_at DESC)'],
  ['events_pubkey_created_at_idx', 'events (pubkey, created_at DESC)'],
  ['events_kind_created_at_idx', 'events (kind, created_at DESC)'],
  ['events_pubkey_kind_created_at_idx', 'events (pubkey, kind, created_at DESC)'],
  ['event_tags_name_value_created_at_idx', 'event_tags (name, value, created_at DESC)'],
];

async function buildIndex(db: Kysely<any>, name: string, definition: string): Promise<void> {
  const { rows } = await sql<{ valid: boolean }>`
    SELECT i.indisvalid AS valid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
    WHERE c.relname = ${name} AND c.relnamespace = current_schema()::regnamespace`.execute(db);
  if (rows[0]?.valid) return;
  if (rows.length > 0) await sql`DROP INDEX CONCURRENTLY IF EXISTS ${sql.id(name)}`.execute(db);
  await sql`CREATE INDEX CONCURRENTLY ${sql.id(name)} ON ${sql.raw(definition)}`.execute(db);
}

export const m0006_read_indexes: OnlineMigration = {
  online: true,
  async up(db: Kysely<any>): Promise<void> {
    for (const [name, definition] of INDEXES) await buildIndex(db, name, definition);
    for (const [name] of REPLACED) await sql`DROP INDEX CONCURRENTLY IF EXISTS ${sql.id(name)}`.execute(db);
  },

  async down(db: Kysely<any>): Promise<void> {
    for (const [name, definition] of REPLACED) await buildIndex(db, name, definition);
    for (const [name] of INDEXES) await sql`DROP INDEX CONCURRENTLY IF EXISTS ${sql.id(name)}`.execute(db);
  },
};
