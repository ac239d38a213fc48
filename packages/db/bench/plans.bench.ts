/**
 * REQ reads planned per execution (Postgres's `auto`) against one generic plan per statement
 * (GENERIC_PLANS, what REQs use): each query shape timed on both kinds of connection,
 * alternating, on a store of your choice (e.g. the one `pnpm bench:reads` builds):
 *
 *   BENCH_DATABASE_URL=postgres://postgres@127.0.0.1:5432/paidrelay_store_1000000_5000_distinct_v1 \
 *     npx tsx packages/db/bench/plans.bench.ts
 *
 * BENCH_QUERIES (per shape, kind of connection and round; default 200), BENCH_ROUNDS (3).
 * Authors, ids and `#e` values are picked from the store; `#t` values are the bench store's
 * topics (`topic0`..`topic19`). Prints a line per shape (median µs per query of the rounds), then
 * one JSON object.
 */
import { tmpdir } from 'node:os';
import { sql } from 'kysely';
import { openDatabase, queryEvents, type Filter } from '../src/index.ts';

const url = process.env.BENCH_DATABASE_URL;
if (!url) throw new Error('set BENCH_DATABASE_URL to a database holding a store of events');
const N = Number(process.env.BENCH_QUERIES ?? 200);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);

const db = await openDatabase({ databaseUrl: url, dataDir: tmpdir(), poolSize: 1 });
const rows = async <T>(q: string) => (await sql.raw<T>(q).execute(db.kysely)).rows;
const pks = (await rows<{ p: string }>(`SELECT encode(pubkey, 'hex') AS p FROM events TABLESAMPLE SYSTEM (1) LIMIT 40`)).map((r) => r.p);
const ids = (await rows<{ i: string }>(`SELECT encode(id, 'hex') AS i FROM events TABLESAMPLE SYSTEM (1) LIMIT 40`)).map((r) => r.i);
const es = (await rows<{ v: string }>(`SELECT value AS v FROM event_tags TABLESAMPLE SYSTEM (1) WHERE name = 'e' LIMIT 5`)).map((r) => r.v);
const [{ mx, mn }] = await rows<{ mx: number; mn: number }>(`SELECT max(created_at) AS mx, min(created_at) AS mn FROM events`);
const now = Math.floor(Date.now() / 1000);

const shapes: [string, Filter[]][] = [
  ['author, kind 1', [{ authors: [pks[0]], kinds: [1], limit: 50 }]],
  ['author', [{ authors: [pks[1]], limit: 20 }]],
  ['20 authors, kind 1', [{ authors: pks.slice(0, 20), kinds: [1], limit: 50 }]],
  ['20 authors, kinds 1,6,7', [{ authors: pks.slice(0, 20), kinds: [1, 6, 7], limit: 50 }]],
  ['20 authors, last hour', [{ authors: pks.slice(0, 20), kinds: [1], since: mx - 3600, limit: 50 }]],
  ['#e', [{ '#e': [es[0]] }]],
  ['#e, kind 7', [{ '#e': [es[1]], kinds: [7], limit: 100 }]],
  ['#t', [{ '#t': ['topic3'], limit: 50 }]],
  ['#t, since and until', [{ '#t': ['topic3'], since: mn + 1000, until: mn + 100000, limit: 50 }]],
  ['#t, 3 values', [{ '#t': ['topic1', 'topic2', 'topic3'], limit: 50 }]],
  ['#p', [{ '#p': [pks[3]], limit: 50 }]],
  ['20 ids', [{ ids: ids.slice(0, 20) }]],
  ['20 ids, kind 1', [{ ids: ids.slice(0, 20), kinds: [1] }]],
  ['kind 7', [{ kinds: [7], limit: 50 }]],
  ['kinds 6,7', [{ kinds: [6, 7], limit: 50 }]],
  ['kind 1, since the start', [{ kinds: [1], since: mn + 10, limit: 50 }]],
  ['kind 1, until near the start', [{ kinds: [1], until: mn + 5000, limit: 50 }]],
  ['last minute', [{ since: mx - 60, limit: 100 }]],
  ['until near the start', [{ until: mn + 1000, limit: 100 }]],
  ['everything', [{ limit: 100 }]],
  [
    '2 filters: author, #e',
    [
      { authors: [pks[5]], limit: 10 },
      { '#e': [es[2]], limit: 10 },
    ],
  ],
  [
    '2 filters: kind until, since',
    [
      { kinds: [1], until: mn + 5000, limit: 10 },
      { since: mx - 100, limit: 10 },
    ],
  ],
];

/** µs per query over N queries, after a few uncounted ones. */
async function time(run: () => Promise<unknown>): Promise<number> {
  for (let i = 0; i < 8; i++) await run();
  const t = performance.now();
  for (let i = 0; i < N; i++) await run();
  return ((performance.now() - t) / N) * 1000;
}
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

const out: { shape: string; auto_us: number; generic_us: number; ratio: number }[] = [];
for (const [shape, filters] of shapes) {
  const auto: number[] = [];
  const generic: number[] = [];
  for (let r = 0; r < ROUNDS; r++) {
    auto.push(await time(() => queryEvents(db.kysely, filters, now)));
    generic.push(await time(() => db.read((k) => queryEvents(k, filters, now), { generic: true })));
  }
  const row = { shape, auto_us: Math.round(median(auto)), generic_us: Math.round(median(generic)), ratio: 0 };
  row.ratio = Number((row.generic_us / row.auto_us).toFixed(2));
  out.push(row);
  console.error(
    `${shape.padEnd(30)} auto ${String(row.auto_us).padStart(5)} µs   generic ${String(row.generic_us).padStart(5)} µs   ${row.ratio}`,
  );
}
console.log(JSON.stringify({ queries: N, rounds: ROUNDS, shapes: out }));
await db.close();
