import { mkdtempSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import WebSocket from 'ws';
import { createLogger, loadConfig } from '@paidrelay/config';
import { startAll, type Stack } from '@paidrelay/all-in-one';
import { freshDatabase, TEST_REDIS_PREFIX } from '../apps/relay/test/harness.ts';

/** A free TCP port on loopback (the pay URL must be known before the service listens). */
export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

export type TestStack = {
  relayUrl: string;
  paymentsUrl: string;
  apiBase: string;
  payerNwc: string;
  dataDir: string;
  stack: Stack;
  stop(): Promise<void>;
};

/**
 * The whole product in this process, as `pnpm start` runs it: relay, admission service, the
 * dev Lightning network. PGlite unless `backend` is 'postgres' (a fresh database on
 * TEST_DATABASE_URL). `dataDir` lets a test restart on the same data.
 */
export async function startStack(
  env: Record<string, string> = {},
  opts: { backend?: 'pglite' | 'postgres'; dataDir?: string; databaseUrl?: string; defaultPrices?: boolean } = {},
): Promise<TestStack> {
  (globalThis as { WebSocket?: unknown }).WebSocket ??= WebSocket;
  let db: Awaited<ReturnType<typeof freshDatabase>> | undefined;
  let databaseUrl = opts.databaseUrl;
  if (opts.backend === 'postgres' && !databaseUrl) {
    db = await freshDatabase();
    databaseUrl = db.url;
  }
  const dataDir = opts.dataDir ?? mkdtempSync(join(tmpdir(), 'paidrelay-stack-'));
  const admissionPort = await freePort();
  const config = loadConfig({
    HOST: '127.0.0.1',
    PORT: '0',
    ADMISSION_PORT: String(admissionPort),
    PAYMENTS_URL: `http://127.0.0.1:${admissionPort}/pay`,
    DATA_DIR: dataDir,
    LOG_LEVEL: process.env.TEST_LOG_LEVEL ?? 'silent',
    VERIFY_WORKERS: '1',
    REDIS_PREFIX: TEST_REDIS_PREFIX,
    // Each test names the prices it needs, or takes the defaults of `pnpm start`.
    ...(opts.defaultPrices ? {} : { PRICE_ADMISSION_MSAT: '0', PRICE_EVENT_MSAT: '0' }),
    ...(databaseUrl ? { DATABASE_URL: databaseUrl } : {}),
    ...env,
  });
  const stack = await startAll(config, createLogger(config.LOG_LEVEL, 'stack-test'));
  return {
    relayUrl: stack.relay.url,
    paymentsUrl: config.PAYMENTS_URL,
    apiBase: `http://127.0.0.1:${admissionPort}`,
    payerNwc: stack.dev!.payerWalletNwc,
    dataDir,
    stack,
    async stop() {
      await stack.close();
      await db?.drop();
    },
  };
}
