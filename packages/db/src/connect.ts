import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { PGlite } from '@electric-sql/pglite';
import { Kysely, Migrator, PostgresDialect, sql } from 'kysely';
import pg from 'pg';
import { migrationProvider } from './migrations/index.ts';
import { PGliteDialect } from './pglite-dialect.ts';
import type { Schema } from './schema.ts';

export type Database = {
  kysely: Kysely<Schema>;
  kind: 'postgres' | 'pglite';
  /** Brings the schema to the latest migration. Safe to run concurrently from several replicas. */
  migrate(): Promise<void>;
  close(): Promise<void>;
};

export type OpenDatabaseOptions = {
  /** postgres://... ; without it an embedded PGlite database is used. */
  databaseUrl?: string;
  /** Folder for local state; PGlite lives in `${dataDir}/pglite`. */
  dataDir: string;
  /** Maximum connections of the pg pool (default 10). Ignored for PGlite (one session). */
  poolSize?: number;
  /**
   * Errors of idle pooled connections (e.g. the server restarted). They must be handled or
   * Node would crash the process; the pool replaces the connection on next use. Default: ignore.
   */
  onPoolError?: (err: Error) => void;
};

const INT8_OID = 20;

/** int8 (bigint, count(*)) as a JS number: timestamps and counts stay far below 2^53. */
function parseInt8(value: string): number {
  return Number(value);
}

/** Arbitrary constant identifying this schema's migration lock (session-level advisory lock). */
const MIGRATION_LOCK_KEY = '7305911843224571';

export async function openDatabase(opts: OpenDatabaseOptions): Promise<Database> {
  if (opts.databaseUrl) return openPostgres(opts.databaseUrl, opts);
  return openPGlite(opts.dataDir);
}

async function runMigrations(db: Kysely<any>): Promise<void> {
  const migrator = new Migrator({ db, provider: migrationProvider });
  const { error, results } = await migrator.migrateToLatest();
  if (error) {
    const failed = results?.find((r) => r.status === 'Error');
    const where = failed ? ` (migration ${failed.migrationName})` : '';
    throw new Error(`database migration failed${where}: ${error instanceof Error ? error.message : String(error)}`, {
      cause: error,
    });
  }
}

function openPostgres(databaseUrl: string, opts: OpenDatabaseOptions): Database {
  const pool = new pg.Pool({
    connectionString: databaseUrl,
    max: opts.poolSize ?? 10,
    // Per-pool type parsing: other users of `pg` in the process keep the global defaults.
    types: {
      getTypeParser: ((oid: number, format?: 'text' | 'binary') => {
        if (oid === INT8_OID && format !== 'binary') return parseInt8;
        return format === 'binary' ? pg.types.getTypeParser(oid, 'binary') : pg.types.getTypeParser(oid, 'text');
      }) as typeof pg.types.getTypeParser,
    },
  });
  pool.on('error', (err) => opts.onPoolError?.(err));
  const kysely = new Kysely<Schema>({ dialect: new PostgresDialect({ pool }) });

  return {
    kysely,
    kind: 'postgres',
    async migrate() {
      // Several replicas may start at once: hold a session-level advisory lock on one connection
      // for the whole run (Kysely creates its bookkeeping tables before taking its own lock).
      await kysely.connection().execute(async (conn) => {
        await sql`SELECT pg_advisory_lock(${MIGRATION_LOCK_KEY}::bigint)`.execute(conn);
        try {
          await runMigrations(conn);
        } finally {
          await sql`SELECT pg_advisory_unlock(${MIGRATION_LOCK_KEY}::bigint)`.execute(conn);
        }
      });
    },
    close: once(() => kysely.destroy()),
  };
}

/** close() may be called more than once (shutdown paths often overlap). */
function once(fn: () => Promise<void>): () => Promise<void> {
  let p: Promise<void> | undefined;
  return () => (p ??= fn());
}

async function openPGlite(dataDir: string): Promise<Database> {
  const dir = join(dataDir, 'pglite');
  await mkdir(dir, { recursive: true });
  const pglite = await PGlite.create({ dataDir: dir, parsers: { [INT8_OID]: parseInt8 } });
  const kysely = new Kysely<Schema>({ dialect: new PGliteDialect({ pglite }) });

  return {
    kysely,
    kind: 'pglite',
    async migrate() {
      // One session in one process: the driver's mutex already serialises everything.
      await runMigrations(kysely);
    },
    close: once(() => kysely.destroy()),
  };
}
