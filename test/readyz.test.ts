/**
 * `/readyz` on the relay and on the admission service reports the bus, but only the database
 * makes a replica unready: with Redis unreachable both stay ready and say `bus: redis down`.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort, startStack, type TestStack } from './stack.ts';

async function readyz(base: string): Promise<{ status: number; body: string }> {
  const res = await fetch(`${base}/readyz`, { signal: AbortSignal.timeout(10_000) });
  return { status: res.status, body: await res.text() };
}
const httpOf = (wsUrl: string) => wsUrl.replace(/^ws/, 'http').replace(/\/$/, '');

describe('/readyz with Redis unreachable', () => {
  let t: TestStack;
  beforeAll(async () => {
    t = await startStack({ REDIS_URL: `redis://127.0.0.1:${await freePort()}` });
  });
  afterAll(() => t?.stop());

  it('is ready and reports the bus down, on the relay and on the admission service', async () => {
    for (const base of [httpOf(t.relayUrl), t.apiBase])
      expect(await readyz(base)).toEqual({ status: 200, body: 'ready\nbus: redis down\n' });
  });
});

const REDIS = process.env.TEST_REDIS_URL;
describe.skipIf(!REDIS && !process.env.CI)('/readyz with Redis', () => {
  let t: TestStack;
  beforeAll(async () => {
    if (!REDIS) throw new Error('CI needs TEST_REDIS_URL');
    t = await startStack({ REDIS_URL: REDIS });
  });
  afterAll(() => t?.stop());

  it('reports the bus up once its connections are reading', async () => {
    for (const base of [httpOf(t.relayUrl), t.apiBase]) {
      const end = Date.now() + 10_000;
      let r = await readyz(base);
      while (r.body.includes('down') && Date.now() < end) {
        await new Promise((ok) => setTimeout(ok, 100));
        r = await readyz(base);
      }
      expect(r).toEqual({ status: 200, body: 'ready\nbus: redis up\n' });
    }
  });
});
