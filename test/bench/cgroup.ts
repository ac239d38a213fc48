import { existsSync, mkdirSync, readFileSync, rmdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

/**
 * A memory cgroup for a relay under test, so that it runs as it is deployed: in a container whose
 * memory limit (infra/k8s/base/relay-deployment.yaml: 1Gi) Node reads at start-up
 * (`process.constrainedMemory()`) and sizes V8's heap from. On a 24 GiB machine without a limit
 * the heap may grow to 4 GiB and V8 collects late; in a 1 GiB pod it gets about 550 MB and keeps
 * a far smaller young generation, so RSS measured without the limit is not what a pod holds.
 *
 * cgroup v2 (`memory.max`) where the unified hierarchy has the memory controller, else v1
 * (`memory.limit_in_bytes`), as a child of this process's own cgroup. Needs write access there
 * (root in a container, or a delegated subtree); without it the bench stops with the reason.
 */
export type MemoryCgroup = {
  /** The command line that runs `argv` inside the cgroup (a shell that moves itself in, then execs). */
  wrap(file: string, args: string[]): [string, string[]];
  remove(): void;
};

const ROOT = '/sys/fs/cgroup';

/** This process's cgroup path in a hierarchy: the v2 line (`0::/path`) or the v1 line naming `memory`. */
function ownPath(v2: boolean): string {
  for (const line of readFileSync('/proc/self/cgroup', 'utf8').trim().split('\n')) {
    const first = line.indexOf(':');
    const second = line.indexOf(':', first + 1);
    // `id:controllers:path` (the path may itself hold colons).
    const controllers = line.slice(first + 1, second);
    if (v2 ? controllers === '' : controllers.split(',').includes('memory')) return line.slice(second + 1);
  }
  throw new Error(`no ${v2 ? 'cgroup v2' : 'memory cgroup v1'} line in /proc/self/cgroup`);
}

export function memoryCgroup(name: string, limitMb: number): MemoryCgroup {
  const unifiedControllers = join(ROOT, 'cgroup.controllers');
  const v2 = existsSync(unifiedControllers) && readFileSync(unifiedControllers, 'utf8').split(/\s+/).includes('memory');
  const dir = v2 ? join(ROOT, ownPath(true), name) : join(ROOT, 'memory', ownPath(false), name);
  const bytes = String(Math.round(limitMb * 1024 * 1024));
  try {
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, v2 ? 'memory.max' : 'memory.limit_in_bytes'), bytes);
  } catch (err) {
    throw new Error(`--memory-limit needs a writable memory cgroup (${dir}): ${(err as Error).message}`);
  }
  const procs = join(dir, 'cgroup.procs');
  return {
    wrap: (file, args) => ['sh', ['-c', `echo $$ > '${procs}' && exec "$0" "$@"`, file, ...args]],
    remove: () => {
      try {
        rmdirSync(dir);
      } catch {
        /* still has a process (killed late) or already gone: the kernel keeps an empty cgroup harmlessly */
      }
    },
  };
}
