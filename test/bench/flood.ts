/**
 * `pnpm bench:flood`: do floods slow anyone else? A paid relay (default admission price, 1 sat per
 * event) on a fresh Postgres database and Redis, loopback only. 50 honest keys (admitted, with
 * credit) post at a person's pace (a note every 1-3 s), each from its own source address
 * (127.1.0.x), through a baseline phase and then while each flood runs:
 *   unpaid        fresh keys, not admitted, at full speed (20 connections from 10 addresses)
 *   short-balance one admitted key with 30 sats of credit, bursting (10 connections, one address)
 *   one-key       one admitted key with plenty of credit, as fast as it can from 200 connections (one address)
 * Floods run on a worker thread (their own event loop). One JSON line per phase on stdout, then a
 * summary line with the targets: honest p99 during any flood at most 2x the p99 of the baseline
 * run nearest before it (phases may repeat: alternate baselines and floods on a shared machine),
 * and no honest write refused or unanswered. See README.md beside this file.
 */
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { RelayClient, type NostrEvent } from './client.ts';
import { grantPaid, honestPhase, pinCores, runWorker, startFloodProcess, type Honest } from './floods.ts';
import type { FloodCounts, FloodJob } from './flood-worker.ts';
import { createBenchDatabase, envArgs, spawnRelay, type BenchDatabase, type RelayProcess } from './relay.ts';
import { coresUsed, cpuSnapshot } from './resources.ts';
import { newKey, signAll, type SignJob } from './sign.ts';
import { perSecond, round } from './stats.ts';

const { values: args } = parseArgs({
  args: process.argv.slice(2).filter((a) => a !== '--'),
  options: {
    seconds: { type: 'string', default: '10' },
    honest: { type: 'string', default: '50' },
    phases: { type: 'string', default: 'baseline,unpaid,short-balance,one-key' },
    timeout: { type: 'string', default: '180' },
    'cpu-prof': { type: 'string' },
    // Cores for the relay and its Postgres backends, and for this bench (honest keys and floods).
    pin: { type: 'boolean', default: false },
    'relay-cpus': { type: 'string', default: '0' },
    'bench-cpus': { type: 'string', default: '1' },
    // Another checkout's relay under the same load (alternate runs to compare code before and after).
    'repo-root': { type: 'string' },
    // Relay settings on top of the bench's (repeatable KEY=VALUE), e.g. RATE_EVENTS_BURST_PER_IP=100.
    env: { type: 'string', multiple: true, default: [] },
    // Another entry of this repository, e.g. apps/relay/dist/main.js after `pnpm build`: the relay as it ships, without tsx.
    entry: { type: 'string' },
    // A node flag for the relay (repeatable), e.g. --node-arg=--always-sparkplug.
    'node-arg': { type: 'string', multiple: true, default: [] },
    // A repeated flood phase from addresses the relay has not seen (by default each comes from the same ones).
    'fresh-addresses': { type: 'boolean', default: false },
  },
});
const SECONDS = Number(args.seconds);
const HONEST = Number(args.honest);
const PHASES = String(args.phases).split(',');
if (!(SECONDS >= 1 && SECONDS <= 60) || !(HONEST >= 1 && HONEST <= 250)) {
  process.stderr.write('--seconds 1..60, --honest 1..250\n');
  process.exit(64);
}

const log = (msg: string) => process.stderr.write(`[flood] ${msg}\n`);
const PRICE_ADMISSION = 21_000;
const PRICE_PUBLICATION = 1_000;
const PAUSE_MS = 2_000;

let relay: RelayProcess | null = null;
let db: BenchDatabase | null = null;
let done = false;
let unpin = () => {};
async function cleanup(): Promise<void> {
  unpin();
  await relay?.stop().catch(() => {});
  await db?.drop().catch(() => {});
}
async function finish(code: number, error?: string): Promise<never> {
  if (!done) {
    done = true;
    if (error) process.stdout.write(JSON.stringify({ error }) + '\n');
    await cleanup();
  }
  process.exit(code);
}
setTimeout(() => void finish(1, `timed out after ${args.timeout} s`), Number(args.timeout) * 1000).unref();
process.on('SIGINT', () => void finish(130, 'interrupted'));
process.on('SIGTERM', () => void finish(143, 'terminated'));

/**
 * CPU seconds of the relay's main thread (the event loop every message goes through), from
 * /proc/<pid>/task/<pid>/stat: time on a core, not waiting for one, so it is what each message
 * costs even on a busy machine.
 */
function mainThreadCpuSeconds(pid: number): number {
  try {
    const stat = readFileSync(`/proc/${pid}/task/${pid}/stat`, 'utf8');
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(f[11]) + Number(f[12])) / 100;
  } catch {
    return Number.NaN;
  }
}

async function main(): Promise<void> {
  const runId = Date.now().toString(36);
  const honestKeys = Array.from({ length: HONEST }, newKey);
  const shortKey = newKey();
  const fastKey = newKey();
  const perPhase = Math.ceil(SECONDS) + 2;
  // Each flood phase brings events never sent before (an unpaid one, keys never seen before too), as
  // a real flood does: a phase that repeated an earlier one's events would find them held already.
  const runsOf = (phase: string) => PHASES.filter((p) => p === phase).length;
  const freshKeys = Array.from({ length: runsOf('unpaid') }, () => Array.from({ length: 1000 }, newKey));

  const jobs: SignJob[] = [
    ...honestKeys.map((key) => ({ type: 'fanout' as const, key, count: perPhase * PHASES.length, runId, tTag: `honest-${runId}` })),
    ...freshKeys.flat().map((key) => ({ type: 'fanout' as const, key, count: 3, runId, tTag: `unpaid-${runId}` })),
    { type: 'fanout', key: shortKey, count: 3000 * runsOf('short-balance'), runId, tTag: `short-${runId}` },
    { type: 'fanout', key: fastKey, count: 6000 * runsOf('one-key'), runId, tTag: `fast-${runId}` },
  ];
  log(`signing ${jobs.reduce((n, j) => n + j.count, 0)} events`);
  const signed = await signAll(jobs);
  const honestEvents = signed.events.slice(0, HONEST);
  const unpaid = signed.events.slice(HONEST, HONEST + freshKeys.flat().length);
  const unpaidPools = freshKeys.map((_, r) => unpaid.slice(r * 1000, (r + 1) * 1000).flat());
  const slices = (events: NostrEvent[], size: number) =>
    Array.from({ length: events.length / size }, (_, r) => events.slice(r * size, (r + 1) * size));
  const shortPools = slices(signed.events[HONEST + unpaid.length], 3000);
  const fastPools = slices(signed.events[HONEST + unpaid.length + 1], 6000);

  db = await createBenchDatabase(process.env.BENCH_DATABASE_URL || 'postgres://postgres@127.0.0.1:5432/test');
  log(`created database ${db.name}; granting admission and credit`);
  await grantPaid(
    db.url,
    [
      ...honestKeys.map((k) => ({ pubkey: k.pubkey, creditMsat: 1_000_000 })),
      { pubkey: shortKey.pubkey, creditMsat: 30_000 },
      { pubkey: fastKey.pubkey, creditMsat: 100_000_000 },
    ],
    PRICE_ADMISSION,
    'flood bench',
  );
  relay = await spawnRelay({
    databaseUrl: db.url,
    redisUrl: process.env.BENCH_REDIS_URL || 'redis://127.0.0.1:6379',
    rateLimits: true,
    // --cpu-prof DIR: the relay's V8 CPU profiles (main thread and workers) for finding its stalls.
    nodeArgs: [...(args['cpu-prof'] ? ['--cpu-prof', `--cpu-prof-dir=${args['cpu-prof']}`] : []), ...(args['node-arg'] as string[])],
    cpus: args.pin ? args['relay-cpus'] : undefined,
    repoRoot: args['repo-root'],
    entry: args.entry,
    extraEnv: {
      PRICE_ADMISSION_MSAT: String(PRICE_ADMISSION),
      PRICE_EVENT_MSAT: '2000',
      PRICE_PUBLICATION_MSAT: String(PRICE_PUBLICATION),
      MAX_CONNECTIONS_PER_IP: '200',
      MAX_MESSAGES_PER_SECOND: '200',
      CREATED_AT_LOWER_LIMIT: '94608000',
      ...envArgs(args.env as string[]),
    },
  });
  relay.child.once('exit', (code, signal) => done || void finish(1, `relay exited (code ${code}, signal ${signal})`));
  log(`relay at ${relay.url} (pid ${relay.pid})`);
  if (args.pin) {
    unpin = pinCores(db.name, String(args['relay-cpus']), String(args['bench-cpus']));
    log(`pinned: relay and its Postgres backends on cores ${args['relay-cpus']}, this bench on ${args['bench-cpus']}`);
  }

  const honest: Honest[] = await Promise.all(
    honestKeys.map(async (key, i) => ({
      key,
      client: await RelayClient.connect(relay!.url, 10_000, `127.1.${i >> 8}.${(i & 255) + 1}`),
      events: honestEvents[i],
      next: 0,
    })),
  );

  /** Each flood phase's own events: the `run`-th time that phase comes in --phases. */
  const net = (run: number) => (args['fresh-addresses'] ? run : 0);
  const floods: Record<string, (ms: number, run: number) => FloodJob> = {
    unpaid: (ms, run) => ({
      url: relay!.url,
      events: unpaidPools[run],
      addresses: Array.from({ length: 20 }, (_, i) => `127.2.${net(run)}.${(i % 10) + 1}`),
      window: 32,
      ms,
    }),
    'short-balance': (ms, run) => ({
      url: relay!.url,
      events: shortPools[run],
      addresses: Array.from({ length: 10 }, () => `127.3.${net(run)}.1`),
      window: 32,
      ms,
    }),
    'one-key': (ms, run) => ({
      url: relay!.url,
      events: fastPools[run],
      addresses: Array.from({ length: 200 }, () => `127.4.${net(run)}.1`),
      window: 8,
      ms,
    }),
  };

  const results: { phase: string; honest: Awaited<ReturnType<typeof honestPhase>>; flood?: Record<string, unknown> }[] = [];
  const seen = new Map<string, number>();
  for (const phase of PHASES) {
    log(`phase ${phase}: ${SECONDS} s`);
    const run = seen.get(phase) ?? 0;
    seen.set(phase, run + 1);
    const job = floods[phase]?.(SECONDS * 1000, run);
    const worker = new URL('./flood-worker.ts', import.meta.url);
    // --pin: the flood in a process of its own at the lowest priority, loaded before the phase.
    const proc = job && args.pin ? await startFloodProcess<FloodJob, FloodCounts>(worker) : undefined;
    const c0 = cpuSnapshot(relay.pid, db.name);
    const main0 = mainThreadCpuSeconds(relay.pid);
    const [h, f] = await Promise.all([
      honestPhase(honest, SECONDS * 1000),
      job ? (proc ? proc.run(job) : runWorker<FloodJob, FloodCounts>(worker, job)) : Promise.resolve(undefined),
    ]).finally(() => proc?.stop());
    const cpu = coresUsed(c0, cpuSnapshot(relay.pid, db.name));
    const mainCpu = mainThreadCpuSeconds(relay.pid) - main0;
    const flood = f && {
      ...f,
      accepted_per_s: perSecond(f.accepted, f.seconds * 1000),
      refused_per_s: perSecond(f.refused + f.notices, f.seconds * 1000),
      // Sent and never answered (dropped by the relay, or still on their way at the end).
      unanswered: f.sent - f.accepted - f.duplicate - f.refused - f.notices,
      // The relay's main-thread CPU per flood message, the honest writes' share included.
      main_thread_us_per_message: round((mainCpu * 1e6) / Math.max(1, f.sent), 2),
      seconds: round(f.seconds, 1),
    };
    results.push({ phase, honest: h, flood });
    const relayMain = { cpu_s: round(mainCpu, 2) };
    process.stdout.write(
      JSON.stringify({ phase, honest: h, ...(flood ? { flood } : {}), cpu_cores: cpu, relay_main_thread: relayMain }) + '\n',
    );
    log(
      `${phase}: honest ${h.ok}/${h.sent} ok, ${h.refused} refused, ${h.unanswered} unanswered, p50 ${h.ack_ms.p50} ms p99 ${h.ack_ms.p99} ms${flood ? `; flood ${flood.accepted_per_s}/s accepted, ${flood.refused_per_s}/s refused` : ''}`,
    );
    await new Promise((r) => setTimeout(r, PAUSE_MS));
  }
  for (const h of honest) h.client.close();

  // Each flood against the baseline run nearest before it (else after it): with baselines
  // between the floods (--phases baseline,unpaid,baseline,...), a shared machine's drift shows.
  const baselines = results.map((r, i) => ({ i, p99: r.honest.ack_ms.p99 })).filter((b) => results[b.i].phase === 'baseline');
  const baseFor = (i: number) => [...baselines].reverse().find((b) => b.i < i)?.p99 ?? baselines.find((b) => b.i > i)?.p99;
  const during = results.flatMap((r, i) => {
    if (r.phase === 'baseline') return [];
    const base = baseFor(i);
    const ratio = base ? round(r.honest.ack_ms.p99 / base, 2) : undefined;
    return [
      { phase: r.phase, p99: r.honest.ack_ms.p99, baseline_p99: base, ratio, refused: r.honest.refused, unanswered: r.honest.unanswered },
    ];
  });
  process.stdout.write(
    JSON.stringify({
      summary: true,
      baseline_p99_ms: baselines.map((b) => b.p99),
      targets: {
        p99_at_most_2x_baseline: baselines.length > 0 && during.every((d) => d.ratio !== undefined && d.ratio <= 2),
        no_honest_refused_or_unanswered: results.every((r) => r.honest.refused === 0 && r.honest.unanswered === 0),
      },
      during,
      relay_log: relay.logs,
    }) + '\n',
  );
  await finish(0);
}

main().catch((err: Error) => void finish(1, err.stack ?? String(err)));
