import { readdirSync, readFileSync } from 'node:fs';
import { round } from './stats.ts';

/**
 * Who used the machine's CPU during a phase, from /proc (Linux): the relay process (all its
 * threads), the Postgres server processes, this bench process, and everything else. The machine
 * is small and may be shared, so "others" and the relay's run-queue wait (time it was ready to
 * run but had no core) tell whether a figure was limited by the relay or by the machine.
 */

const CLK_TCK = 100; // USER_HZ: /proc/<pid>/stat and /proc/stat count CPU time in 1/100 s.

function read(path: string): string | null {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return null;
  }
}

/** User + system CPU seconds of a process (all threads), from /proc/<pid>/stat. */
function processCpuSeconds(pid: number | string): number {
  const stat = read(`/proc/${pid}/stat`);
  if (!stat) return NaN;
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(f[11]) + Number(f[12])) / CLK_TCK;
}

/** Seconds the process's threads spent runnable but waiting for a core (/proc/<pid>/task/<tid>/schedstat). */
function runQueueWaitSeconds(pid: number): number {
  let tids: string[];
  try {
    tids = readdirSync(`/proc/${pid}/task`);
  } catch {
    return NaN;
  }
  let ns = 0;
  for (const tid of tids) {
    const s = read(`/proc/${pid}/task/${tid}/schedstat`);
    if (s) ns += Number(s.split(' ')[1]);
  }
  return ns / 1e9;
}

/**
 * CPU seconds of each Postgres process, by pid: the backends serving `database` when it is
 * known (the server may be serving others too), else every Postgres process. A backend that
 * exits between two snapshots takes its time with it, so this can only under-count.
 */
export function postgresCpuByPid(database?: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const pid of readdirSync('/proc')) {
    if (!/^\d+$/.test(pid)) continue;
    const stat = read(`/proc/${pid}/stat`);
    if (!stat?.includes('(postgres)')) continue;
    if (database && !(read(`/proc/${pid}/cmdline`) ?? '').includes(` ${database} `)) continue;
    out.set(pid, processCpuSeconds(pid) || 0);
  }
  return out;
}

/** Busy CPU seconds of the whole machine (all cores), from /proc/stat. */
function machineBusySeconds(): number {
  const line = read('/proc/stat')?.split('\n')[0];
  if (!line) return NaN;
  const v = line.trim().split(/\s+/).slice(1).map(Number);
  const [user, nice, system, , , irq, softirq, steal] = v;
  return (user + nice + system + irq + softirq + (steal ?? 0)) / CLK_TCK;
}

export type CpuSnapshot = { wall: number; relay: number; relayWait: number; postgres: Map<string, number>; bench: number; machine: number };

export function cpuSnapshot(relayPid: number | null, database?: string): CpuSnapshot {
  const u = process.cpuUsage();
  return {
    wall: performance.now(),
    relay: relayPid ? processCpuSeconds(relayPid) : NaN,
    relayWait: relayPid ? runQueueWaitSeconds(relayPid) : NaN,
    postgres: postgresCpuByPid(database),
    bench: (u.user + u.system) / 1e6,
    machine: machineBusySeconds(),
  };
}

/** Average cores in use between two snapshots (null where unknown). */
export function coresUsed(a: CpuSnapshot, b: CpuSnapshot) {
  const s = (b.wall - a.wall) / 1000;
  const c = (x: number) => (Number.isFinite(x) ? round(Math.max(0, x) / s, 2) : null);
  const relay = b.relay - a.relay;
  let postgres = 0;
  for (const [pid, t] of b.postgres) postgres += t - (a.postgres.get(pid) ?? 0);
  const ours = (Number.isFinite(relay) ? relay : 0) + postgres + (b.bench - a.bench);
  return {
    relay: c(relay),
    relay_waiting_for_cpu: c(b.relayWait - a.relayWait),
    postgres: c(postgres),
    bench: c(b.bench - a.bench),
    others: c(b.machine - a.machine - ours),
    machine: c(b.machine - a.machine),
  };
}

/** A `Name:  123 kB` field of /proc/<pid>/status, 0 when absent. */
function statusKb(status: string, name: string): number {
  const m = new RegExp(`^${name}:\\s+(\\d+) kB`, 'm').exec(status);
  return m ? Number(m[1]) : 0;
}

/**
 * Peak resident memory of a process, sampled from /proc/<pid>/status. Beside the total, the
 * peaks of its two parts: anonymous memory (heaps, buffers: what the process itself holds) and
 * file-backed pages (mapped binaries, and an mmap-ed database such as strfry's LMDB, which the
 * kernel can drop and read again). Two relays compare fairly only with both parts in view.
 */
export class RssSampler {
  peakKb = 0;
  peakAnonKb = 0;
  peakFileKb = 0;
  private timer: NodeJS.Timeout;

  constructor(
    readonly pid: number,
    intervalMs = 100,
  ) {
    this.sample();
    this.timer = setInterval(() => this.sample(), intervalMs);
    this.timer.unref();
  }

  sample(): number {
    const status = read(`/proc/${this.pid}/status`) ?? '';
    const kb = statusKb(status, 'VmRSS');
    this.peakKb = Math.max(this.peakKb, kb);
    this.peakAnonKb = Math.max(this.peakAnonKb, statusKb(status, 'RssAnon'));
    this.peakFileKb = Math.max(this.peakFileKb, statusKb(status, 'RssFile'));
    return kb;
  }

  stop(): void {
    this.sample();
    clearInterval(this.timer);
  }
}
