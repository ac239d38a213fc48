import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import { memoryCgroup } from './cgroup.ts';
import { mkdtempSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** Starting and stopping the relay under test and its database. */

export const REPO_ROOT = fileURLToPath(new URL('../../', import.meta.url));
const RELAY_MAIN = join(REPO_ROOT, 'apps/relay/src/main.ts');

// ---------- database ----------

type PgClient = { connect(): Promise<void>; query(sql: string): Promise<unknown>; end(): Promise<void> };

/** `pg` is a dependency of packages/db, not of this package: load it from there. */
function loadPg(): (new (opts: { connectionString: string }) => PgClient) | null {
  try {
    const pg = createRequire(join(REPO_ROOT, 'packages/db/package.json'))('pg') as {
      Client: new (o: { connectionString: string }) => PgClient;
    };
    return pg.Client;
  } catch {
    return null;
  }
}

async function adminQuery(baseUrl: string, sql: string): Promise<void> {
  const Client = loadPg();
  if (Client) {
    const c = new Client({ connectionString: baseUrl });
    await c.connect();
    try {
      await c.query(sql);
    } finally {
      await c.end();
    }
    return;
  }
  execFileSync('psql', [baseUrl, '-v', 'ON_ERROR_STOP=1', '-q', '-c', sql], { stdio: ['ignore', 'ignore', 'pipe'] });
}

export type BenchDatabase = { url: string; name: string; drop(): Promise<void> };

/** A fresh, empty database on the server `baseUrl` names; `drop()` removes it (even with sessions open). */
export async function createBenchDatabase(baseUrl: string): Promise<BenchDatabase> {
  const name = `paidrelay_bench_${Date.now().toString(36)}_${Math.random().toString(36).slice(2, 8)}`;
  await adminQuery(baseUrl, `CREATE DATABASE ${name}`);
  const url = new URL(baseUrl);
  url.pathname = '/' + name;
  let dropped = false;
  return {
    url: url.toString(),
    name,
    async drop() {
      if (dropped) return;
      dropped = true;
      await adminQuery(baseUrl, `DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
    },
  };
}

// ---------- relay child process ----------

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as { port: number };
      srv.close(() => resolve(port));
    });
  });
}

export type RelayLogSummary = { warn: number; error: number; fatal: number; other: number; samples: string[] };

export type RelayProcess = {
  url: string;
  httpUrl: string;
  pid: number;
  child: ChildProcess;
  /** Relay output lines at warn level or above (LOG_LEVEL=warn), and anything that is not a log line. */
  logs: RelayLogSummary;
  /** Set once the child has exited. */
  exited: { code: number | null; signal: string | null } | null;
  stop(): Promise<void>;
};

const LEVELS: Record<number, 'warn' | 'error' | 'fatal'> = { 40: 'warn', 50: 'error', 60: 'fatal' };

function watchOutput(child: ChildProcess, logs: RelayLogSummary, onLine: (line: string) => void): void {
  for (const stream of [child.stdout!, child.stderr!]) {
    let buf = '';
    stream.setEncoding('utf8');
    stream.on('data', (chunk: string) => {
      buf += chunk;
      let nl: number;
      while ((nl = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, nl).trim();
        buf = buf.slice(nl + 1);
        if (!line) continue;
        onLine(line);
        let level: 'warn' | 'error' | 'fatal' | 'other' = 'other';
        try {
          const parsed = JSON.parse(line) as { level?: number | string };
          const n = typeof parsed.level === 'number' ? parsed.level : undefined;
          level =
            (n !== undefined && LEVELS[n]) ||
            (typeof parsed.level === 'string' && ['warn', 'error', 'fatal'].includes(parsed.level) ? (parsed.level as 'warn') : 'other');
        } catch {
          /* not a JSON log line */
        }
        if (level === 'other' && /^Relay ready:/.test(line)) continue;
        logs[level]++;
        if (logs.samples.length < 20) logs.samples.push(line.slice(0, 400));
      }
    });
  }
}

/** Every environment variable the relay reads (the config schema's keys), plus CONFIG_FILE. */
async function relaySettingNames(): Promise<string[]> {
  try {
    const { configSchema } = await import('@paidrelay/config');
    return [...Object.keys(configSchema.shape), 'CONFIG_FILE'];
  } catch {
    return Object.keys(process.env).filter((k) => /^(DATABASE_|REDIS_|RELAY_|PRICE_|FREE_|MAX_|AUTH_|MIN_POW|CONFIG_FILE)/.test(k));
  }
}

/** `rateLimits`: keep the relay's default token buckets (the load phases send from one address: off unless set). */
/** `repoRoot`: run the relay of another checkout of this repository (to compare two versions in one run). */
/** `nodeArgs`: extra node flags for the relay (e.g. `--cpu-prof`, which NODE_OPTIONS does not take). */
/** `entry`: another entry point of this repository (e.g. the all-in-one), relative to its root. */
/** `defaultConfig`: none of the bench's own settings (open relay, no limits): the relay as `pnpm start` configures it. */
/** `cpus`: the cores the relay may run on (a `taskset -c` list, e.g. "0"), to keep a load generator off them. */
/** `memoryLimitMb`: run the relay in a memory cgroup of this size, as in its pod (cgroup.ts). */
export type SpawnOptions = {
  entry?: string;
  defaultConfig?: boolean;
  databaseUrl?: string;
  redisUrl?: string;
  extraEnv?: Record<string, string>;
  rateLimits?: boolean;
  repoRoot?: string;
  nodeArgs?: string[];
  cpus?: string;
  memoryLimitMb?: number;
};

/** Starts apps/relay/src/main.ts under tsx (or `entry`) on a free 127.0.0.1 port and waits for GET /healthz. */
export async function spawnRelay(opts: SpawnOptions): Promise<RelayProcess> {
  const port = await freePort();
  const dataDir = mkdtempSync(join(tmpdir(), 'paidrelay-bench-'));
  const env: NodeJS.ProcessEnv = { ...process.env };
  // Relay settings from the caller's shell (prices, limits, database...) must not leak into the relay under test.
  for (const k of await relaySettingNames()) delete env[k];
  const benchSettings = {
    MAX_CONNECTIONS_PER_IP: '2000',
    MAX_MESSAGES_PER_SECOND: '100000',
    CREATED_AT_LOWER_LIMIT: '0',
    // The bench measures the relay itself: an open relay (payments are benched on their own).
    PRICE_ADMISSION_MSAT: '0',
    PRICE_EVENT_MSAT: '0',
    ...(opts.rateLimits ? {} : { RATE_EVENTS_PER_PUBKEY: '0', RATE_EVENTS_PER_IP: '0', RATE_REQS_PER_IP: '0' }),
  };
  Object.assign(env, {
    HOST: '127.0.0.1',
    PORT: String(port),
    DATA_DIR: dataDir,
    LOG_LEVEL: 'warn',
    ...(opts.defaultConfig ? {} : benchSettings),
    ...(opts.databaseUrl ? { DATABASE_URL: opts.databaseUrl } : {}),
    // Each run's Redis keys of its own: counters and buckets of earlier runs (spam pricing's
    // network volume above all) must not price this run's clients. Replicas of one run share it
    // through extraEnv.
    ...(opts.redisUrl ? { REDIS_URL: opts.redisUrl, REDIS_PREFIX: `paidrelay-bench-${port}-${Date.now()}:` } : {}),
    ...opts.extraEnv,
  });
  const root = opts.repoRoot ?? REPO_ROOT;
  const main = opts.repoRoot || opts.entry ? join(root, opts.entry ?? 'apps/relay/src/main.ts') : RELAY_MAIN;
  // A built bundle (`apps/relay/dist/main.js`) runs as it ships; tsx alone adds 100-130 MB of RSS.
  const argv = [...(opts.nodeArgs ?? []), ...(main.endsWith('.ts') ? ['--import', 'tsx'] : []), main];
  // taskset execs node in place, so the child's pid is the relay's.
  const [node, nodeArgv]: [string, string[]] = opts.cpus
    ? ['taskset', ['-c', opts.cpus, process.execPath, ...argv]]
    : [process.execPath, argv];
  // The shell moves itself into the cgroup, then execs: the child's pid is still the relay's.
  const cgroup = opts.memoryLimitMb ? memoryCgroup(`paidrelay-bench-${port}`, opts.memoryLimitMb) : undefined;
  const [file, args] = cgroup ? cgroup.wrap(node, nodeArgv) : [node, nodeArgv];
  const child = spawn(file, args, {
    cwd: root,
    env,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const logs: RelayLogSummary = { warn: 0, error: 0, fatal: 0, other: 0, samples: [] };
  const tail: string[] = [];
  watchOutput(child, logs, (line) => {
    tail.push(line);
    if (tail.length > 30) tail.shift();
  });

  const relay: RelayProcess = {
    url: `ws://127.0.0.1:${port}`,
    httpUrl: `http://127.0.0.1:${port}`,
    pid: child.pid!,
    child,
    logs,
    exited: null,
    async stop() {
      if (relay.exited === null) {
        const gone = new Promise<void>((r) => child.once('exit', () => r()));
        child.kill('SIGTERM');
        const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
        await gone;
        clearTimeout(timer);
      }
      rmSync(dataDir, { recursive: true, force: true });
      cgroup?.remove();
    },
  };
  child.on('exit', (code, signal) => {
    relay.exited = { code, signal };
  });
  // Never leave a relay running behind us, whatever happens to this process.
  process.once('exit', () => {
    if (relay.exited === null) child.kill('SIGKILL');
  });

  try {
    await waitHealthy(relay.httpUrl, 60_000, () => relay.exited);
  } catch (err) {
    await relay.stop();
    throw new Error(`${(err as Error).message}\n--- relay output (last lines) ---\n${tail.join('\n')}`);
  }
  return relay;
}

/** Polls GET /healthz until it answers 200. */
export async function waitHealthy(
  httpUrl: string,
  timeoutMs: number,
  exited: () => { code: number | null; signal: string | null } | null = () => null,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let lastErr = '';
  while (Date.now() < deadline) {
    const ex = exited();
    if (ex) throw new Error(`relay exited before it was ready (code ${ex.code}, signal ${ex.signal})`);
    try {
      const res = await fetch(`${httpUrl}/healthz`, { signal: AbortSignal.timeout(2000) });
      if (res.ok) return;
      lastErr = `HTTP ${res.status}`;
    } catch (err) {
      lastErr = (err as Error).message;
    }
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new Error(`relay not healthy at ${httpUrl}/healthz after ${timeoutMs} ms (${lastErr})`);
}

/** `--env K=V` arguments (repeatable) as relay settings; exits with a usage error on a malformed one. */
export function envArgs(kvs: string[]): Record<string, string> {
  const env: Record<string, string> = {};
  for (const kv of kvs) {
    const at = kv.indexOf('=');
    if (at < 1) {
      process.stderr.write(`--env must be KEY=VALUE, got "${kv}"\n`);
      process.exit(64);
    }
    env[kv.slice(0, at)] = kv.slice(at + 1);
  }
  return env;
}
