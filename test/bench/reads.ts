/**
 * `pnpm bench:reads`: the query mix against a store of a chosen size, our relay and strfry side by
 * side, in alternating rounds. Progress goes to stderr; the result is one JSON line on stdout.
 * See README.md beside this file.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { availableParallelism, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { metricsDelta, scrapeMetrics } from './metrics.ts';
import { rng, runPlanned, type Planned, type QueryTypeResult } from './query.ts';
import { freePort, spawnRelay, type RelayProcess } from './relay.ts';
import { coresUsed, cpuSnapshot, RssSampler } from './resources.ts';
import { THREAD_LENGTH } from './sign.ts';
import { round } from './stats.ts';
import {
  databaseUrl,
  dropPostgresStore,
  eventsOf,
  generateStore,
  postgresLoader,
  postgresStoreReady,
  startStrfry,
  storeName,
  strfryAt,
  strfryDir,
  strfryLoader,
  strfryStoreReady,
  TOPICS,
  type Store,
  type StoreSpec,
  type StrfryRelay,
} from './store.ts';

const TYPES = ['authors', 'feed', 'e_tag', 't_tag', 'ids'] as const;
type QueryType = (typeof TYPES)[number];

const { values: args } = parseArgs({
  args: process.argv.slice(2).filter((a) => a !== '--'),
  options: {
    events: { type: 'string', default: '50000' },
    authors: { type: 'string' },
    ties: { type: 'string', default: '0' },
    strfry: { type: 'string' },
    db: { type: 'string' },
    'base-repo': { type: 'string' },
    'base-db': { type: 'string' },
    'base-env': { type: 'string', multiple: true, default: [] },
    targets: { type: 'string' },
    types: { type: 'string', default: TYPES.join(',') },
    rounds: { type: 'string', default: '3' },
    queries: { type: 'string', default: '1000' },
    'query-connections': { type: 'string', default: '8' },
    'query-inflight': { type: 'string', default: '4' },
    warmup: { type: 'string', default: '0' },
    skew: { type: 'string', default: '0' },
    fresh: { type: 'boolean', default: false },
    drop: { type: 'boolean', default: false },
    env: { type: 'string', multiple: true, default: [] },
    'node-arg': { type: 'string', multiple: true, default: [] },
    // The relay's entry in each checkout, e.g. apps/relay/dist/main.js after `pnpm build` in both: the relay as it ships, without tsx.
    entry: { type: 'string' },
    timeout: { type: 'string', default: '3600' },
  },
});

const int = (name: keyof typeof args, min: number): number => {
  const v = Number(args[name]);
  if (!Number.isInteger(v) || v < min) {
    process.stderr.write(`--${name} must be an integer >= ${min}\n`);
    process.exit(64);
  }
  return v;
};

const events = int('events', 100);
const spec: StoreSpec = {
  events,
  authors: args.authors ? int('authors', 1) : Math.max(10, Math.floor(events / 200)),
  ties: int('ties', 0),
};
const types = String(args.types).split(',') as QueryType[];
for (const t of types) {
  if (!TYPES.includes(t)) {
    process.stderr.write(`--types: unknown type "${t}" (${TYPES.join(', ')})\n`);
    process.exit(64);
  }
}
const targets = (args.targets ?? (args.strfry ? 'ours,strfry' : 'ours')).split(',');
for (const t of targets) {
  if (t !== 'ours' && t !== 'strfry' && t !== 'base') {
    process.stderr.write(`--targets: unknown target "${t}" (ours, base, strfry)\n`);
    process.exit(64);
  }
}
if (targets.includes('base') && !args['base-repo']) {
  process.stderr.write('--targets base needs --base-repo <another checkout of this repository> (and --base-db <database>)\n');
  process.exit(64);
}
if (targets.includes('strfry') && !args.strfry) {
  process.stderr.write('--targets strfry needs --strfry <folder with the strfry binary and strfry.conf>\n');
  process.exit(64);
}
const rounds = int('rounds', 1);
const warmup = int('warmup', 0);
const skew = Number(args.skew);
if (!Number.isFinite(skew) || skew < 0 || skew > 4) {
  process.stderr.write('--skew must be a number from 0 (uniform) to 4\n');
  process.exit(64);
}
const queries = int('queries', 1);
const limits = { connections: int('query-connections', 1), inflight: int('query-inflight', 1), capMs: 60_000 };
const envOf = (list: string[]) =>
  Object.fromEntries(
    list.map((kv) => {
      const at = kv.indexOf('=');
      return [kv.slice(0, at), kv.slice(at + 1)];
    }),
  );
const extraEnv = envOf(args.env as string[]);
const baseEnv = { ...extraEnv, ...envOf(args['base-env'] as string[]) };
const BASE_URL = process.env.BENCH_DATABASE_URL || 'postgres://postgres@127.0.0.1:5432/test';

const log = (msg: string) => process.stderr.write(`[bench:reads] ${msg}\n`);
const started = performance.now();

// ---------- the questions ----------

function kind1Of(n: number): number {
  return Math.floor(n / 10) * 7 + Math.min(n % 10, 7);
}

/** Events whose `e` tag names author a's j-th event, a thread's first (see sign.ts threadParent). */
function referrersOf(n: number, j: number): number {
  return Math.max(0, Math.min(THREAD_LENGTH - 1, n - 1 - j)) + (j + THREAD_LENGTH < n ? 1 : 0);
}

/**
 * Picks ranks 0..n-1, rank k with weight 1/(k+1)^s (Zipf; s = 0 is uniform): with `--skew`, a few
 * authors are read far more than most, and an author's newest events more than older ones, as
 * follows and threads are read on a real relay.
 */
function zipf(n: number, s: number, rand: () => number): () => number {
  if (s === 0 || n <= 1) return () => Math.floor(rand() * n);
  const cdf = new Float64Array(n);
  let sum = 0;
  for (let k = 0; k < n; k++) cdf[k] = sum += 1 / (k + 1) ** s;
  return () => {
    const x = rand() * sum;
    let lo = 0;
    let hi = n - 1;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (cdf[mid] < x) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  };
}

/**
 * One round's questions. Each round (warm-up rounds included) has its own seed, so a measured
 * round does not repeat the questions of the rounds before it. Authors are ranked by a
 * shuffle of their numbers (popularity is not tied to the store's order); with `--skew`, an
 * author's threads and events are picked newest first by the same law.
 */
function plan(store: Store, seed: number): Record<QueryType, Planned[]> {
  const { spec } = store;
  const rand = rng(seed);
  const int = (n: number) => Math.floor(rand() * n);
  const popular = rankOrder(spec.authors);
  const pickAuthor = zipf(spec.authors, skew, rand);
  const author = () => popular[pickAuthor()];
  const recent = new Map<number, () => number>();
  /** A rank from the newest, of `n` things. */
  const newest = (n: number) => {
    let pick = recent.get(n);
    if (pick === undefined) recent.set(n, (pick = zipf(n, skew, rand)));
    return pick();
  };
  const out: Record<QueryType, Planned[]> = { authors: [], feed: [], e_tag: [], t_tag: [], ids: [] };
  for (let q = 0; q < queries; q++) {
    const a = author();
    out.authors.push({
      filter: { authors: [store.pubkeys[a]], kinds: [1], limit: 50 },
      expected: Math.min(50, kind1Of(eventsOf(spec, a))),
    });
    const follows = new Set<number>();
    while (follows.size < Math.min(20, spec.authors)) follows.add(author());
    const feedCount = [...follows].reduce((n, f) => n + kind1Of(eventsOf(spec, f)), 0);
    out.feed.push({
      filter: { authors: [...follows].map((f) => store.pubkeys[f]), kinds: [1], limit: 50 },
      expected: Math.min(50, feedCount),
    });
    const n = eventsOf(spec, a);
    const threads = Math.ceil(n / THREAD_LENGTH);
    const j = (threads - 1 - newest(threads)) * THREAD_LENGTH;
    out.e_tag.push({ filter: { '#e': [store.id(j * spec.authors + a)] }, expected: referrersOf(n, j) });
    out.t_tag.push({ filter: { '#t': [`topic-${int(TOPICS)}`], limit: 50 }, expected: Math.min(50, Math.floor(spec.events / TOPICS)) });
    const ids = new Set<number>();
    while (ids.size < Math.min(20, spec.events)) {
      if (skew === 0) ids.add(int(spec.events));
      else {
        const b = author();
        const m = eventsOf(spec, b);
        if (m > 0) ids.add((m - 1 - newest(m)) * spec.authors + b);
      }
    }
    out.ids.push({ filter: { ids: [...ids].map((i) => store.id(i)) }, expected: ids.size });
  }
  return Object.fromEntries(types.map((t) => [t, out[t]])) as Record<QueryType, Planned[]>;
}

/** The authors' numbers in a fixed shuffled order: rank k's author. */
function rankOrder(n: number): number[] {
  const order = Array.from({ length: n }, (_, i) => i);
  const rand = rng(7);
  for (let i = n - 1; i > 0; i--) {
    const k = Math.floor(rand() * (i + 1));
    [order[i], order[k]] = [order[k], order[i]];
  }
  return order;
}

// ---------- the run ----------

let relay: RelayProcess | null = null;
let base: RelayProcess | null = null;
let strfry: StrfryRelay | null = null;

async function cleanup(): Promise<void> {
  await relay?.stop().catch(() => {});
  await base?.stop().catch(() => {});
  await strfry?.stop().catch(() => {});
  if (args.drop) {
    await dropPostgresStore(BASE_URL, storeName(spec)).catch(() => {});
    rmSync(strfryDir(storeName(spec)), { recursive: true, force: true });
  }
}

const watchdog = setTimeout(() => {
  log(`timed out after ${args.timeout} s`);
  void cleanup().then(() => process.exit(1));
}, int('timeout', 10) * 1000);
watchdog.unref();
process.on('SIGINT', () => void cleanup().then(() => process.exit(130)));
process.on('SIGTERM', () => void cleanup().then(() => process.exit(143)));

/** Builds what is missing of the store (Postgres and/or strfry), in one pass over the events. */
async function buildStore(): Promise<{ store: Store; load: Record<string, unknown> }> {
  const name = storeName(spec);
  const sf = args.strfry ? strfryAt(args.strfry) : null;
  const needPg = targets.includes('ours') && (args.fresh || !(await postgresStoreReady(BASE_URL, name)));
  const needSf = sf !== null && targets.includes('strfry') && (args.fresh || !strfryStoreReady(strfryDir(name)));
  const dataDir = mkdtempSync(join(tmpdir(), 'paidrelay-bench-load-'));
  const pgLoad = needPg ? await postgresLoader(BASE_URL, name, dataDir) : null;
  const sfLoad = needSf && sf ? strfryLoader(sf, strfryDir(name)) : null;
  log(
    `store ${name}: ${needPg ? 'loading into Postgres' : 'Postgres ready'}${sf ? `, ${needSf ? 'importing into strfry' : 'strfry ready'}` : ''}`,
  );
  const t0 = performance.now();
  let done = 0;
  let lastLog = t0;
  const store = await generateStore(spec, async (batch) => {
    await Promise.all([pgLoad?.sink(batch), sfLoad?.sink(batch)]);
    done += batch.length;
    if (performance.now() - lastLog > 10_000) {
      lastLog = performance.now();
      log(`loaded ${done}/${spec.events} (${round((done * 1000) / (lastLog - t0))} events/s)`);
    }
  });
  const tGenerated = performance.now();
  await pgLoad?.finish();
  const tPg = performance.now();
  await sfLoad?.finish();
  const tSf = performance.now();
  rmSync(dataDir, { recursive: true, force: true });
  const seconds = round((tSf - t0) / 1000, 1);
  if (needPg || needSf) log(`store built in ${seconds} s`);
  return {
    store,
    load: {
      postgres: needPg ? 'loaded' : 'cached',
      ...(sf ? { strfry: needSf ? 'imported' : 'cached' } : {}),
      seconds,
      events_per_s: needPg || needSf ? round((spec.events * 1000) / (tSf - t0)) : null,
      tail_seconds: { postgres: round((tPg - tGenerated) / 1000, 1), strfry: round((tSf - tPg) / 1000, 1) },
    },
  };
}

type Round = { target: string; round: number; cpu_cores: ReturnType<typeof coresUsed>; relay_metrics?: unknown } & Record<string, unknown>;

async function main(): Promise<void> {
  const { store, load } = await buildStore();
  const name = storeName(spec);
  if (targets.includes('ours')) {
    log('starting our relay');
    relay = await spawnRelay({
      databaseUrl: databaseUrl(BASE_URL, args.db ?? name),
      extraEnv,
      nodeArgs: args['node-arg'] as string[],
      entry: args.entry,
    });
  }
  if (targets.includes('base')) {
    log(`starting the base relay (${args['base-repo']})`);
    base = await spawnRelay({
      databaseUrl: databaseUrl(BASE_URL, args['base-db'] ?? name),
      extraEnv: baseEnv,
      repoRoot: args['base-repo'],
      entry: args.entry,
    });
  }
  if (targets.includes('strfry') && args.strfry) {
    strfry = await startStrfry(strfryAt(args.strfry), strfryDir(name), await freePort());
    log(`strfry at ${strfry.url} (pid ${strfry.pid})`);
  }
  const results: Round[] = [];
  const warmups: Round[] = [];
  for (let r = -warmup; r < rounds; r++) {
    const planned = plan(store, 42 + r);
    const order = r % 2 === 0 ? targets : [...targets].reverse();
    const label = r < 0 ? `warm-up ${r + warmup + 1}` : `round ${r + 1}`;
    for (const target of order) {
      const ours = target === 'ours' ? relay : target === 'base' ? base : null;
      const dbName = target === 'ours' ? (args.db ?? name) : target === 'base' ? (args['base-db'] ?? name) : undefined;
      const url = ours ? ours.url : strfry!.url;
      const pid = ours ? ours.pid : strfry!.pid;
      const m0 = ours ? await scrapeMetrics(ours.httpUrl) : null;
      const c0 = cpuSnapshot(pid, dbName);
      const rss = new RssSampler(pid);
      const out = await runPlanned(url, planned, limits);
      rss.stop();
      const c1 = cpuSnapshot(pid, dbName);
      const mb = (kb: number) => round(kb / 1024, 1);
      const memory = { rss_mb_peak: mb(rss.peakKb), rss_anon_mb_peak: mb(rss.peakAnonKb), rss_file_mb_peak: mb(rss.peakFileKb) };
      const m1 = ours ? await scrapeMetrics(ours.httpUrl) : null;
      const internals = metricsDelta(m0, m1);
      (r < 0 ? warmups : results).push({
        target,
        round: r + 1,
        ...out,
        cpu_cores: coresUsed(c0, c1),
        memory,
        ...(internals ? { relay_metrics: internals } : {}),
      });
      log(
        `${label} ${target}: ${types.map((t) => `${t} ${out[t].queries_per_s} q/s p99 ${out[t].eose_ms.p99} ms${out[t].wrong_count ? ` (${out[t].wrong_count} wrong)` : ''}`).join(', ')}; others ${coresUsed(c0, c1).others} cores; RSS ${memory.rss_mb_peak} MB (private ${memory.rss_anon_mb_peak})${internals ? `; cache ${internals.cache_hits ?? 0} hits, ${internals.cache_misses ?? 0} misses, ${internals.cache_loads ?? 0} windows loaded` : ''}`,
      );
    }
  }

  const median = (xs: number[]) => {
    const s = [...xs].sort((a, b) => a - b);
    return round(s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2);
  };
  const summary: Record<string, Record<string, { queries_per_s: number; eose_p50_ms: number; eose_p99_ms: number; wrong: number }>> = {};
  for (const target of targets) {
    summary[target] = {};
    const mine = results.filter((x) => x.target === target);
    for (const t of types) {
      const rs = mine.map((x) => x[t] as QueryTypeResult);
      summary[target][t] = {
        queries_per_s: median(rs.map((x) => x.queries_per_s)),
        eose_p50_ms: median(rs.map((x) => x.eose_ms.p50)),
        eose_p99_ms: median(rs.map((x) => x.eose_ms.p99)),
        wrong: rs.reduce((n, x) => n + x.wrong_count + x.closed, 0),
      };
    }
  }
  const ratioOf = (a: string, b: string) =>
    summary[a] && summary[b]
      ? Object.fromEntries(types.map((t) => [t, round(summary[a][t].queries_per_s / summary[b][t].queries_per_s, 2)]))
      : undefined;
  const ratio = ratioOf('ours', 'strfry');
  const baseRatio = ratioOf('base', 'strfry');
  const speedup = ratioOf('ours', 'base');
  for (const t of types) {
    log(
      `${t.padEnd(8)} ${targets.map((x) => `${x} ${summary[x][t].queries_per_s} q/s p50 ${summary[x][t].eose_p50_ms} p99 ${summary[x][t].eose_p99_ms} ms`).join(' | ')}${ratio ? ` | ours/strfry ${ratio[t]}` : ''}${baseRatio ? ` | base/strfry ${baseRatio[t]}` : ''}${speedup ? ` | ours/base ${speedup[t]}` : ''}`,
    );
  }
  const line = {
    store: { name, ...spec, load },
    limits: { connections: limits.connections, inflight: limits.inflight, queries_per_type: queries, warmup_rounds: warmup, skew },
    summary,
    ...(ratio ? { ours_over_strfry: ratio } : {}),
    ...(baseRatio ? { base_over_strfry: baseRatio } : {}),
    ...(speedup ? { ours_over_base: speedup } : {}),
    rounds: results,
    ...(warmups.length > 0 ? { warmup_rounds: warmups } : {}),
    machine: { cores: availableParallelism(), loadavg: loadavg().map((x) => round(x, 2)) },
    seconds: round((performance.now() - started) / 1000, 1),
  };
  await cleanup();
  process.stdout.write(JSON.stringify(line) + '\n');
  process.exit(0);
}

main().catch(async (err: Error) => {
  log(`failed: ${err.stack ?? err.message}`);
  await cleanup();
  process.exit(1);
});
