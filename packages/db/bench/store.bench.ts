/**
 * Write throughput of storeEvents(): batches of 1, 50 and 200 kind-1 events with 3 tags each,
 * against a fresh database (a new Postgres database next to TEST_DATABASE_URL, dropped after;
 * or a temporary PGlite folder). Also reads: a tag query and an author query.
 *
 *   TEST_DATABASE_URL=postgres://postgres@127.0.0.1:5432/test npx tsx packages/db/bench/store.bench.ts
 *   npx tsx packages/db/bench/store.bench.ts            # PGlite
 *
 * Options (env): BENCH_EVENTS (events per batch size, default 10000; batch size 1 uses a fifth),
 * BENCH_CONCURRENCY (concurrent writers, default 1; the relay's group commit uses one).
 *
 * Events are not signed (the store does not verify signatures); ids are random 32-byte values.
 * Prints one JSON object.
 */
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { openDatabase, queryEvents, storeEvents, type Database } from '../src/index.ts';
import type { NostrEvent, StoreItem } from '../src/types.ts';

const TOTAL = Number(process.env.BENCH_EVENTS ?? 10_000);
const CONCURRENCY = Math.max(1, Number(process.env.BENCH_CONCURRENCY ?? 1));
const URL_ = process.env.TEST_DATABASE_URL || undefined;

const authors = Array.from({ length: 500 }, () => randomBytes(32).toString('hex'));
let clock = 1_700_000_000;

function makeEvent(): StoreItem {
  const pubkey = authors[Math.floor(Math.random() * authors.length)];
  const event: NostrEvent = {
    id: randomBytes(32).toString('hex'),
    pubkey,
    created_at: clock++,
    kind: 1,
    tags: [
      ['e', randomBytes(32).toString('hex')],
      ['p', authors[Math.floor(Math.random() * authors.length)]],
      ['t', `topic${Math.floor(Math.random() * 50)}`],
    ],
    content: `benchmark note ${randomBytes(24).toString('base64')}`,
    sig: randomBytes(64).toString('hex'),
  };
  return { event, raw: JSON.stringify(event) };
}

function quantile(sorted: number[], q: number): number {
  if (sorted.length === 0) return 0;
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))];
}

const round = (x: number, d = 2) => Math.round(x * 10 ** d) / 10 ** d;

async function benchBatch(db: Database, batchSize: number, total: number) {
  const batches: StoreItem[][] = [];
  for (let i = 0; i < Math.ceil(total / batchSize); i++) batches.push(Array.from({ length: batchSize }, makeEvent));
  // warm-up
  for (let i = 0; i < 3; i++) await storeEvents(db.kysely, Array.from({ length: batchSize }, makeEvent), 0);

  const latencies: number[] = [];
  let next = 0;
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: CONCURRENCY }, async () => {
      while (next < batches.length) {
        const batch = batches[next++];
        const s = performance.now();
        const out = await storeEvents(db.kysely, batch, 0);
        latencies.push(performance.now() - s);
        if (out.some((o) => o.status !== 'stored')) throw new Error('unexpected outcome');
      }
    }),
  );
  const seconds = (performance.now() - t0) / 1000;
  latencies.sort((a, b) => a - b);
  const events = batches.length * batchSize;
  return {
    batchSize,
    batches: batches.length,
    events,
    eventsPerSecond: Math.round(events / seconds),
    batchMs: {
      p50: round(quantile(latencies, 0.5)),
      p90: round(quantile(latencies, 0.9)),
      p99: round(quantile(latencies, 0.99)),
      max: round(latencies[latencies.length - 1] ?? 0),
    },
  };
}

async function benchQuery(db: Database, name: string, makeFilter: () => Parameters<typeof queryEvents>[1], n = 200) {
  const lat: number[] = [];
  let rows = 0;
  for (let i = 0; i < n; i++) {
    const s = performance.now();
    rows += (await queryEvents(db.kysely, makeFilter(), 0)).length;
    lat.push(performance.now() - s);
  }
  lat.sort((a, b) => a - b);
  return { name, queries: n, avgRows: round(rows / n, 1), ms: { p50: round(quantile(lat, 0.5)), p99: round(quantile(lat, 0.99)) } };
}

async function main() {
  let cleanup: () => Promise<void>;
  let db: Database;
  let backend: string;
  if (URL_) {
    const name = `paidrelay_bench_${randomBytes(5).toString('hex')}`;
    const admin = new pg.Client({ connectionString: URL_ });
    await admin.connect();
    await admin.query(`CREATE DATABASE ${name}`);
    await admin.end();
    const u = new URL(URL_);
    u.pathname = `/${name}`;
    db = await openDatabase({ databaseUrl: u.toString(), dataDir: tmpdir(), poolSize: Math.max(2, CONCURRENCY + 1) });
    backend = 'postgres';
    cleanup = async () => {
      await db.close();
      const c = new pg.Client({ connectionString: URL_ });
      await c.connect();
      await c.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
      await c.end();
    };
  } else {
    const dataDir = await mkdtemp(join(tmpdir(), 'paidrelay-bench-'));
    db = await openDatabase({ dataDir });
    backend = 'pglite';
    cleanup = async () => {
      await db.close();
      await rm(dataDir, { recursive: true, force: true });
    };
  }
  try {
    await db.migrate();
    const writes = [];
    for (const size of [1, 50, 200]) writes.push(await benchBatch(db, size, size === 1 ? Math.ceil(TOTAL / 5) : TOTAL));
    const reads = [
      await benchQuery(db, '#t one topic, limit 100', () => [{ '#t': [`topic${Math.floor(Math.random() * 50)}`], limit: 100 }]),
      await benchQuery(db, 'authors 10 + kinds [1], limit 100', () => [
        { authors: Array.from({ length: 10 }, () => authors[Math.floor(Math.random() * authors.length)]), kinds: [1], limit: 100 },
      ]),
      await benchQuery(db, 'recent, limit 500', () => [{ limit: 500 }]),
    ];
    console.log(JSON.stringify({ backend, concurrency: CONCURRENCY, tagsPerEvent: 3, writes, reads }, null, 2));
  } finally {
    await cleanup();
  }
}

await main();
