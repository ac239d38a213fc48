import { createHash } from 'node:crypto';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { PGlite } from '@electric-sql/pglite';
import { Kysely, Migrator, PostgresDialect, sql } from 'kysely';
import pg from 'pg';
import { migrationProvider, migrations } from './migrations/index.ts';
import { PGliteDialect } from './pglite-dialect.ts';
import { readRouter, replicaName, type ReadRouter, type ReplicaEvents } from './replicas.ts';
import type { Schema } from './schema.ts';

export type Database = {
  /** The primary: writes, payments, and every read that must see its own writes. */
  kysely: Kysely<Schema>;
  /**
   * Runs a read that a read replica may serve (REQ and COUNT): on the next healthy replica of
   * `readDatabaseUrls`, else on the primary; a replica that cannot be reached sends the read to
   * the primary (see replicas.ts). `{ generic: true }` (REQ's `queryEvents`): on connections
   * that keep one generic plan per prepared statement (GENERIC_PLANS).
   */
  read: ReadRouter['read'];
  /** The read replicas and whether reads go to each now (none without readDatabaseUrls). */
  replicas: ReadRouter['replicas'];
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

export type OpenDatabaseOptions = ReplicaEvents & {
  /** postgres://... ; without it an embedded PGlite database is used. */
  databaseUrl?: string;
  /** Streaming replicas of databaseUrl (postgres://...) for reads that may lag a little. */
  readDatabaseUrls?: string[];
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
/** How often a replica waiting for another's migrations asks for the lock again. */
const MIGRATION_LOCK_POLL_MS = 100;

/** The settings of the shared config that the database takes (structurally, so db does not depend on config). */
export type DatabaseSettings = {
  DATABASE_URL?: string;
  READ_DATABASE_URL?: string[];
  DATA_DIR: string;
  DATABASE_POOL_SIZE: number;
  DATABASE_STATEMENT_TIMEOUT_MS: number;
  DATABASE_QUERY_TIMEOUT_MS: number;
  DATABASE_CONNECT_TIMEOUT_MS: number;
};

/** Every app opens its database the same way: from the shared settings, errors of lost connections logged. */
export function databaseOptions(
  config: DatabaseSettings,
  log: { warn(obj: object, msg: string): void; info(obj: object, msg: string): void },
): OpenDatabaseOptions {
  return {
    databaseUrl: config.DATABASE_URL,
    readDatabaseUrls: config.READ_DATABASE_URL,
    dataDir: config.DATA_DIR,
    poolSize: config.DATABASE_POOL_SIZE,
    statementTimeoutMs: config.DATABASE_STATEMENT_TIMEOUT_MS,
    queryTimeoutMs: config.DATABASE_QUERY_TIMEOUT_MS,
    connectTimeoutMs: config.DATABASE_CONNECT_TIMEOUT_MS,
    onPoolError: (err) => log.warn({ err }, 'database connection lost'),
    onReplicaChange: (replica, healthy, err) =>
      healthy
        ? log.info({ replica }, 'read replica answers again: reads go back to it')
        : log.warn({ err, replica }, 'read replica failed: its reads go to the primary'),
  };
}

export async function openDatabase(opts: OpenDatabaseOptions): Promise<Database> {
  if (opts.databaseUrl) return openPostgres(opts.databaseUrl, opts);
  if (opts.readDatabaseUrls?.length) throw new Error('READ_DATABASE_URL needs DATABASE_URL (replicas of a Postgres primary)');
  return openPGlite(opts.dataDir);
}

/**
 * Runs the pending migrations one at a time: each in its own transaction with its bookkeeping
 * row, except an online one (CREATE INDEX CONCURRENTLY cannot run in a transaction), which runs
 * on its own and is written so that running it again after an interruption is safe.
 */
async function runMigrations(db: Kysely<any>): Promise<void> {
  for (;;) {
    const next = (await new Migrator({ db, provider: migrationProvider }).getMigrations()).find((m) => m.executedAt === undefined);
    if (!next) return;
    const online = migrations[next.name]?.online === true;
    const { error, results } = await new Migrator({ db, provider: migrationProvider, disableTransactions: online }).migrateTo(next.name);
    if (error) {
      const failed = results?.find((r) => r.status === 'Error');
      const where = failed ? ` (migration ${failed.migrationName})` : '';
      throw new Error(`database migration failed${where}: ${error instanceof Error ? error.message : String(error)}`, {
        cause: error,
      });
    }
  }
}

/** Per-pool type parsing: other users of `pg` in the process keep the global defaults. */
const types = {
  getTypeParser: ((oid: number, format?: 'text' | 'binary') => {
    if (oid === INT8_OID && format !== 'binary') return parseInt8;
    return format === 'binary' ? pg.types.getTypeParser(oid, 'binary') : pg.types.getTypeParser(oid, 'text');
  }) as typeof pg.types.getTypeParser,
};

/**
 * SQL that starts with this comment runs as a named prepared statement: parsed once per
 * connection, and once Postgres finds a generic plan as good as the custom ones (after five
 * runs), planned once too. For queries whose text depends only on their shape (every value a
 * parameter): the one-filter reads of events-query.ts and the statements of a group commit
 * (events-write.ts). PGlite runs it as it is.
 */
export const PREPARED = '/* prepared */ ';

/**
 * Statement names by text, shared by every connection: a marked query's text is one of a few
 * shapes, so its name is hashed once, not at every run (the write path's texts are kilobytes).
 * Bounded all the same; past the bound names are hashed again, as before.
 */
const preparedNames = new Map<string, string>();
const PREPARED_NAMES_MAX = 2000;

export function preparedName(text: string): string {
  let name = preparedNames.get(text);
  if (name === undefined) {
    name = `p${createHash('sha1').update(text).digest('hex').slice(0, 24)}`;
    if (preparedNames.size < PREPARED_NAMES_MAX) preparedNames.set(text, name);
  }
  return name;
}

/** Marked queries go out under a name derived from their text (pg parses each name once per connection). */
function prepareMarked(client: pg.PoolClient): void {
  const query = client.query.bind(client) as (...args: unknown[]) => unknown;
  (client as unknown as { query: (...args: unknown[]) => unknown }).query = (...args: unknown[]) => {
    const text = args[0];
    if (typeof text === 'string' && text.startsWith(PREPARED)) args[0] = { name: preparedName(text), text };
    return query(...args);
  };
}

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

/**
 * The session setting of the connections that run REQs' reads (`read(fn, { generic: true })`).
 * Postgres plans a prepared statement anew for each execution while that plan is estimated
 * cheaper than its generic one, and for the read path's statements it always was (an `#e`
 * read: 170 us of planning for 80 us of execution, every time). Those statements are built so
 * that their shape fixes the plan (one index scan per value, ordered as the index, a literal
 * limit), so the generic plan is the one wanted. Not set on the other connections: their
 * unnamed statements with parameters (a COUNT over a time range, the admin pages' lists) need
 * the values to be planned well.
 */
export const GENERIC_PLANS = '-c plan_cache_mode=force_generic_plan';

function createPool(
  databaseUrl: string,
  max: number,
  limits: { statement?: number; query?: number; connect?: number },
  report: (err: Error) => void,
  options?: string,
): pg.Pool {
  const pool = new pg.Pool({
    connectionString: databaseUrl,
    max,
    types,
    keepAlive: true,
    ...(options ? { options } : {}),
    ...(limits.connect ? { connectionTimeoutMillis: limits.connect } : {}),
    ...(limits.statement ? { statement_timeout: limits.statement } : {}),
    ...(limits.query ? { query_timeout: limits.query } : {}),
  });
  // Idle clients' errors reach the pool; a checked-out client's only the client itself (with no
  // listener Node throws `Unhandled 'error' event` and the process dies): listen on both.
  pool.on('error', report);
  pool.on('connect', (client) => {
    client.on('error', report);
    prepareMarked(client);
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
  const size = opts.poolSize ?? 10;
  const pool = createPool(databaseUrl, size, limits, report);
  const kysely = new Kysely<Schema>({ dialect: new PostgresDialect({ pool }) });
  // A second pool per server for REQs' reads (GENERIC_PLANS); its connections open when used.
  const genericOf = (url: string) =>
    new Kysely<Schema>({ dialect: new PostgresDialect({ pool: createPool(url, size, limits, report, GENERIC_PLANS) }) });
  const replicas = (opts.readDatabaseUrls ?? []).map((url) => ({
    name: replicaName(url),
    kysely: new Kysely<Schema>({ dialect: new PostgresDialect({ pool: createPool(url, size, limits, report) }) }),
    generic: genericOf(url),
  }));
  const router = readRouter({ kysely, generic: genericOf(databaseUrl) }, replicas, opts);

  return {
    kysely,
    read: router.read,
    replicas: router.replicas,
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
        // The others poll for it rather than wait inside a statement: CREATE INDEX CONCURRENTLY
        // waits for every open statement's snapshot, a blocked lock call included (a deadlock).
        await migrator.connection().execute(async (conn) => {
          for (;;) {
            const { rows } = await sql<{ locked: boolean }>`SELECT pg_try_advisory_lock(${MIGRATION_LOCK_KEY}::bigint) AS locked`.execute(
              conn,
            );
            if (rows[0]?.locked) break;
            await new Promise((r) => setTimeout(r, MIGRATION_LOCK_POLL_MS));
          }
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
    close: once(async () => {
      await router.close();
      await kysely.destroy();
    }),
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
    // One session: its plans are as Postgres chooses them.
    read: (fn) => fn(kysely),
    replicas: () => [],
    kind: 'pglite',
    async migrate() {
      // One session in one process: the driver's mutex already serialises everything.
      await runMigrations(kysely);
    },
    isReady: readinessProbe(() => sql`select 1`.execute(kysely)),
    close: once(() => kysely.destroy()),
  };
}
