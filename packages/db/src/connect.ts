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
  /**
   * Whether the database answers a trivial query within READY_TIMEOUT_MS (for /readyz). At
   * most one probe is in flight whatever the number of callers; its answer is kept a second.
   */
  isReady(): Promise<boolean>;
  close(): Promise<void>;
};

export type OpenDatabaseOptions = {
  /** postgres://... ; without it an embedded PGlite database is used. */
  databaseUrl?: string;
  /** Folder for local state; PGlite lives in `${dataDir}/pglite`. */
  dataDir: string;
  /** Maximum connections of the pg pool (default 10). Ignored for PGlite (one session). */
  poolSize?: number;
  /** Server-side `statement_timeout` of every pooled connection, ms (default 5000; 0: none). */
  statementTimeoutMs?: number;
  /**
   * Client-side limit on one query, ms (default 6000; 0: none). A server that stops answering
   * cannot enforce its statement_timeout; this one fires anyway, and the connection it fired on
   * is discarded (its answer may still be on the way: it can never be reused).
   */
  queryTimeoutMs?: number;
  /** Limit on opening a connection and on waiting for a free one in the pool, ms (default 5000; 0: none). */
  connectTimeoutMs?: number;
  /**
   * Errors of pooled connections, idle or checked out (the server restarted, the network cut
   * the connection): each is reported once here. They are always handled (an unhandled one
   * would crash the process): the query in flight fails, and the pool opens a new connection
   * on next use. Default: ignore.
   */
  onPoolError?: (err: Error) => void;
};

/** /readyz: how long the database may take to answer `select 1`. */
export const READY_TIMEOUT_MS = 2000;
/** /readyz: how long one answer is kept. */
const READY_CACHE_MS = 1000;

const INT8_OID = 20;

/** int8 (bigint, count(*)) as a JS number: timestamps and counts stay far below 2^53. */
function parseInt8(value: string): number {
  return Number(value);
}

/** Arbitrary constant identifying this schema's migration lock (session-level advisory lock). */
const MIGRATION_LOCK_KEY = '7305911843224571';

/** The settings of the shared config that the database takes (structurally, so db does not depend on config). */
export type DatabaseSettings = {
  DATABASE_URL?: string;
  DATA_DIR: string;
  DATABASE_POOL_SIZE: number;
  DATABASE_STATEMENT_TIMEOUT_MS: number;
  DATABASE_QUERY_TIMEOUT_MS: number;
  DATABASE_CONNECT_TIMEOUT_MS: number;
};

/** Every app opens its database the same way: from the shared settings, errors of lost connections logged. */
export function databaseOptions(config: DatabaseSettings, log: { warn(obj: object, msg: string): void }): OpenDatabaseOptions {
  return {
    databaseUrl: config.DATABASE_URL,
    dataDir: config.DATA_DIR,
    poolSize: config.DATABASE_POOL_SIZE,
    statementTimeoutMs: config.DATABASE_STATEMENT_TIMEOUT_MS,
    queryTimeoutMs: config.DATABASE_QUERY_TIMEOUT_MS,
    connectTimeoutMs: config.DATABASE_CONNECT_TIMEOUT_MS,
    onPoolError: (err) => log.warn({ err }, 'database connection lost'),
  };
}

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

/** Per-pool type parsing: other users of `pg` in the process keep the global defaults. */
const types = {
  getTypeParser: ((oid: number, format?: 'text' | 'binary') => {
    if (oid === INT8_OID && format !== 'binary') return parseInt8;
    return format === 'binary' ? pg.types.getTypeParser(oid, 'binary') : pg.types.getTypeParser(oid, 'text');
  }) as typeof pg.types.getTypeParser,
};

const isQueryTimeout = (err: unknown) => err instanceof Error && err.message === 'Query read timeout';

/**
 * pg's `query_timeout` fails the query but keeps the connection, its query still outstanding
 * (a silent server may answer it later, or never): the next query on it would wait behind it.
 * So a connection whose query timed out is ended at once (`_ending` makes the pool drop it on
 * release instead of handing it out again) and its socket destroyed.
 */
function discardOnQueryTimeout(client: pg.PoolClient): void {
  const discard = () => {
    client.end().catch(() => {});
    (client as unknown as { connection?: { stream?: { destroy(): void } } }).connection?.stream?.destroy();
  };
  const query = client.query.bind(client) as (...args: unknown[]) => unknown;
  (client as unknown as { query: (...args: unknown[]) => unknown }).query = (...args: unknown[]) => {
    const last = args.length - 1;
    const cb = args[last];
    if (typeof cb === 'function') {
      args[last] = (err: unknown, ...rest: unknown[]) => {
        if (isQueryTimeout(err)) discard();
        return (cb as (...a: unknown[]) => unknown)(err, ...rest);
      };
    }
    const result = query(...args);
    // Registered before the caller's own handlers, so the client is gone before it is released.
    if (result instanceof Promise) result.catch((err: unknown) => isQueryTimeout(err) && discard());
    return result;
  };
}

function createPool(
  databaseUrl: string,
  max: number,
  limits: { statement?: number; query?: number; connect?: number },
  report: (err: Error) => void,
): pg.Pool {
  const pool = new pg.Pool({
    connectionString: databaseUrl,
    max,
    types,
    keepAlive: true,
    ...(limits.connect ? { connectionTimeoutMillis: limits.connect } : {}),
    ...(limits.statement ? { statement_timeout: limits.statement } : {}),
    ...(limits.query ? { query_timeout: limits.query } : {}),
  });
  // Idle clients' errors reach the pool; a checked-out client's only the client itself (with no
  // listener Node throws `Unhandled 'error' event` and the process dies): listen on both.
  pool.on('error', report);
  pool.on('connect', (client) => {
    client.on('error', report);
    if (limits.query) discardOnQueryTimeout(client);
  });
  return pool;
}

/** One probe at a time, answered within `timeoutMs` (false when late), its answer kept `cacheMs`. */
export function readinessProbe(
  probe: () => Promise<unknown>,
  timeoutMs = READY_TIMEOUT_MS,
  cacheMs = READY_CACHE_MS,
): () => Promise<boolean> {
  let ok = true;
  let checkedAt = 0;
  let inFlight: Promise<boolean> | undefined;
  let since = 0;
  return async () => {
    if (Date.now() - checkedAt < cacheMs) return ok;
    if (!inFlight) {
      since = Date.now();
      inFlight = probe().then(
        () => true,
        () => false,
      );
      void inFlight.then((r) => {
        ok = r;
        checkedAt = Date.now();
        inFlight = undefined;
      });
    }
    const left = since + timeoutMs - Date.now();
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<boolean>((resolve) => {
      timer = setTimeout(
        () => {
          ok = false;
          checkedAt = Date.now();
          resolve(false);
        },
        Math.max(0, left),
      );
    });
    try {
      return await Promise.race([inFlight, late]);
    } finally {
      clearTimeout(timer);
    }
  };
}

function openPostgres(databaseUrl: string, opts: OpenDatabaseOptions): Database {
  const reported = new WeakSet<Error>();
  // The pool re-emits an idle client's error: report each once.
  const report = (err: Error) => {
    if (reported.has(err)) return;
    reported.add(err);
    try {
      opts.onPoolError?.(err);
    } catch {
      // a failing logger must not turn a handled error into a crash
    }
  };
  const limits = {
    statement: opts.statementTimeoutMs ?? 5000,
    query: opts.queryTimeoutMs ?? 6000,
    connect: opts.connectTimeoutMs ?? 5000,
  };
  const pool = createPool(databaseUrl, opts.poolSize ?? 10, limits, report);
  const kysely = new Kysely<Schema>({ dialect: new PostgresDialect({ pool }) });

  return {
    kysely,
    kind: 'postgres',
    async migrate() {
      // Its own connection, without statement or query limits: a migration, or waiting for
      // another replica's, may take longer than any query should.
      const migrator = new Kysely<Schema>({
        dialect: new PostgresDialect({ pool: createPool(databaseUrl, 1, { connect: limits.connect }, report) }),
      });
      try {
        // Several replicas may start at once: hold a session-level advisory lock on one connection
        // for the whole run (Kysely creates its bookkeeping tables before taking its own lock).
        await migrator.connection().execute(async (conn) => {
          await sql`SELECT pg_advisory_lock(${MIGRATION_LOCK_KEY}::bigint)`.execute(conn);
          try {
            await runMigrations(conn);
          } finally {
            await sql`SELECT pg_advisory_unlock(${MIGRATION_LOCK_KEY}::bigint)`.execute(conn);
          }
        });
      } finally {
        await migrator.destroy();
      }
    },
    isReady: readinessProbe(() => sql`select 1`.execute(kysely)),
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
    isReady: readinessProbe(() => sql`select 1`.execute(kysely)),
    close: once(() => kysely.destroy()),
  };
}
