import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createServer } from 'node:net';
import WebSocket from 'ws';
import type { BucketReply, SharedBuckets } from '@paidrelay/bus';
import { loadConfig } from '@paidrelay/config';
import { LEASE_MS, Limit, LocalBucket, RateLimiter } from '../src/rate-limit.ts';
import { networkKey } from '../src/limits.ts';
import { newKey, sign, startTestRelay, type TestRelay } from './harness.ts';

const redisUrl = process.env.TEST_REDIS_URL;
const databaseUrl = process.env.TEST_DATABASE_URL;
if (process.env.CI && (!redisUrl || !databaseUrl)) throw new Error('CI must set TEST_REDIS_URL and TEST_DATABASE_URL');

// ---------------------------------------------------------------------------------------------
// The bucket math, on a virtual clock

/** The Lua script of packages/bus/src/buckets.ts, in JavaScript, on the virtual clock. */
class FakeShared implements SharedBuckets {
  calls = 0;
  up = true;
  private buckets = new Map<string, { t: number; ts: number }>();
  constructor(private readonly clock: () => number) {}
  usable(): boolean {
    return this.up;
  }
  async take(key: string, rate: number, burst: number, charge: number, want: number): Promise<BucketReply> {
    this.calls++;
    await Promise.resolve();
    if (!this.up) throw new Error('down');
    const now = this.clock();
    const b = this.buckets.get(key) ?? { t: burst, ts: now };
    if (now > b.ts) {
      b.t = Math.min(burst, b.t + ((now - b.ts) * rate) / 1000);
      b.ts = now;
    }
    b.t = Math.max(-burst, b.t - charge);
    let granted = 0;
    if (b.t >= 1) {
      granted = Math.min(want, Math.floor(b.t));
      b.t -= granted;
    }
    this.buckets.set(key, b);
    return { granted, waitMs: b.t < 1 ? Math.ceil(((1 - b.t) * 1000) / rate) : 0 };
  }
  async close(): Promise<void> {}
}

const spec = { name: 't', rate: 10, burst: 50, unit: 'events per second per pubkey' };

/** Takes `n` tokens at once (concurrently, as a burst arrives), returns how many were granted. */
async function burst(limit: Limit, key: string, n: number): Promise<{ ok: number; reasons: string[] }> {
  const out = await Promise.all(Array.from({ length: n }, () => limit.take(key)));
  return { ok: out.filter((v) => v === undefined).length, reasons: out.filter((v): v is string => v !== undefined) };
}

describe('token bucket math (virtual clock)', () => {
  it('a local bucket gives its burst, then one token per 1/rate seconds, and says when', () => {
    const b = new LocalBucket(2, 5, 0);
    for (let i = 0; i < 5; i++) expect(b.take(0)).toBe(0);
    expect(b.take(0)).toBe(500);
    expect(b.take(499)).toBeGreaterThan(0);
    expect(b.take(499)).toBeLessThanOrEqual(2);
    expect(b.take(500)).toBe(0);
    expect(b.take(500)).toBe(500);
    // A long pause fills it up to the burst, not beyond.
    let n = 0;
    while (b.take(100_000) === 0) n++;
    expect(n).toBe(5);
    expect(b.full(200_000)).toBe(true);
  });

  it('a shared limit gives one burst, refuses with the rate and when to retry, and refills at the rate', async () => {
    let now = 1_000_000;
    const store = new FakeShared(() => now);
    const limit = new Limit(spec, store, () => now);
    const first = await burst(limit, 'k', 200);
    // At most one lease of credit beyond the burst, never less than the burst.
    expect(first.ok).toBeGreaterThanOrEqual(spec.burst);
    expect(first.ok).toBeLessThanOrEqual(spec.burst + limit.leaseSize);
    expect(first.reasons[0]).toMatch(/^rate-limited: at most 10 events per second per pubkey, retry in \d+ s$/);
    // Over 20 virtual seconds of steady overload, the long-run rate is exact (credit is charged).
    let ok = 0;
    for (let step = 0; step < 200; step++) {
      now += 100;
      ok += (await burst(limit, 'k', 5)).ok;
    }
    const expected = 20 * spec.rate;
    expect(ok).toBeGreaterThanOrEqual(expected - spec.burst - limit.leaseSize);
    expect(ok).toBeLessThanOrEqual(expected + limit.leaseSize);
    // Another key has its own bucket.
    expect((await burst(limit, 'other', spec.burst)).ok).toBe(spec.burst);
  });

  it('two replicas sharing a store give one bucket in total, not two', async () => {
    let now = 5_000_000;
    const store = new FakeShared(() => now);
    const a = new Limit(spec, store, () => now);
    const b = new Limit(spec, store, () => now);
    const [ra, rb] = await Promise.all([burst(a, 'k', 100), burst(b, 'k', 100)]);
    expect(ra.ok + rb.ok).toBeGreaterThanOrEqual(spec.burst);
    expect(ra.ok + rb.ok).toBeLessThanOrEqual(spec.burst + 2 * a.leaseSize);
    now += 1000;
    const [sa, sb] = await Promise.all([burst(a, 'k', 50), burst(b, 'k', 50)]);
    // One second later: about one second of refill between them (the overshoot was charged).
    expect(sa.ok + sb.ok).toBeLessThanOrEqual(spec.rate + 2 * a.leaseSize);
  });

  it('a denied key is refused locally until its bucket refills: a flood costs few round trips', async () => {
    let now = 9_000_000;
    const store = new FakeShared(() => now);
    const limit = new Limit(spec, store, () => now);
    await burst(limit, 'k', 100);
    const calls = store.calls;
    for (let i = 0; i < 50; i++) {
      now += 1; // 50 ms of flood, 1,000 messages: the bucket (10/s) stays empty
      await burst(limit, 'k', 20);
    }
    expect(store.calls - calls).toBeLessThanOrEqual(3);
  });

  it('a sparse sender costs at most one lease per message, so a person never runs dry', async () => {
    let now = 12_000_000;
    const store = new FakeShared(() => now);
    const limit = new Limit(spec, store, () => now);
    for (let i = 0; i < 100; i++) {
      now += LEASE_MS + 1; // each share has lapsed when the next message comes
      expect(await limit.take('k')).toBeUndefined();
    }
  });

  it('with the store down, each process still limits with its own bucket', async () => {
    let now = 15_000_000;
    const store = new FakeShared(() => now);
    store.up = false;
    const limit = new Limit(spec, store, () => now);
    const r = await burst(limit, 'k', 200);
    expect(r.ok).toBe(spec.burst);
    now += 1000;
    expect((await burst(limit, 'k', 200)).ok).toBe(spec.rate);
  });

  it('a rate of 0 disables a limit; addresses are cut to the configured prefixes', async () => {
    const config = loadConfig({ RATE_EVENTS_PER_PUBKEY: '0', RATE_V4_PREFIX: '24', RATE_V6_PREFIX: '48' });
    const rl = new RateLimiter(config);
    expect(rl.eventsPerPubkey).toBeUndefined();
    expect(rl.eventFromPubkey('a'.repeat(64))).toBeUndefined();
    expect(networkKey('203.0.113.77', 48, 24)).toBe('203.0.113.0/24');
    expect(networkKey('::ffff:203.0.113.77', 48, 24)).toBe('203.0.113.0/24');
    expect(networkKey('203.0.113.77')).toBe('203.0.113.77');
    expect(networkKey('2001:db8:1:2::9', 48)).toBe(networkKey('2001:db8:1:ff::1', 48));
    // Per address: one bucket for the /24, REQ and EVENT buckets apart.
    let n = 0;
    while (n < 10_000 && rl.eventFromAddress(`198.51.100.${n % 250}`) === undefined) n++;
    expect(n).toBe(config.RATE_EVENTS_BURST_PER_IP);
    expect(rl.read('198.51.100.1')).toBeUndefined();
    expect(rl.eventFromAddress('198.51.101.1')).toBeUndefined();
    await rl.close();
  });
});

// ---------------------------------------------------------------------------------------------
// Through real WebSockets, real Postgres and real Redis

/** A random loopback address, so buckets left in Redis by an earlier run are never reused. */
function loopback(): string {
  const r = () => 1 + Math.floor(Math.random() * 250);
  return `127.${r()}.${r()}.${r()}`;
}

type Msg = unknown[];

/** A WebSocket from a chosen source address (all of 127/8 is loopback; the relay sees distinct IPs). */
class Client {
  readonly messages: Msg[] = [];
  private waiters: { pred: (m: Msg) => boolean; resolve: (m: Msg) => void }[] = [];
  private constructor(private readonly ws: WebSocket) {
    ws.on('message', (data) => {
      const m = JSON.parse(data.toString()) as Msg;
      const w = this.waiters.find((x) => x.pred(m));
      if (w) {
        this.waiters.splice(this.waiters.indexOf(w), 1);
        w.resolve(m);
      } else this.messages.push(m);
    });
  }
  static open(url: string, localAddress: string): Promise<Client> {
    return new Promise((resolve, reject) => {
      const ws = new WebSocket(url, { localAddress });
      ws.once('open', () => resolve(new Client(ws)));
      ws.once('error', reject);
    });
  }
  send(m: unknown): void {
    this.ws.send(JSON.stringify(m));
  }
  next(pred: (m: Msg) => boolean, ms = 10_000): Promise<Msg> {
    const have = this.messages.findIndex(pred);
    if (have >= 0) return Promise.resolve(this.messages.splice(have, 1)[0]);
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => reject(new Error('no answer')), ms);
      this.waiters.push({
        pred,
        resolve: (m) => {
          clearTimeout(t);
          resolve(m);
        },
      });
    });
  }
  close(): void {
    this.ws.close();
  }
}

type Tally = { ok: number; limited: number; other: string[]; reasons: string[]; seconds: number };

/** Sends every event (each on its client, all at once) and counts the OK answers. */
async function publish(sends: { client: Client; ev: ReturnType<typeof sign> }[]): Promise<Tally> {
  const t0 = Date.now();
  for (const s of sends) s.client.send(['EVENT', s.ev]);
  const answers = await Promise.all(sends.map((s) => s.client.next((m) => m[0] === 'OK' && m[1] === s.ev.id)));
  const t: Tally = { ok: 0, limited: 0, other: [], reasons: [], seconds: (Date.now() - t0) / 1000 };
  for (const a of answers) {
    if (a[2] === true) t.ok++;
    else if (String(a[3]).startsWith('rate-limited:')) {
      t.limited++;
      t.reasons.push(String(a[3]));
    } else t.other.push(String(a[3]));
  }
  return t;
}

const events = (sk: Uint8Array, n: number, tag: string) => Array.from({ length: n }, (_, i) => sign(sk, { content: `${tag} ${i}` }));
/** The bucket's worth plus what refilled meanwhile, plus one lease of credit per replica. */
const ceiling = (burst: number, rate: number, t: Tally, replicas = 1) =>
  burst + Math.ceil(rate * t.seconds) + 1 + replicas * Math.ceil(burst / 10);

const LIMITS = {
  RATE_EVENTS_PER_PUBKEY: '1',
  RATE_EVENTS_BURST_PER_PUBKEY: '20',
  RATE_EVENTS_PER_IP: '1',
  RATE_EVENTS_BURST_PER_IP: '40',
  RATE_REQS_PER_IP: '1',
  RATE_REQS_BURST_PER_IP: '10',
};

describe.runIf(redisUrl && databaseUrl)('rate limits over WebSockets (Postgres, Redis)', () => {
  let a: TestRelay;
  let b: TestRelay;
  const clients: Client[] = [];
  const open = async (relay: TestRelay, addr: string) => {
    const c = await Client.open(relay.url, addr);
    clients.push(c);
    return c;
  };

  beforeAll(async () => {
    a = await startTestRelay('postgres', { ...LIMITS, REDIS_URL: redisUrl! });
    // A second replica on the same database and Redis.
    b = await startTestRelay('postgres', { ...LIMITS, REDIS_URL: redisUrl! }, { databaseUrl: a.databaseUrl });
  });
  afterAll(async () => {
    for (const c of clients) c.close();
    await b?.close();
    await a?.stop();
  });

  it('one pubkey over several connections (and addresses) gets one bucket; another pubkey is unaffected', async () => {
    const k = newKey();
    const conns = await Promise.all([loopback(), loopback(), loopback(), loopback()].map((addr) => open(a, addr)));
    const evs = events(k.sk, 60, 'pk');
    const t = await publish(evs.map((ev, i) => ({ client: conns[i % 4], ev })));
    expect(t.other).toEqual([]);
    expect(t.ok).toBeGreaterThanOrEqual(16);
    expect(t.ok).toBeLessThanOrEqual(ceiling(20, 1, t));
    expect(t.reasons[0]).toMatch(/^rate-limited: at most 1 events per second per pubkey, retry in \d+ s$/);
    const other = newKey();
    const u = await publish(events(other.sk, 10, 'other').map((ev, i) => ({ client: conns[i % 4], ev })));
    expect(u.ok).toBe(10);
  });

  it('one address over several connections gets one bucket, whatever the keys; another address is unaffected', async () => {
    const addr = loopback();
    const conns = await Promise.all([1, 2, 3, 4].map(() => open(a, addr)));
    const keys = [newKey(), newKey(), newKey(), newKey(), newKey()];
    const sends = keys.flatMap((k, j) => events(k.sk, 16, 'ip').map((ev, i) => ({ client: conns[(i + j) % 4], ev })));
    const t = await publish(sends);
    expect(t.other).toEqual([]);
    expect(t.ok).toBeGreaterThanOrEqual(32);
    expect(t.ok).toBeLessThanOrEqual(ceiling(40, 1, t));
    expect(t.reasons[0]).toMatch(/^rate-limited: at most 1 events per second per address, retry in \d+ s$/);
    const elsewhere = await open(a, loopback());
    const u = await publish(events(keys[0].sk, 3, 'elsewhere').map((ev) => ({ client: elsewhere, ev })));
    expect(u.ok).toBe(3);
  });

  it('REQ and COUNT per address: CLOSED rate-limited beyond the bucket; another address is unaffected', async () => {
    const addr = loopback();
    const conns = await Promise.all([1, 2].map(() => open(a, addr)));
    const t0 = Date.now();
    for (let i = 0; i < 30; i++) conns[i % 2].send(['REQ', `s${i}`, { kinds: [1], limit: 1 }]);
    const ends = await Promise.all(
      Array.from({ length: 30 }, (_, i) => conns[i % 2].next((m) => (m[0] === 'EOSE' || m[0] === 'CLOSED') && m[1] === `s${i}`)),
    );
    const seconds = (Date.now() - t0) / 1000;
    const served = ends.filter((m) => m[0] === 'EOSE').length;
    const closed = ends.filter((m) => m[0] === 'CLOSED');
    expect(served).toBeGreaterThanOrEqual(8);
    expect(served).toBeLessThanOrEqual(10 + Math.ceil(seconds) + 1 + 1);
    expect(served + closed.length).toBe(30);
    expect(String(closed[0][2])).toMatch(/^rate-limited: at most 1 REQ or COUNT per second per address, retry in \d+ s$/);
    conns[0].send(['COUNT', 'c', { kinds: [1] }]);
    expect((await conns[0].next((m) => m[1] === 'c'))[0]).toBe('CLOSED');
    const elsewhere = await open(a, loopback());
    elsewhere.send(['REQ', 'x', { kinds: [1], limit: 1 }]);
    expect((await elsewhere.next((m) => m[1] === 'x' && m[0] !== 'EVENT'))[0]).toBe('EOSE');
  });

  it('the buckets hold across two replicas: a burst split over A and B gets one bucket, not two', async () => {
    const k = newKey();
    const ca = await Promise.all([loopback(), loopback()].map((addr) => open(a, addr)));
    const cb = await Promise.all([loopback(), loopback()].map((addr) => open(b, addr)));
    const conns = [ca[0], cb[0], ca[1], cb[1]];
    const t = await publish(events(k.sk, 80, 'replicas').map((ev, i) => ({ client: conns[i % 4], ev })));
    expect(t.other).toEqual([]);
    expect(t.ok).toBeGreaterThanOrEqual(16);
    // Two independent buckets would let 40 through.
    expect(t.ok).toBeLessThanOrEqual(ceiling(20, 1, t, 2));
    expect(t.ok).toBeLessThan(40);
  });
});

/** A local port nothing listens on. */
function closedPort(): Promise<number> {
  return new Promise((resolve) => {
    const srv = createServer().listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as { port: number };
      srv.close(() => resolve(port));
    });
  });
}

describe.runIf(databaseUrl)('rate limits with Redis unreachable', () => {
  let relay: TestRelay;
  beforeAll(async () => {
    relay = await startTestRelay('postgres', { ...LIMITS, RATE_EVENTS_PER_IP: '0', REDIS_URL: `redis://127.0.0.1:${await closedPort()}` });
  });
  afterAll(async () => {
    await relay?.stop();
  });

  it('the per-process fallback bucket still limits a pubkey', async () => {
    const k = newKey();
    const conns = await Promise.all([loopback(), loopback(), loopback()].map((addr) => Client.open(relay.url, addr)));
    const t = await publish(events(k.sk, 60, 'down').map((ev, i) => ({ client: conns[i % 3], ev })));
    expect(t.other).toEqual([]);
    expect(t.ok).toBeGreaterThanOrEqual(20);
    expect(t.ok).toBeLessThanOrEqual(20 + Math.ceil(t.seconds) + 1);
    expect(t.reasons[0]).toMatch(/^rate-limited: at most 1 events per second per pubkey/);
    const other = await publish(events(newKey().sk, 5, 'other').map((ev) => ({ client: conns[0], ev })));
    expect(other.ok).toBe(5);
    for (const c of conns) c.close();
  });
});

describe('NIP-11', () => {
  it('lists the buckets it enforces', async () => {
    const { relayInfo } = await import('../src/nip11.ts');
    const config = loadConfig({ RATE_EVENTS_PER_PUBKEY: '7', RATE_REQS_PER_IP: '0' });
    const lim = relayInfo(config, 'a'.repeat(64)).limitation as Record<string, number>;
    expect(lim).toMatchObject({
      events_per_second_per_pubkey: 7,
      events_burst_per_pubkey: 100,
      events_per_second_per_ip: 50,
      events_burst_per_ip: 300,
      reqs_per_second_per_ip: 0,
    });
  });
});
