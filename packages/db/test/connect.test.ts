import { mkdtemp, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sql, type Kysely } from 'kysely';
import pg from 'pg';
import { migrations, openDatabase, storeEvents, queryEvents, type Database, type Schema } from '../src/index.ts';
import { author, backends, createTestDatabase, mk, TEST_DATABASE_URL, type Opened } from './backends.ts';

describe.each(backends)('database on $name', (backend) => {
  let opened: Opened;
  let db: Database;

  beforeAll(async () => {
    opened = await backend.open();
    db = opened.db;
  });

  afterAll(async () => {
    await opened?.cleanup();
  });

  it('reports its kind', () => {
    expect(db.kind).toBe(backend.name);
  });

  it('migrate() is idempotent', async () => {
    await db.migrate();
    await db.migrate();
    const { rows } = await sql<{ name: string }>`SELECT name FROM kysely_migration ORDER BY name`.execute(db.kysely);
    expect(rows.map((r) => r.name)).toEqual(Object.keys(migrations));
    const tables = await sql<{ table_name: string }>`
      SELECT table_name FROM information_schema.tables WHERE table_schema = 'public' ORDER BY table_name`.execute(db.kysely);
    expect(tables.rows.map((r) => r.table_name)).toEqual(expect.arrayContaining(['deletions', 'event_tags', 'events', 'kysely_migration']));
  });

  it('creates the indexes the queries rely on', async () => {
    const { rows } = await sql<{ indexname: string }>`
      SELECT indexname FROM pg_indexes WHERE schemaname = 'public' ORDER BY indexname`.execute(db.kysely);
    expect(rows.map((r) => r.indexname)).toEqual(
      expect.arrayContaining([
        'events_pkey',
        'events_created_at_id_idx',
        'events_pubkey_created_at_id_idx',
        'events_kind_created_at_id_idx',
        'events_pubkey_kind_created_at_id_idx',
        'events_expires_at_idx',
        'events_address_idx',
        'event_tags_name_value_created_at_id_idx',
        'event_tags_event_id_idx',
        'deletions_pkey',
      ]),
    );
  });

  it('returns bigint columns as JS numbers', async () => {
    const { rows } = await sql<{ a: unknown; n: unknown }>`SELECT 1700000000123::int8 AS a, count(*) AS n FROM events`.execute(db.kysely);
    expect(rows[0]).toEqual({ a: 1700000000123, n: 0 });
    // The override is per pool: the process-wide pg parser is untouched.
    expect(pg.types.getTypeParser(20, 'text')('5')).toBe('5');
  });

  it('serves concurrent queries and transactions on the same handle', async () => {
    const a = author();
    const items = Array.from({ length: 20 }, (_, i) => mk(a, { created_at: 100 + i }));
    const work = items.map((it, i) =>
      i % 2 === 0 ? storeEvents(db.kysely, [it], 0) : queryEvents(db.kysely, [{ authors: [a.pubkey], limit: 5 }], 0),
    );
    await Promise.all(work);
    expect(await queryEvents(db.kysely, [{ authors: [a.pubkey], limit: 100 }], 0)).toHaveLength(10);
  });
});

describe('PGlite persistence', () => {
  it('keeps data in <dataDir>/pglite across reopen', async () => {
    const dataDir = await mkdtemp(join(tmpdir(), 'paidrelay-db-persist-'));
    try {
      const first = await openDatabase({ dataDir: join(dataDir, 'nested', 'dir') });
      await first.migrate();
      const e = mk(author());
      expect(await storeEvents(first.kysely, [e], 0)).toEqual([{ status: 'stored' }]);
      await first.close();
      await first.close(); // idempotent
      expect((await stat(join(dataDir, 'nested', 'dir', 'pglite'))).isDirectory()).toBe(true);

      const second = await openDatabase({ dataDir: join(dataDir, 'nested', 'dir') });
      await second.migrate();
      expect(await queryEvents(second.kysely, [{ ids: [e.event.id], limit: 1 }], 0)).toEqual([e.raw]);
      await second.close();
    } finally {
      await rm(dataDir, { recursive: true, force: true });
    }
  });
});

describe.runIf(TEST_DATABASE_URL !== undefined)('Postgres prepared reads', () => {
  it('a one-filter read runs as a prepared statement, one per shape and limit step', async () => {
    const { url, drop } = await createTestDatabase(TEST_DATABASE_URL as string);
    const db = await openDatabase({ databaseUrl: url, dataDir: tmpdir(), poolSize: 1 });
    try {
      await db.migrate();
      const a = author();
      await storeEvents(db.kysely, [mk(a), mk(a)], 0);
      for (const limit of [1, 1, 7, 9, 10])
        expect(await queryEvents(db.kysely, [{ authors: [a.pubkey], limit }], 0)).toHaveLength(Math.min(limit, 2));
      // One connection: the reads it prepared (limits 7, 9 and 10 share the step 10; the store's
      // own statements are prepared too, and not counted here).
      const { rows } = await sql<{ n: number }>`SELECT count(*) AS n FROM pg_prepared_statements
        WHERE statement LIKE '%SELECT q.raw%'`.execute(db.kysely);
      expect(rows[0].n).toBe(2);
    } finally {
      await db.close();
      await drop();
    }
  });
});

describe.runIf(TEST_DATABASE_URL !== undefined)('Postgres generic plans for REQ reads', () => {
  it('reads asked as generic run on connections that keep one plan per statement; other connections plan as Postgres chooses', async () => {
    const { url, drop } = await createTestDatabase(TEST_DATABASE_URL as string);
    const db = await openDatabase({ databaseUrl: url, dataDir: tmpdir(), poolSize: 1 });
    try {
      await db.migrate();
      const mode = async (k: Kysely<Schema>) =>
        (await sql<{ plan_cache_mode: string }>`SHOW plan_cache_mode`.execute(k)).rows[0].plan_cache_mode;
      expect(await db.read(mode, { generic: true })).toBe('force_generic_plan');
      expect(await db.read(mode)).toBe('auto');
      expect(await mode(db.kysely)).toBe('auto');

      const a = author();
      await storeEvents(db.kysely, [mk(a), mk(a, { tags: [['t', 'x']] })], 0);
      for (let i = 0; i < 6; i++) {
        expect(await db.read((k) => queryEvents(k, [{ '#t': ['x'], limit: 5 }], 0), { generic: true })).toHaveLength(1);
        expect(await queryEvents(db.kysely, [{ '#t': ['x'], limit: 5 }], 0)).toHaveLength(1);
      }
      // The tag read's statement on each connection (one each: poolSize 1): generic plans only
      // on the generic one; the other plans each execution for its values (Postgres's choice here).
      const plans = async (k: Kysely<Schema>) =>
        (
          await sql<{
            generic_plans: number;
            custom_plans: number;
          }>`SELECT generic_plans::int, custom_plans::int FROM pg_prepared_statements
            WHERE statement LIKE '%event_tags t%'`.execute(k)
        ).rows;
      expect(await db.read(plans, { generic: true })).toEqual([{ generic_plans: 6, custom_plans: 0 }]);
      expect((await plans(db.kysely))[0].custom_plans).toBeGreaterThan(0);
    } finally {
      await db.close();
      await drop();
    }
  });
});

describe.runIf(TEST_DATABASE_URL !== undefined)('Postgres migrations across replicas', () => {
  it('several replicas migrating a fresh database at once do not race', async () => {
    const { url, drop } = await createTestDatabase(TEST_DATABASE_URL as string);
    const replicas = await Promise.all([1, 2, 3, 4].map(() => openDatabase({ databaseUrl: url, dataDir: tmpdir(), poolSize: 2 })));
    try {
      await Promise.all(replicas.map((r) => r.migrate()));
      const { rows } = await sql<{ n: number }>`SELECT count(*) AS n FROM kysely_migration`.execute(replicas[0].kysely);
      expect(rows[0].n).toBe(Object.keys(migrations).length);
    } finally {
      await Promise.all(replicas.map((r) => r.close()));
      await drop();
    }
  });

  it('migrates with a pool of one connection', async () => {
    const { url, drop } = await createTestDatabase(TEST_DATABASE_URL as string);
    const db = await openDatabase({ databaseUrl: url, dataDir: tmpdir(), poolSize: 1 });
    try {
      await db.migrate();
      await db.migrate();
    } finally {
      await db.close();
      await drop();
    }
  });
});

describe.runIf(TEST_DATABASE_URL !== undefined)('Postgres connection faults', () => {
  it('a checked-out connection killed by the server is reported, not thrown at the process', async () => {
    const { url, drop } = await createTestDatabase(TEST_DATABASE_URL as string);
    const errors: Error[] = [];
    const uncaught: unknown[] = [];
    const onUncaught = (err: unknown) => uncaught.push(err);
    process.on('uncaughtException', onUncaught);
    const db = await openDatabase({ databaseUrl: url, dataDir: tmpdir(), poolSize: 2, onPoolError: (e) => errors.push(e) });
    const admin = new pg.Client({ connectionString: TEST_DATABASE_URL });
    await admin.connect();
    try {
      await db.migrate();
      // Between two statements of a transaction the client is checked out and no query is
      // active: the server's FATAL reaches only the client's own 'error' event.
      const inTransaction = db.kysely.transaction().execute(async (trx) => {
        const { rows } = await sql<{ pid: number }>`SELECT pg_backend_pid() AS pid`.execute(trx);
        await admin.query('SELECT pg_terminate_backend($1)', [rows[0].pid]);
        await new Promise((r) => setTimeout(r, 300));
        await sql`SELECT 1`.execute(trx);
      });
      await expect(inTransaction).rejects.toThrow();
      expect(uncaught).toEqual([]);
      // The server's FATAL, then the socket closing: each reported once, whoever else saw it.
      expect(errors.map((e) => e.message)).toEqual([
        'terminating connection due to administrator command',
        'Connection terminated unexpectedly',
      ]);
      // The pool carries on with a new connection.
      const { rows } = await sql<{ n: number }>`SELECT 2 AS n`.execute(db.kysely);
      expect(rows).toEqual([{ n: 2 }]);
    } finally {
      process.off('uncaughtException', onUncaught);
      await admin.end();
      await db.close();
      await drop();
    }
  });

  it('statement and query limits apply to queries, not to migrations (which may take long)', async () => {
    const { url, drop } = await createTestDatabase(TEST_DATABASE_URL as string);
    const db = await openDatabase({ databaseUrl: url, dataDir: tmpdir(), poolSize: 2, statementTimeoutMs: 200, queryTimeoutMs: 5000 });
    try {
      // Another replica holds the migration lock for 600 ms: migrate() waits for it, far longer
      // than the pool's 200 ms statement limit, and must not be cancelled by it.
      const other = new pg.Client({ connectionString: url });
      await other.connect();
      await other.query('SELECT pg_advisory_lock(7305911843224571::bigint)');
      const release = setTimeout(
        () => void other.query('SELECT pg_advisory_unlock(7305911843224571::bigint)').then(() => other.end()),
        600,
      );
      try {
        await db.migrate();
      } finally {
        clearTimeout(release);
        await other.end().catch(() => {});
      }
      const { rows } = await sql<{ n: number }>`SELECT count(*) AS n FROM kysely_migration`.execute(db.kysely);
      expect(rows[0].n).toBe(Object.keys(migrations).length);
      await expect(sql`SELECT pg_sleep(1)`.execute(db.kysely)).rejects.toMatchObject({ code: '57014' });
    } finally {
      await db.close();
      await drop();
    }
  });
});
