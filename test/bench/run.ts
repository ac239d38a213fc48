/**
 * `pnpm bench`: load benchmark of the relay (ingest, query, fan-out). Progress goes to stderr;
 * the result is exactly one JSON line on stdout. See README.md beside this file.
 */
import { readFileSync } from 'node:fs';
import { availableParallelism, cpus, loadavg, totalmem } from 'node:os';
import { parseArgs } from 'node:util';
import { runFanout, type FanoutResult } from './fanout.ts';
import { raiseFdLimit, runIdle } from './idle.ts';
import { runIngest, type IngestResult } from './ingest.ts';
import { runQuery, type QueryResult } from './query.ts';
import { metricsDelta, scrapeMetrics } from './metrics.ts';
import { createBenchDatabase, envArgs, spawnRelay, waitHealthy, type BenchDatabase, type RelayProcess } from './relay.ts';
import { coresUsed, cpuSnapshot, RssSampler } from './resources.ts';
import { newKey, signAll, type SignJob } from './sign.ts';
import { round } from './stats.ts';

const BAR_EVENTS_PER_S = 5000;

const { values: args } = parseArgs({
  args: process.argv.slice(2).filter((a) => a !== '--'),
  options: {
    url: { type: 'string' },
    pid: { type: 'string' },
    pglite: { type: 'boolean', default: false },
    redis: { type: 'boolean', default: false },
    phases: { type: 'string', default: 'ingest,query,fanout' },
    events: { type: 'string', default: '30000' },
    connections: { type: 'string', default: '50' },
    inflight: { type: 'string', default: '8' },
    warmup: { type: 'string', default: '8' },
    queries: { type: 'string', default: '2000' },
    'query-connections': { type: 'string', default: '8' },
    'query-inflight': { type: 'string', default: '4' },
    subscribers: { type: 'string', default: '500' },
    rate: { type: 'string', default: '200' },
    seconds: { type: 'string', default: '5' },
    'per-address': { type: 'string', default: '100' },
    // Fan-out subscribers on `ws` clients (as before stop 22) instead of raw sockets.
    'ws-subscribers': { type: 'boolean', default: false },
    // Threads the fan-out subscribers are spread over (the publisher has its own).
    receivers: { type: 'string', default: '2' },
    idle: { type: 'string', default: '20000' },
    'idle-seconds': { type: 'string', default: '10' },
    'sign-threads': { type: 'string', default: String(availableParallelism()) },
    timeout: { type: 'string', default: '150' },
    assert: { type: 'boolean', default: false },
    'repo-root': { type: 'string' },
    'cpu-prof': { type: 'string' },
    env: { type: 'string', multiple: true, default: [] },
    'node-arg': { type: 'string', multiple: true, default: [] },
    // Another entry of this repository, e.g. apps/relay/dist/main.js after `pnpm build` (the relay as it ships).
    entry: { type: 'string' },
    // The relay in a memory cgroup of this many MiB, as in its pod (1024: relay-deployment.yaml's limit).
    'memory-limit': { type: 'string' },
    help: { type: 'boolean', short: 'h', default: false },
  },
});

if (args.help) {
  process.stderr.write(readFileSync(new URL('./README.md', import.meta.url), 'utf8'));
  process.exit(0);
}

const int = (name: keyof typeof args, min = 0): number => {
  const v = Number(args[name]);
  if (!Number.isInteger(v) || v < min) {
    process.stderr.write(`--${name} must be an integer >= ${min}\n`);
    process.exit(64);
  }
  return v;
};

const phases = new Set(
  String(args.phases)
    .split(',')
    .map((s) => s.trim()),
);
for (const p of phases) {
  if (!['ingest', 'query', 'fanout', 'idle'].includes(p)) {
    process.stderr.write(`--phases: unknown phase "${p}" (ingest, query, fanout, idle)\n`);
    process.exit(64);
  }
}
if (phases.has('query') && !phases.has('ingest')) {
  process.stderr.write('--phases: query needs ingest (it queries what ingest stored)\n');
  process.exit(64);
}
if (args.url && !/^ws:\/\/(127\.\d+\.\d+\.\d+|localhost|\[::1\])(:\d+)?(\/.*)?$/.test(args.url)) {
  // Load is only ever sent to this machine.
  process.stderr.write('--url must be a ws:// URL on the loopback interface (127.0.0.1, localhost, [::1])\n');
  process.exit(64);
}

const opts = {
  events: int('events', 1),
  connections: int('connections', 1),
  inflight: int('inflight', 1),
  warmup: int('warmup'),
  queries: int('queries', 1),
  queryConnections: int('query-connections', 1),
  queryInflight: int('query-inflight', 1),
  subscribers: int('subscribers', 1),
  rate: int('rate', 1),
  seconds: int('seconds', 1),
  perAddress: int('per-address', 1),
  idle: int('idle', 1),
  idleSeconds: int('idle-seconds', 1),
  signThreads: int('sign-threads', 1),
  timeoutS: int('timeout', 10),
};

/** `--env K=V` (repeatable): relay settings on top of the bench's own, e.g. VERIFY_WORKERS=1. */
const extraEnv = envArgs(args.env as string[]);

const log = (msg: string) => process.stderr.write(`[bench] ${msg}\n`);
const started = performance.now();
const loadAtStart = loadavg().map((x) => round(x, 2));

// ---------- output and cleanup ----------

type Output = Record<string, unknown>;

const result: Output = { relay: null, mode: null, db: null };
let relay: RelayProcess | null = null;
let db: BenchDatabase | null = null;
let sampler: RssSampler | null = null;
let relayPid: number | null = null;
let finished = false;

async function cleanup(): Promise<void> {
  sampler?.stop();
  if (relay) {
    log('stopping the relay');
    await relay.stop().catch((err: Error) => log(`stopping the relay: ${err.message}`));
  }
  if (db) {
    log(`dropping database ${db.name}`);
    await db.drop().catch((err: Error) => log(`dropping ${db!.name}: ${err.message}`));
  }
}

function finalFields(): Output {
  return {
    ...(sampler
      ? {
          relay_rss_mb_peak: round(sampler.peakKb / 1024, 1),
          // Each part's own peak (they need not peak together): see RssSampler.
          relay_rss_anon_mb_peak: round(sampler.peakAnonKb / 1024, 1),
          relay_rss_file_mb_peak: round(sampler.peakFileKb / 1024, 1),
        }
      : {}),
    ...(relay ? { relay_log: relay.logs, relay_exit: relay.exited } : {}),
    machine: {
      cores: availableParallelism(),
      cpu: cpus()[0]?.model ?? 'unknown',
      mem_gb: round(totalmem() / 2 ** 30, 1),
      node: process.version,
      loadavg_at_start: loadAtStart,
    },
    seconds: round((performance.now() - started) / 1000, 1),
  };
}

/** Prints the one JSON line (partial results and the error on failure), cleans up, exits. */
async function finish(error?: string, code = error ? 1 : 0): Promise<never> {
  if (finished) return new Promise<never>(() => {});
  finished = true;
  const line = JSON.stringify({ ...result, ...finalFields(), ...(error ? { error } : {}) });
  await cleanup();
  process.stdout.write(line + '\n');
  process.exit(code);
}

const watchdog = setTimeout(() => void finish(`timed out after ${opts.timeoutS} s`), opts.timeoutS * 1000);
watchdog.unref();
// `on`, not `once`: a wrapper (tsx, pnpm) may pass the same Ctrl-C on a moment later, and a
// second signal with no listener left would kill the bench before it has stopped the relay.
process.on('SIGINT', () => void finish('interrupted', 130));
process.on('SIGTERM', () => void finish('terminated', 143));

/**
 * Runs one phase, recording beside its figures the cores each party used meanwhile and what the
 * relay's own metrics say happened inside it.
 */
async function phase<T extends object>(name: string, httpUrl: string, fn: () => Promise<T>): Promise<T> {
  const pid = relayPid;
  const [m0, c0] = [await scrapeMetrics(httpUrl), cpuSnapshot(pid, db?.name)];
  const out = await fn();
  const [c1, m1] = [cpuSnapshot(pid, db?.name), await scrapeMetrics(httpUrl)];
  const internals = metricsDelta(m0, m1);
  result[name] = { ...out, cpu_cores: coresUsed(c0, c1), ...(internals ? { relay_metrics: internals } : {}) };
  await checkRelayAlive(httpUrl);
  return out;
}

/** A relay that crashed or hung during a phase ends the run (with that phase's figures). */
async function checkRelayAlive(httpUrl: string): Promise<void> {
  try {
    const res = await fetch(`${httpUrl}/healthz`, { signal: AbortSignal.timeout(5000) });
    if (res.ok) return;
  } catch {
    /* below */
  }
  await new Promise((r) => setTimeout(r, 300)); // let the child's exit event arrive
  const ex = relay?.exited;
  throw new Error(ex ? `relay exited during the run (code ${ex.code}, signal ${ex.signal})` : 'relay stopped answering GET /healthz');
}

// ---------- the run ----------

async function main(): Promise<void> {
  const runId = Date.now().toString(36);
  result.phases = [...phases];
  // Every WebSocket is a descriptor here and in the relay we spawn (it inherits the limit).
  const sockets = Math.max(phases.has('idle') ? opts.idle : 0, phases.has('fanout') ? opts.subscribers : 0);
  if (sockets > 0) result.fd_limit = raiseFdLimit(sockets + 1000);

  // 1. Sign everything first.
  const keys = Array.from({ length: opts.connections }, newKey);
  const jobs: SignJob[] = [];
  if (phases.has('ingest')) {
    keys.forEach((key, i) => {
      // Connection i sends key i's events; the first connections take one more when --events does not divide.
      const n = opts.warmup + Math.floor(opts.events / opts.connections) + (i < opts.events % opts.connections ? 1 : 0);
      jobs.push({ type: 'thread', key, count: n, runId, label: `a${i}`, tTag: `bench-${runId}`, pTag: keys[(i + 1) % keys.length].pubkey });
    });
  }
  if (phases.has('fanout')) jobs.push({ type: 'fanout', key: newKey(), count: opts.rate * opts.seconds, runId, tTag: `fanout-${runId}` });
  const total = jobs.reduce((n, j) => n + j.count, 0);
  log(`signing ${total} events on ${opts.signThreads} threads`);
  let lastLog = 0;
  const signed = await signAll(jobs, opts.signThreads, (done, all) => {
    if (performance.now() - lastLog > 3000 || done === all) {
      lastLog = performance.now();
      log(`signed ${done}/${all}`);
    }
  });
  result.signing = {
    events: total,
    backend: signed.backend,
    seconds: round(signed.ms / 1000, 1),
    per_s: round((total * 1000) / signed.ms),
  };

  // 2. The relay: ours, on a fresh database, or the one --url names.
  let url: string;
  if (args.url) {
    url = args.url.replace(/\/$/, '');
    result.relay = url;
    result.mode = 'external';
    result.db = 'external';
    await waitHealthy(url.replace(/^ws/, 'http'), 10_000);
    if (args.pid) relayPid = Number(args.pid);
  } else {
    if (!args.pglite) {
      db = await createBenchDatabase(process.env.BENCH_DATABASE_URL || 'postgres://postgres@127.0.0.1:5432/test');
      log(`created database ${db.name}`);
    }
    const redisUrl = args.redis ? process.env.BENCH_REDIS_URL || 'redis://127.0.0.1:6379' : undefined;
    log('starting the relay');
    // --repo-root runs another checkout's relay under this bench (before/after in one harness);
    // --cpu-prof writes the relay's V8 CPU profiles (main thread and each worker) into that folder.
    // --node-arg passes node flags (e.g. --max-semi-space-size=8), --env relay settings (e.g. VERIFY_WORKERS=2).
    const profArgs = args['cpu-prof'] ? ['--cpu-prof', `--cpu-prof-dir=${args['cpu-prof']}`] : [];
    const nodeArgs = [...profArgs, ...(args['node-arg'] as string[])];
    const memoryLimitMb = args['memory-limit'] === undefined ? undefined : int('memory-limit', 64);
    relay = await spawnRelay({
      databaseUrl: db?.url,
      redisUrl,
      repoRoot: args['repo-root'],
      entry: args.entry,
      nodeArgs,
      extraEnv,
      memoryLimitMb,
    });
    relay.child.once('exit', (code, signal) => {
      if (!finished) void finish(`relay exited during the run (code ${code}, signal ${signal})`);
    });
    url = relay.url;
    relayPid = relay.pid;
    result.relay = url;
    result.mode = 'spawned';
    result.db = args.pglite ? 'pglite' : 'postgres';
    result.bus = redisUrl ? 'redis' : 'memory';
    log(`relay ready at ${url} (pid ${relay.pid})`);
  }
  if (relayPid) sampler = new RssSampler(relayPid);
  const httpUrl = url.replace(/^ws/, 'http');

  // 3. Ingest.
  let ingest: IngestResult | undefined;
  if (phases.has('ingest')) {
    log(
      `ingest: ${opts.connections} connections x ${opts.inflight} in flight, ${opts.events} events (+${opts.warmup * opts.connections} warm-up)`,
    );
    ingest = await phase('ingest', httpUrl, async () => {
      const r = await runIngest({
        url,
        perConnection: signed.events.slice(0, opts.connections),
        warmup: opts.warmup,
        inflight: opts.inflight,
        capMs: 60_000,
        onProgress: (acked, all) => log(`ingest: ${acked}/${all} acknowledged`),
      });
      return Object.defineProperty(r, 'acceptedIds', { enumerable: false }); // not part of the output
    });
    result.bar = { events_per_s: BAR_EVENTS_PER_S, met: ingest.events_per_s >= BAR_EVENTS_PER_S };
    log(
      `ingest: ${ingest.accepted} accepted, ${ingest.refused} refused, ${ingest.events_per_s} events/s, ack p50 ${ingest.ack_ms.p50} ms p99 ${ingest.ack_ms.p99} ms`,
    );
  }

  // 4. Query.
  if (phases.has('query') && ingest) {
    log(`query: ${opts.queries} REQs of each type over ${opts.queryConnections} connections x ${opts.queryInflight} in flight`);
    const query: QueryResult = await phase('query', httpUrl, () =>
      runQuery({
        url,
        byAuthor: signed.events.slice(0, opts.connections),
        acceptedIds: ingest.acceptedIds,
        count: opts.queries,
        connections: opts.queryConnections,
        inflight: opts.queryInflight,
        idsPerQuery: 20,
        capMs: 30_000,
      }),
    );
    for (const t of ['authors', 'e_tag', 'ids'] as const) {
      log(`query ${t}: ${query[t].queries_per_s} q/s, EOSE p50 ${query[t].eose_ms.p50} ms p99 ${query[t].eose_ms.p99} ms`);
    }
  }

  // 5. Fan-out.
  let fanout: FanoutResult | undefined;
  if (phases.has('fanout')) {
    log(`fan-out: ${opts.subscribers} subscribers, ${opts.rate} events/s for ${opts.seconds} s`);
    fanout = await phase('fanout', httpUrl, () =>
      runFanout({
        url,
        subscribers: opts.subscribers,
        events: signed.events[signed.events.length - 1],
        runId,
        tTag: `fanout-${runId}`,
        rate: opts.rate,
        authorFilterEvery: 5,
        drainMs: 15_000,
        perAddress: opts.perAddress,
        wsSubscribers: args['ws-subscribers'] as boolean,
        receivers: int('receivers', 1),
      }),
    );
    log(
      `fan-out: ${fanout.delivered}/${fanout.expected_deliveries} delivered, p50 ${fanout.delivery_ms.p50} ms p99 ${fanout.delivery_ms.p99} ms`,
    );
  }

  // 6. Idle connections: memory per connection.
  if (phases.has('idle')) {
    log(`idle: ${opts.idle} connections, ${opts.perAddress} per source address, one REQ each, held ${opts.idleSeconds} s`);
    const idle = await phase('idle', httpUrl, () =>
      runIdle({ url, connections: opts.idle, perAddress: opts.perAddress, holdMs: opts.idleSeconds * 1000, runId, relayPid }),
    );
    log(
      `idle: ${idle.subscribed}/${idle.connections} held, relay RSS ${idle.relay_rss_mb_before} -> ${idle.relay_rss_mb_held} MB, ${idle.relay_bytes_per_connection} bytes per connection${idle.limited_by ? ` (${idle.limited_by})` : ''}`,
    );
  }

  const failed = (ingest && ingest.events_per_s < BAR_EVENTS_PER_S) || (fanout && fanout.missing > 0);
  await finish(undefined, args.assert && failed ? 2 : 0);
}

main().catch((err: Error) => void finish(err.message ?? String(err)));
