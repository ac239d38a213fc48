/**
 * A grant whose bus message was lost reaches the gate when the bus sees the loss, not at the
 * account cache's next periodic refresh (30 s): real Postgres, real Redis, a gap on the
 * accounts channel made with a raw XADD.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createClient } from 'redis';
import { ACCOUNTS_CHANNEL } from '@paidrelay/bus';
import { buy, newKey, RawClient, sign, startTestRelay, until, type TestRelay } from './harness.ts';

const redisUrl = process.env.TEST_REDIS_URL;
if (process.env.CI && (!redisUrl || !process.env.TEST_DATABASE_URL)) throw new Error('CI must set TEST_REDIS_URL and TEST_DATABASE_URL');

describe.skipIf(!redisUrl || !process.env.TEST_DATABASE_URL)('account cache after a lost bus message', () => {
  let relay: TestRelay;
  let c: RawClient;

  beforeAll(async () => {
    relay = await startTestRelay('postgres', { REDIS_URL: redisUrl!, PRICE_ADMISSION_MSAT: '21000' });
    c = await RawClient.open(relay.url);
  });
  afterAll(async () => {
    c?.close();
    await relay?.stop();
  });

  async function write(sk: Uint8Array): Promise<[boolean, string]> {
    const ev = sign(sk, { content: `hello ${Math.random()}` });
    c.send(['EVENT', ev]);
    const ok = await c.ok(ev.id);
    return [ok[2] as boolean, String(ok[3])];
  }

  it('reads the grant from the database as soon as the bus reports a gap', async () => {
    const k = newKey();
    expect((await write(k.sk))[0]).toBe(false);
    // Paid, but its message never reached this replica.
    await buy(relay, k.pubkey, 'admission', 21_000, { announce: false });
    await new Promise((r) => setTimeout(r, 300));
    const [stillRefused, why] = await write(k.sk);
    expect(stillRefused, why).toBe(false);
    expect(why).toMatch(/^blocked: payment required/);

    // Another sender's 1st and 3rd message on the accounts channel: its 2nd was lost.
    const raw = createClient({ url: redisUrl });
    await raw.connect();
    const key = `${relay.ctx.config.REDIS_PREFIX}bus:${ACCOUNTS_CHANNEL}`;
    await raw.xAdd(key, '*', { o: 'a-replica-that-lost-one', s: '1', c: '1', m: 'not an account' });
    await raw.xAdd(key, '*', { o: 'a-replica-that-lost-one', s: '3', c: '3', m: 'not an account' });
    await raw.close();
    // Well within the 30 s periodic refresh.
    await until(async () => (await write(k.sk))[0], 5_000);
  });
});
