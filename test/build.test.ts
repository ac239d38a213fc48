import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { newKey, RawClient, sign } from '../apps/relay/test/harness.ts';

/**
 * `pnpm build && pnpm start` as a new user runs it: the compiled all-in-one (node on
 * apps/all-in-one/dist/main.js, no tsx) on a fresh data folder with the default config (21 sat
 * admission, PGlite, the dev Lightning network) starts, writes its first relay key, answers a
 * write with the payment refusal and serves the pay page.
 */
const ROOT = fileURLToPath(new URL('..', import.meta.url));

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.on('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address() as { port: number };
      s.close(() => resolve(port));
    });
  });
}

describe('the production build', () => {
  let child: ChildProcess | undefined;
  let dataDir: string;
  let out = '';
  let relayUrl: string;
  let paymentsUrl: string;
  beforeAll(async () => {
    const built = spawnSync('node', ['--import', 'tsx', 'scripts/build.ts'], { cwd: ROOT, encoding: 'utf8', timeout: 120_000 });
    expect(built.status, built.stderr).toBe(0);
    dataDir = mkdtempSync(join(tmpdir(), 'paidrelay-build-'));
    const [port, admissionPort, dashboardPort] = [await freePort(), await freePort(), await freePort()];
    paymentsUrl = `http://127.0.0.1:${admissionPort}/pay`;
    child = spawn('node', ['apps/all-in-one/dist/main.js'], {
      cwd: ROOT,
      env: {
        PATH: process.env.PATH,
        HOME: process.env.HOME,
        HOST: '127.0.0.1',
        PORT: String(port),
        ADMISSION_PORT: String(admissionPort),
        DASHBOARD_PORT: String(dashboardPort),
        PAYMENTS_URL: paymentsUrl,
        DATA_DIR: dataDir,
        LOG_LEVEL: 'warn',
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    child.stdout?.on('data', (d) => (out += String(d)));
    child.stderr?.on('data', (d) => (out += String(d)));
    relayUrl = await new Promise<string>((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`no "Relay ready" within 60 s:\n${out}`)), 60_000);
      const look = () => {
        const m = /Relay ready: (ws:\/\/\S+)/.exec(out);
        if (m) {
          clearTimeout(t);
          resolve(m[1]);
        }
      };
      child?.stdout?.on('data', look);
      child?.on('exit', (code) => {
        clearTimeout(t);
        reject(new Error(`exited with ${code} before it was ready:\n${out}`));
      });
    });
  }, 180_000);
  afterAll(async () => {
    if (child && child.exitCode === null) {
      const exited = new Promise((r) => child?.once('exit', r));
      child.kill('SIGTERM');
      await Promise.race([exited, new Promise((r) => setTimeout(r, 10_000))]);
      if (child.exitCode === null) child.kill('SIGKILL');
    }
    rmSync(dataDir, { recursive: true, force: true });
  });

  it('starts on a fresh data folder, refuses an unpaid write with the price and a pay URL, and serves the pay page', async () => {
    const c = await RawClient.open(relayUrl.replace('localhost', '127.0.0.1'));
    const k = newKey();
    const ev = sign(k.sk, { content: 'hello from the built relay' });
    c.send(['EVENT', ev]);
    const ok = await c.ok(ev.id);
    c.close();
    expect(ok[2]).toBe(false);
    expect(String(ok[3])).toMatch(/^blocked: payment required: .*21 sats.*http:\/\/127\.0\.0\.1:\d+\/pay/);
    const page = await fetch(paymentsUrl);
    expect(page.status).toBe(200);
    expect(await page.text()).toContain('<html');
    expect(out).not.toMatch(/"level":(50|60)/);
  });
});
