/**
 * A grant whose bus message was lost reaches the gate when the bus sees the loss, not at the
 * account cache's next periodic refresh (30 s), and so does a ban (moderation's reload, 15 s);
 * a bus message that is not an account row changes nothing. Real Postgres, real Redis, gaps
 * and junk on the channels made with a raw XADD.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createClient } from 'redis';
import { ACCOUNTS_CHANNEL } from '@paidrelay/bus';
import { addModeration } from '@paidrelay/db';
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
    await rawAdd(ACCOUNTS_CHANNEL, [
      { s: '1', c: '1', m: 'not an account' },
      { s: '3', c: '3', m: 'not an account' },
    ]);
    // Well within the 30 s periodic refresh.
    await until(async () => (await write(k.sk))[0], 5_000);
  });

  it('applies a ban whose message was lost as soon as the bus reports a gap', async () => {
    const k = newKey();
    await buy(relay, k.pubkey, 'admission', 21_000);
    expect((await write(k.sk))[0]).toBe(true);
    // Banned on another replica, whose message never came.
    await addModeration(
      relay.ctx.db.kysely,
      { list: 'banned_pubkey', value: k.pubkey, reason: 'spam', createdBy: 'a'.repeat(64) },
      Math.floor(Date.now() / 1000),
    );
    await new Promise((r) => setTimeout(r, 300));
    expect((await write(k.sk))[0]).toBe(true);
    // A gap on another channel (a moderation message would make it reload by itself): a loss is
    // a loss of anything that sender sent, its moderation message included.
    await rawAdd(ACCOUNTS_CHANNEL, [
      { s: '1', c: '1', m: 'not an account' },
      { s: '3', c: '3', m: 'not an account' },
    ]);
    // Well within the 15 s periodic reload.
    await until(async () => !(await write(k.sk))[0], 5_000);
  });

  it('ignores an accounts message that is not an account row', async () => {
    const k = newKey();
    expect((await write(k.sk))[0]).toBe(false);
    // Numbered as a sender's first messages (no loss): only the content is wrong.
    await rawAdd(ACCOUNTS_CHANNEL, [
      { s: '1', c: '1', m: JSON.stringify({ pubkey: k.pubkey, admitted: 'yes', admittedUntil: null, balanceMsat: '1000000' }) },
      { s: '2', c: '2', m: JSON.stringify({ pubkey: k.pubkey, admitted: true, admittedUntil: null, balanceMsat: -5 }) },
      { s: '3', c: '3', m: '[1,2,3]' },
    ]);
    await new Promise((r) => setTimeout(r, 500));
    const [accepted, why] = await write(k.sk);
    expect(accepted, why).toBe(false);
    expect(why).toMatch(/^blocked: payment required/);
    // A well-formed row (from another new sender) is still taken.
    await rawAdd(ACCOUNTS_CHANNEL, [
      { s: '1', c: '1', m: JSON.stringify({ pubkey: k.pubkey, admitted: true, admittedUntil: null, balanceMsat: 0 }) },
    ]);
    await until(async () => (await write(k.sk))[0], 5_000);
  });

  let senders = 0;
  /** Messages from a new sender of our own, numbered as given, on `channel`'s stream. */
  async function rawAdd(channel: string, entries: { s: string; c: string; m: string }[]): Promise<void> {
    const raw = createClient({ url: redisUrl });
    await raw.connect();
    const o = `a-test-sender-${process.pid}-${++senders}`;
    for (const e of entries) await raw.xAdd(`${relay.ctx.config.REDIS_PREFIX}bus:${channel}`, '*', { o, ...e });
    await raw.close();
  }
});
