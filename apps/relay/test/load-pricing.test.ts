import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { getToken } from 'nostr-tools/nip98';
import { npubEncode } from 'nostr-tools/nip19';
import { finalizeEvent } from 'nostr-tools/pure';
import { eventToJson } from '@paidrelay/nostr';
import { RedisProxy } from '../../../packages/bus/test/proxy.ts';
import { backends, buy, newKey, RawClient, sign, until, startTestRelay, type TestRelay } from './harness.ts';

/**
 * Relay-wide load pricing and the top senders, on two replicas sharing Postgres and Redis (the
 * second through a TCP hop that plays Redis going away). A capacity of 5 writes a second and a
 * multiplier capped at 2 (one load level) keep the numbers small. Levels are read from each
 * replica's /metrics; evaluations are counted there too (relay_load_evaluations), never timed.
 */

const redisBase = process.env.TEST_REDIS_URL;
if (process.env.CI && !redisBase) throw new Error('CI must set TEST_REDIS_URL');

type Key = ReturnType<typeof newKey>;

async function metric(relay: TestRelay, name: string): Promise<number> {
  const res = await fetch(`http://127.0.0.1:${relay.port}/metrics`, { signal: AbortSignal.timeout(5_000) });
  const line = (await res.text()).split('\n').find((l) => l.startsWith(`${name} `));
  return Number(line?.split(' ')[1] ?? Number.NaN);
}

async function rpc(relay: TestRelay, who: Key, method: string, params: unknown[] = []) {
  const url = `http://127.0.0.1:${relay.port}/`;
  const body = JSON.stringify({ method, params });
  const auth = await getToken(url, 'post', (t) => finalizeEvent(t, who.sk), true, { method, params });
  const res = await fetch(url, {
    method: 'POST',
    headers: { 'Content-Type': 'application/nostr+json+rpc', Authorization: auth },
    body,
    signal: AbortSignal.timeout(10_000),
  });
  return { status: res.status, body: (await res.json()) as { result?: any; error?: string } };
}

/** Sends all at once and waits for every OK: a burst. */
async function burst(c: RawClient, evs: ReturnType<typeof sign>[]) {
  for (const ev of evs) c.send(['EVENT', ev]);
  return Promise.all(evs.map((ev) => c.ok(ev.id, 30_000)));
}

/** The refusal of a write from a key that never paid: "21 sats for admission or <n> sats for this event (...)". */
async function refusal(c: RawClient): Promise<string> {
  const ev = sign(newKey().sk, { content: 'unpaid' });
  c.send(['EVENT', ev]);
  const m = await c.ok(ev.id, 10_000);
  expect(m[2]).toBe(false);
  return m[3] as string;
}

const notes = (k: Key, n: number, tag: string) => Array.from({ length: n }, (_, i) => sign(k.sk, { content: `${tag} ${i}` }));

describe.runIf(backends().includes('postgres') && redisBase)('load pricing and top senders across two replicas (Postgres, Redis)', () => {
  // A Redis database of its own: the shared `load` counter and the rankings are not other tests'.
  const db = 1 + Math.floor(Math.random() * 15);
  const redisUrl = `${redisBase}/${db}`;
  const admin = newKey();
  let a: TestRelay;
  let b: TestRelay;
  let proxy: RedisProxy;
  let ca: RawClient;
  let cb: RawClient;
  const env = {
    PRICE_ADMISSION_MSAT: '21000',
    PRICE_EVENT_MSAT: '2000',
    ALLOWANCE_FRESH_EVENTS: '10000',
    SURGE_CAPACITY_PER_SECOND: '5',
    SURGE_MAX_MULTIPLIER: '2',
    ADMIN_PUBKEYS: npubEncode(admin.pubkey),
  };

  beforeAll(async () => {
    proxy = await RedisProxy.forwarding(redisBase as string);
    a = await startTestRelay('postgres', { ...env, REDIS_URL: redisUrl });
    b = await startTestRelay('postgres', { ...env, REDIS_URL: `${proxy.url()}/${db}` }, { databaseUrl: a.databaseUrl });
    [ca, cb] = [await RawClient.open(a.url), await RawClient.open(b.url)];
  });
  afterAll(async () => {
    ca?.close();
    cb?.close();
    await b?.close();
    await a?.stop();
    await proxy?.close();
  });

  it('a burst raises the level on both replicas (the price doubles, "the relay is busy"), the heavy sender tops the list, and the level falls back', async () => {
    const quiet = /^blocked: payment required: 21 sats for admission or 2 sats for this event: http/;
    expect(await refusal(cb)).toMatch(quiet);
    const [heavy, light] = [newKey(), newKey()];
    await buy(a, heavy.pubkey, 'admission', 21_000);
    await buy(a, light.pubkey, 'admission', 21_000);
    // 60 writes of the heavy key over both replicas and 5 of the light one: 65 in a second or
    // two, where full load is 90% of 5 a second over the 10 s window (43).
    const onA = notes(heavy, 40, 'a');
    const onB = notes(heavy, 20, 'b');
    const lightOnB = notes(light, 5, 'light');
    const oks = await Promise.all([burst(ca, onA), burst(cb, [...onB, ...lightOnB])]);
    expect(oks.flat().every((m) => m[2] === true)).toBe(true);

    await until(async () => (await metric(a, 'relay_load_level')) === 1 && (await metric(b, 'relay_load_level')) === 1, 20_000);
    expect(await metric(b, 'relay_write_rate')).toBeGreaterThanOrEqual(4.5);
    const busy =
      /^blocked: payment required: 21 sats for admission or 4 sats for this event \(the relay is busy; 2 sats when quiet\): http/;
    expect(await refusal(ca)).toMatch(busy);
    expect(await refusal(cb)).toMatch(busy);

    // Top senders, through NIP-86 on either replica: every replica's counts summed.
    const bytes = (evs: ReturnType<typeof sign>[]) => evs.reduce((s, ev) => s + Buffer.byteLength(eventToJson(ev)), 0);
    const r = await rpc(b, admin, 'listtopsenders', [{ limit: 100 }]);
    expect(r.status, JSON.stringify(r.body)).toBe(200);
    expect(r.body.result.window_seconds).toBe(3600);
    const senders = r.body.result.senders as { pubkey: string }[];
    const ours = senders.filter((s) => s.pubkey === heavy.pubkey || s.pubkey === light.pubkey);
    // Own volume under a step (100 events): the multiplier is the load's, 2.
    expect(ours).toEqual([
      { pubkey: heavy.pubkey, events: 60, bytes: bytes([...onA, ...onB]), multiplier: 2 },
      { pubkey: light.pubkey, events: 5, bytes: bytes(lightOnB), multiplier: 2 },
    ]);
    const top1 = await rpc(a, admin, 'listtopsenders', [{ limit: 1 }]);
    expect(top1.body.result.senders).toHaveLength(1);
    expect((await rpc(a, admin, 'listtopsenders', [{ limit: 101 }])).body.error).toMatch(/limit must be an integer from 1 to 100/);
    expect((await rpc(a, newKey(), 'listtopsenders')).status).toBe(401);

    // The load stops: the level holds while the window still carries the burst, then falls.
    const at = await metric(b, 'relay_load_evaluations');
    await until(async () => (await metric(a, 'relay_load_level')) === 0 && (await metric(b, 'relay_load_level')) === 0, 30_000);
    expect((await metric(b, 'relay_load_evaluations')) - at).toBeGreaterThanOrEqual(2);
    expect(await refusal(cb)).toMatch(quiet);
  });

  it('while Redis is out for a replica, it keeps charging at the level it had', async () => {
    const k = newKey();
    await buy(a, k.pubkey, 'admission', 21_000);
    const oks = await burst(ca, notes(k, 60, 'again'));
    expect(oks.every((m) => m[2] === true)).toBe(true);
    await until(async () => (await metric(b, 'relay_load_level')) === 1, 20_000);
    await proxy.refuse();
    // The replica with Redis sees the load fall and lowers its level; the one without cannot
    // know the other's writes, so it keeps its level meanwhile.
    await until(async () => (await metric(a, 'relay_load_level')) === 0, 30_000);
    const at = await metric(b, 'relay_load_evaluations');
    await until(async () => (await metric(b, 'relay_load_evaluations')) >= at + 2, 10_000);
    expect(await metric(b, 'relay_load_level')).toBe(1);
    expect(await refusal(cb)).toMatch(/4 sats for this event \(the relay is busy; 2 sats when quiet\)/);
    // Redis back: the shared rate is read again and the level falls.
    await proxy.listen();
    await until(async () => (await metric(b, 'relay_load_level')) === 0, 30_000);
  });
});
