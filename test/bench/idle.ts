import { execFileSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import type { RelayClient } from './client.ts';
import { connectSpread } from './fanout.ts';
import { round } from './stats.ts';

export type IdleOptions = {
  url: string;
  connections: number;
  /** Connections per loopback source address (below the relay's per-address limit). */
  perAddress: number;
  /** How long the connections are held open, idle, once all are subscribed. */
  holdMs: number;
  runId: string;
  /** The relay's pid, for its resident memory (none: memory is not reported). */
  relayPid: number | null;
};

export type IdleResult = {
  connections: number;
  opened: number;
  subscribed: number;
  open_seconds: number;
  held_seconds: number;
  closed_by_relay: number;
  relay_rss_mb_before: number | null;
  relay_rss_mb_held: number | null;
  relay_rss_mb_after_close: number | null;
  relay_bytes_per_connection: number | null;
  bench_bytes_per_connection: number;
  fd_limit: { bench: number | null; relay: number | null };
  /** What stopped the bench short of `connections`, if anything. */
  limited_by?: string;
};

/** Resident memory of a process in bytes (/proc/<pid>/status), or null. */
export function rssBytes(pid: number): number | null {
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) * 1024 : null;
  } catch {
    return null;
  }
}

/** The soft (or hard) "Max open files" of a process (/proc/<pid>/limits), or null. */
export function fdLimit(pid: number | 'self', which: 'soft' | 'hard' = 'soft'): number | null {
  try {
    const m = /Max open files\s+(\d+|unlimited)\s+(\d+|unlimited)/.exec(readFileSync(`/proc/${pid}/limits`, 'utf8'));
    const v = m?.[which === 'soft' ? 1 : 2];
    return v === undefined ? null : v === 'unlimited' ? Number.POSITIVE_INFINITY : Number(v);
  } catch {
    return null;
  }
}

const hardFdLimit = (pid: number | 'self') => fdLimit(pid, 'hard');

/**
 * Raises this process's open-file limit to `want` (each WebSocket is a descriptor, in the bench
 * and in a relay it spawns, which inherits the limit). Node has no setrlimit: `prlimit` sets it
 * from outside, above the hard limit only as root. Returns the limit in force afterwards.
 */
export function raiseFdLimit(want: number): number | null {
  const now = fdLimit('self');
  if (now !== null && now >= want) return now;
  try {
    execFileSync('prlimit', ['--pid', String(process.pid), `--nofile=${want}:${want}`], { stdio: 'ignore', timeout: 5000 });
  } catch {
    try {
      // Not allowed above the hard limit: the soft limit up to it, at least.
      const hard = fdLimit('self', 'hard');
      if (hard !== null && Number.isFinite(hard))
        execFileSync('prlimit', ['--pid', String(process.pid), `--nofile=${hard}:${hard}`], { stdio: 'ignore', timeout: 5000 });
    } catch {
      /* no prlimit: reported through fd_limit */
    }
  }
  return fdLimit('self');
}

/** Descriptors a process has open now (/proc/<pid>/fd), or null. */
function openFds(pid: number | 'self'): number | null {
  try {
    return readdirSync(`/proc/${pid}/fd`).length;
  } catch {
    return null;
  }
}

/**
 * How many more sockets a process can open: its open-file limit less what it has open and a
 * margin for what it opens meanwhile (database connections, log files...). Null when unknown.
 */
function socketsLeft(pid: number | 'self'): number | null {
  const limit = fdLimit(pid);
  const open = openFds(pid);
  return limit === null || open === null ? null : limit - open - 64;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Waits until `done()` holds, checking every 50 ms, for at most `ms`. */
async function until(done: () => boolean, ms: number): Promise<void> {
  const deadline = performance.now() + ms;
  while (!done() && performance.now() < deadline) await sleep(50);
}

/**
 * `connections` WebSockets, each with one REQ open that matches nothing (it stays live after
 * EOSE, as a client's feed does between events), held idle for `holdMs`: the relay's resident
 * memory before and while held gives the cost of an idle connection. Closes everything itself.
 */
export async function runIdle(opts: IdleOptions): Promise<IdleResult> {
  const rss = () => (opts.relayPid ? rssBytes(opts.relayPid) : null);
  const before = rss();
  const benchBefore = process.memoryUsage().rss;
  const t0 = performance.now();
  let clients: RelayClient[] = [];
  let limitedBy: string | undefined;
  // Every connection is a descriptor on both sides: past either limit the phase would measure
  // EMFILE errors, so it holds as many as both can and says so.
  let target = opts.connections;
  const sides: [string, number | 'self'][] = [['bench', 'self'], ...(opts.relayPid ? [['relay', opts.relayPid] as [string, number]] : [])];
  for (const [who, pid] of sides) {
    const n = socketsLeft(pid);
    if (n !== null && n < target) {
      target = Math.max(0, n);
      limitedBy = `the ${who}'s open-file limit (soft ${fdLimit(pid)}, hard ${hardFdLimit(pid)}): ${target} connections`;
    }
  }
  // Open in slices so that a limit nobody announced (the relay's connection cap...) stops the
  // phase with what was opened so far instead of nothing.
  const slice = 1000;
  while (clients.length < target) {
    const n = Math.min(slice, target - clients.length);
    try {
      const more = await connectSpread(opts.url, n, opts.perAddress, 50, clients.length);
      clients = clients.concat(more);
    } catch (err) {
      limitedBy = `${(err as Error).message} (after ${clients.length} held; open-file limit: bench ${fdLimit('self')}, relay ${opts.relayPid ? fdLimit(opts.relayPid) : 'unknown'})`;
      break;
    }
    process.stderr.write(`[bench] idle: ${clients.length}/${target} open\n`);
  }

  let subscribed = 0;
  let answered = 0;
  for (const c of clients) {
    c.subscribe('idle', [{ kinds: [1], '#t': [`idle-${opts.runId}`] }], {
      onEose: () => {
        subscribed++;
        answered++;
      },
      onClosed: () => answered++,
    });
  }
  await until(() => answered >= clients.length, 30_000);
  const openSeconds = (performance.now() - t0) / 1000;
  process.stderr.write(
    `[bench] idle: ${subscribed}/${clients.length} subscribed in ${openSeconds.toFixed(1)} s; holding ${opts.holdMs / 1000} s\n`,
  );

  const h0 = performance.now();
  await sleep(opts.holdMs);
  const held = rss();
  const heldSeconds = (performance.now() - h0) / 1000;
  const benchHeld = process.memoryUsage().rss;
  const closedByRelay = clients.filter((c) => c.droppedByRelay).length;

  for (const c of clients) c.close();
  await until(() => clients.every((c) => c.closedWith !== null), 15_000);
  for (const c of clients) if (c.closedWith === null) c.terminate();
  const afterClose = rss();

  const mb = (b: number | null) => (b === null ? null : round(b / 2 ** 20, 1));
  return {
    connections: opts.connections,
    opened: clients.length,
    subscribed,
    open_seconds: round(openSeconds, 1),
    held_seconds: round(heldSeconds, 1),
    closed_by_relay: closedByRelay,
    relay_rss_mb_before: mb(before),
    relay_rss_mb_held: mb(held),
    relay_rss_mb_after_close: mb(afterClose),
    relay_bytes_per_connection:
      before !== null && held !== null && clients.length > 0 ? Math.round((held - before) / clients.length) : null,
    bench_bytes_per_connection: clients.length > 0 ? Math.round((benchHeld - benchBefore) / clients.length) : 0,
    fd_limit: { bench: fdLimit('self'), relay: opts.relayPid ? fdLimit(opts.relayPid) : null },
    ...(limitedBy ? { limited_by: limitedBy } : {}),
  };
}
