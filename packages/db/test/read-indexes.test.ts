import { tmpdir } from 'node:os';
import { describe, expect, it } from 'vitest';
import { Migrator, sql } from 'kysely';
import pg from 'pg';
import { migrationProvider, openDatabase, storeEvents, type Database } from '../src/index.ts';
import { author, createTestDatabase, mk, TEST_DATABASE_URL } from './backends.ts';

/** Migration 0006 builds its indexes online: CREATE INDEX CONCURRENTLY, outside a transaction. */

const indexValidity = async (db: Database) => {
  const { rows } = await sql<{ name: string; valid: boolean }>`
    SELECT c.relname AS name, i.indisvalid AS valid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
    WHERE c.relname LIKE 'event%' ORDER BY 1`.execute(db.kysely);
  return Object.fromEntries(rows.map((r) => [r.name, r.valid]));
};

async function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`${what}: no answer in ${ms} ms`)), ms)));
  try {
    return await Promise.race([p, late]);
  } finally {
    clearTimeout(timer);
  }
}

describe.runIf(TEST_DATABASE_URL !== undefined)('migration 0006_read_indexes on Postgres', () => {
  it('lets writes through while it waits for a transaction in progress', async () => {
    const { url, drop } = await createTestDatabase(TEST_DATABASE_URL as string);
    const db = await openDatabase({ databaseUrl: url, dataDir: tmpdir(), poolSize: 2 });
    const writer = new pg.Client({ connectionString: url });
    try {
      await new Migrator({ db: db.kysely, provider: migrationProvider }).migrateTo('0005_settings');
      // A write in progress: an index build must wait for it. A plain CREATE INDEX would queue
      // for its SHARE lock, and every later write would queue behind that.
      await writer.connect();
      await writer.query('BEGIN');
      await writer.query(`INSERT INTO events (id, pubkey, created_at, kind, raw) VALUES ('\\x01', '\\x02', 1, 1, '{}')`);
      const migrating = db.migrate();
      const admin = new pg.Client({ connectionString: url });
      await admin.connect();
      try {
        for (let i = 0; ; i++) {
          const { rows } = await admin.query(
            `SELECT 1 FROM pg_stat_activity WHERE datname = current_database() AND query LIKE 'CREATE INDEX%' AND wait_event_type = 'Lock'`,
          );
          if (rows.length > 0) break;
          if (i > 200) throw new Error('the index build never started waiting');
          await new Promise((r) => setTimeout(r, 50));
        }
      } finally {
        await admin.end();
      }
      const [stored] = await withTimeout(storeEvents(db.kysely, [mk(author())], 2_000_000_000), 3000, 'a write during the index build');
      expect(stored.status).toBe('stored');
      await writer.query('COMMIT');
      await withTimeout(migrating, 30_000, 'the migration');
      const valid = await indexValidity(db);
      expect(valid.events_pubkey_kind_created_at_id_idx).toBe(true);
      expect(valid.event_tags_name_value_created_at_id_idx).toBe(true);
      expect(valid.events_pubkey_kind_created_at_idx).toBeUndefined();
    } finally {
      await writer.end().catch(() => {});
      await db.close();
      await drop();
    }
  });

  it('an index left invalid by an interrupted build is built again', async () => {
    const { url, drop } = await createTestDatabase(TEST_DATABASE_URL as string);
    const db = await openDatabase({ databaseUrl: url, dataDir: tmpdir(), poolSize: 2 });
    try {
      await new Migrator({ db: db.kysely, provider: migrationProvider }).migrateTo('0005_settings');
      // What a CREATE INDEX CONCURRENTLY cut short leaves behind: the index, marked invalid.
      await sql`CREATE INDEX events_created_at_id_idx ON events (created_at DESC, id)`.execute(db.kysely);
      await sql`UPDATE pg_index SET indisvalid = false WHERE indexrelid = 'events_created_at_id_idx'::regclass`.execute(db.kysely);
      expect((await indexValidity(db)).events_created_at_id_idx).toBe(false);
      await db.migrate();
      expect((await indexValidity(db)).events_created_at_id_idx).toBe(true);
    } finally {
      await db.close();
      await drop();
    }
  });
});
