import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { getAccount, listHeldEvents } from '@paidrelay/db';
import { buy, backends, until, newKey, RawClient, sign, sleep, startTestRelay, type TestRelay } from './harness.ts';

const redisUrl = process.env.TEST_REDIS_URL;
if (process.env.CI && !redisUrl) throw new Error('CI must set TEST_REDIS_URL');
const now = () => Math.floor(Date.now() / 1000);

/** Sends events one at a time, each after the previous OK, and returns the OKs. */
async function writeEach(c: RawClient, evs: ReturnType<typeof sign>[]) {
  const oks: unknown[][] = [];
  for (const ev of evs) {
    c.send(['EVENT', ev]);
    oks.push(await c.ok(ev.id, 10_000));
  }
  return oks;
}

describe.runIf(backends().includes('postgres') && redisUrl)('spam pricing across two replicas (Postgres, Redis)', () => {
  let a: TestRelay;
  let b: TestRelay;
  const env = {
    PRICE_ADMISSION_MSAT: '21000',
    PRICE_EVENT_MSAT: '2000',
    ALLOWANCE_FRESH_EVENTS: '6',
    // The admission paid is paid history too: kept from growing the allowance here.
    TRUST_PAID_MSAT: String(1e15),
    REDIS_URL: redisUrl as string,
  };

  beforeAll(async () => {
    a = await startTestRelay('postgres', env);
    b = await startTestRelay('postgres', env, { databaseUrl: a.databaseUrl });
  });
  afterAll(async () => {
    await b?.close();
    await a?.stop();
  });

  it('a fresh key writes its daily allowance once over both replicas; past it each event is refused with the price and held', async () => {
    const k = newKey();
    await buy(a, k.pubkey, 'admission', 21_000);
    const [ca, cb] = [await RawClient.open(a.url), await RawClient.open(b.url)];
    const onA = await writeEach(
      ca,
      Array.from({ length: 6 }, (_, i) => sign(k.sk, { content: `note ${i}` })),
    );
    expect(onA.map((m) => m[2])).toEqual([true, true, true, true, true, true]);
    // The seventh on the same replica is refused at once: it counts its own writes.
    const [seventh] = await writeEach(ca, [sign(k.sk, { content: 'note 6' })]);
    expect(seventh[2]).toBe(false);
    expect(seventh[3]).toMatch(
      /^blocked: payment required: 2 sats for this event \(daily allowance of 6 events used; balance 0 sats\), add credit or pay for it: http:\/\/\S+\/e\/[0-9a-f]{64}$/,
    );
    // The other replica: the counts reach it through Redis. Its first write after a pause may be
    // decided on the total it last knew; the next ones see the shared total. Never a second allowance.
    await sleep(1_200);
    const onB = await writeEach(
      cb,
      Array.from({ length: 6 }, (_, i) => sign(k.sk, { content: `on b ${i}` })),
    );
    const acceptedOnB = onB.filter((m) => m[2] === true).length;
    expect(acceptedOnB).toBeLessThanOrEqual(1);
    for (const m of onB.filter((m) => m[2] === false)) expect(m[3]).toMatch(/daily allowance of 6 events used/);
    // Held in batches, written in the background.
    const expected = 1 + (6 - acceptedOnB);
    await until(async () => (await listHeldEvents(a.ctx.db.kysely, k.pubkey, now())).length === expected);
    ca.close();
    cb.close();
  });
});

describe.each(backends())('spam pricing on one replica (%s)', (backend) => {
  let relay: TestRelay;
  beforeAll(async () => {
    relay = await startTestRelay(backend, { PRICE_PUBLICATION_MSAT: '1000', SURGE_STEP_EVENTS: '3' });
  });
  afterAll(async () => {
    await relay?.stop();
  });

  it('the publication price doubles with each step of the sender\u2019s volume', async () => {
    const k = newKey();
    await buy(relay, k.pubkey, 'credit', 100_000);
    const c = await RawClient.open(relay.url);
    const oks = await writeEach(
      c,
      Array.from({ length: 7 }, (_, i) => sign(k.sk, { content: `paid ${i}` })),
    );
    expect(oks.every((m) => m[2] === true)).toBe(true);
    // 1 + 1 + 1, then 2 + 2 + 2 (3 events in the window), then 4: 13 sats.
    expect((await getAccount(relay.ctx.db.kysely, k.pubkey))?.balanceMsat).toBe(100_000 - 13_000);
    // With no credit left for it, the refusal names the surge and the quiet price.
    const poor = newKey();
    await buy(relay, poor.pubkey, 'credit', 3_000);
    const poorOks = await writeEach(
      c,
      Array.from({ length: 4 }, (_, i) => sign(poor.sk, { content: `poor ${i}` })),
    );
    expect(poorOks.map((m) => m[2])).toEqual([true, true, true, false]);
    expect(poorOks[3][3]).toMatch(
      /^blocked: payment required: 2 sats for this event \(3 events from you in the last hour; 1 sat when quiet; balance 0 sats\), add credit or pay for it: /,
    );
    // Its held event is invoiced at that surge price, not at the quiet one.
    const held = await until(async () => (await listHeldEvents(relay.ctx.db.kysely, poor.pubkey, now()))[0]);
    expect(held.amountMsat).toBe(2_000);
    c.close();
  });
});
