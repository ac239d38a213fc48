import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const fixture = fileURLToPath(new URL('./fixtures/fatal.ts', import.meta.url));
const root = fileURLToPath(new URL('../../../', import.meta.url));

type Run = { code: number | null; signal: NodeJS.Signals | null; lines: Record<string, any>[]; stderr: string };

/** Runs the fixture in its own Node process (tsx), as the apps run. */
function run(mode: string): Promise<Run> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', fixture, mode], { cwd: root, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let stderr = '';
    child.stdout.on('data', (d) => (out += d));
    child.stderr.on('data', (d) => (stderr += d));
    const killer = setTimeout(() => child.kill('SIGKILL'), 20_000);
    child.on('error', reject);
    child.on('close', (code, signal) => {
      clearTimeout(killer);
      const lines = out
        .split('\n')
        .filter((l) => l.startsWith('{'))
        .map((l) => JSON.parse(l) as Record<string, any>);
      resolve({ code, signal, lines, stderr });
    });
  });
}

const FATAL = 60;

describe('process handlers (installProcessHandlers)', () => {
  it('an uncaught exception is logged with its stack, the close runs, and the process exits 1', async () => {
    const r = await run('throw');
    expect(r.signal).toBeNull();
    expect(r.code).toBe(1);
    const fatal = r.lines.find((l) => l.level === FATAL);
    expect(fatal?.kind).toBe('uncaughtException');
    expect(fatal?.err?.message).toBe('boom from a timer callback');
    expect(fatal?.err?.stack).toMatch(/failDeepInside[\s\S]*fatal\.ts/);
    // The close starts after the fatal error is logged. Compared by the lines' times, not their
    // order in the output: under load (a CI run on a busy machine) the fatal line, long with its
    // stack, was once read after the close's lines.
    const started = r.lines.find((l) => l.msg === 'graceful close started');
    expect(started).toBeDefined();
    expect(started?.time).toBeGreaterThanOrEqual(fatal?.time);
    expect(r.lines.map((l) => l.msg)).toContain('graceful close finished');
  });

  it('an unhandled rejection is logged with its stack and the process exits 1', async () => {
    const r = await run('reject');
    expect(r.code).toBe(1);
    const fatal = r.lines.find((l) => l.level === FATAL);
    expect(fatal?.kind).toBe('unhandledRejection');
    expect(fatal?.err?.message).toBe('a lost promise');
    expect(fatal?.err?.stack).toMatch(/fatal\.ts/);
    expect(r.lines.map((l) => l.msg)).toContain('graceful close finished');
  });

  it('a rejection with a value that is not an Error is logged with that value', async () => {
    const r = await run('reject-value');
    expect(r.code).toBe(1);
    const fatal = r.lines.find((l) => l.level === FATAL);
    expect(fatal?.err?.message).toContain('{"reason":"not an Error"}');
    expect(typeof fatal?.err?.stack).toBe('string');
  });

  it('a close that never finishes does not keep the process: it exits 1 at the deadline', async () => {
    const r = await run('hang');
    expect(r.code).toBe(1);
    const msgs = r.lines.map((l) => l.msg);
    expect(msgs).toContain('graceful close started');
    expect(msgs).toContain('closing after a fatal error took too long: exiting');
    expect(msgs).not.toContain('graceful close finished');
  });

  it('a healthy process is left alone (control)', async () => {
    const r = await run('ok');
    expect(r.code).toBe(0);
    expect(r.lines.filter((l) => l.level === FATAL)).toEqual([]);
  });
});
