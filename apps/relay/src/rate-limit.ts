import { RedisBuckets, type SharedBuckets } from '@paidrelay/bus';
import type { Config } from '@paidrelay/config';
import { encodeClosed, reason } from '@paidrelay/nostr';
import type { Logger } from 'pino';
import { send, type Connection } from './connection.ts';
import { networkKey } from './limits.ts';

/**
 * Token buckets per pubkey and per client address, across all of a client's connections and
 * shared by every replica through Redis.
 *
 * How Redis is used (batching): a replica does not ask Redis for every message. For each active
 * key it holds a small local share of tokens leased from the shared bucket (at most a tenth of the
 * burst, valid for LEASE_MS) and asks for the next share in the background when it runs low. A
 * message that finds no share is still decided at once: it is accepted on credit (at most one
 * share's worth of credit per key per replica), and the credit is charged to the shared bucket by
 * the next request, unconditionally (the bucket may go below zero, so nothing accepted is ever
 * forgotten: the long-run rate is exact; the short-run overshoot is at most one share per replica).
 * When a key has used both its share and its credit while a request is on its way, its messages
 * wait for that reply (bounded by RATE_REDIS_TIMEOUT_MS). When Redis answers that the bucket is
 * empty, the replica refuses that key locally until the bucket holds a token again, asking Redis
 * nothing meanwhile: a flood costs Redis one round trip per key and refill period, not one per
 * message. The bucket math runs in Redis on Redis's clock (packages/bus/src/buckets.ts).
 *
 * Redis down or slow: while the client is not connected, or for a second after a reply that did
 * not come in RATE_REDIS_TIMEOUT_MS, each replica decides with its own per-process buckets (same
 * rate and burst, so N replicas let a key through up to N times the rate meanwhile); nothing ever
 * waits on Redis for longer than the timeout. Without REDIS_URL the per-process buckets are the
 * buckets (one replica).
 */

/** How long a leased share is good for; what is left of it then is dropped. */
export const LEASE_MS = 1_000;
/** Keys remembered per limit and per process (local shares and fallback buckets); the oldest go first. */
const MAX_KEYS = 100_000;
const SWEEP_MS = 2_000;

/** Outcome of a take: undefined to go on, else the refusal reason. */
export type Verdict = string | undefined;

export type LimitSpec = {
  /** Bucket namespace in Redis (`ev-pk`, `ev-ip`, `req-ip`). */
  name: string;
  /** Tokens per second (> 0). */
  rate: number;
  burst: number;
  /** For the refusal: "events per second per pubkey". */
  unit: string;
};

/** A per-process token bucket on a caller-given clock (ms): the fallback, and the bucket without Redis. */
export class LocalBucket {
  private tokens: number;
  constructor(
    private readonly rate: number,
    private readonly burst: number,
    private last: number,
  ) {
    this.tokens = burst;
  }

  private refill(now: number): void {
    if (now > this.last) {
      this.tokens = Math.min(this.burst, this.tokens + ((now - this.last) * this.rate) / 1000);
      this.last = now;
    }
  }

  /** 0 when a token was taken, else the ms until one is there. */
  take(now: number): number {
    this.refill(now);
    if (this.tokens >= 1) {
      this.tokens -= 1;
      return 0;
    }
    return Math.ceil(((1 - this.tokens) * 1000) / this.rate);
  }

  /** Full again (forgetting it changes nothing). */
  full(now: number): boolean {
    this.refill(now);
    return this.tokens >= this.burst;
  }
}

/** One key's lease of the shared bucket, on this replica. */
type Lease = {
  /** Tokens granted by Redis not yet used (good until `until`). */
  share: number;
  until: number;
  /** Tokens used on credit, not yet sent to Redis. */
  debt: number;
  /** Credit sent with the request in flight. */
  charging: number;
  /** Takes waiting for a reply (a burst beyond share and credit). */
  waiting: number;
  inflight?: Promise<void>;
  /** Redis said the bucket is empty: refuse locally until then. */
  deniedUntil: number;
};

/** Rounds of Redis replies a waiting take sits through before it is refused (each bounded by the timeout). */
const WAIT_ROUNDS = 4;

/** One limit (rate, burst) over many keys. */
export class Limit {
  private leases = new Map<string, Lease>();
  private local = new Map<string, LocalBucket>();
  /** Credit per key and the least asked for in advance: a tenth of the burst. */
  readonly leaseSize: number;

  constructor(
    readonly spec: LimitSpec,
    private readonly store: SharedBuckets | undefined,
    private readonly clock: () => number = Date.now,
  ) {
    this.leaseSize = Math.max(1, Math.ceil(spec.burst / 10));
  }

  /** The refusals by seconds to wait, made once each (a flood is refused with the same few). */
  private refusals = new Map<number, string>();

  refusal(waitMs: number): string {
    const s = Math.max(1, Math.ceil(waitMs / 1000));
    let text = this.refusals.get(s);
    if (text === undefined) {
      text = reason('rate-limited', `at most ${this.spec.rate} ${this.spec.unit}, retry in ${s} s`);
      if (this.refusals.size < 64) this.refusals.set(s, text);
    }
    return text;
  }

  /** Takes one token for `key`: at once in nearly every case, a promise only while a burst waits for Redis. */
  take(key: string): Verdict | Promise<Verdict> {
    if (!this.store?.usable()) return this.takeLocal(key);
    const v = this.takeShared(key);
    // What the shared bucket lets through is drawn from the local one too, so that a switch to
    // the local buckets (Redis stalled) does not hand every key a fresh burst.
    if (v === undefined) this.takeLocal(key);
    else if (typeof v !== 'string')
      return v.then((r) => {
        if (r === undefined && this.store?.usable()) this.takeLocal(key);
        return r;
      });
    return v;
  }

  private takeLocal(key: string): Verdict {
    const now = this.clock();
    let b = this.local.get(key);
    if (!b) {
      b = new LocalBucket(this.spec.rate, this.spec.burst, now);
      remember(this.local, key, b);
    }
    const wait = b.take(now);
    return wait === 0 ? undefined : this.refusal(wait);
  }

  private takeShared(key: string): Verdict | Promise<Verdict> {
    const now = this.clock();
    let l = this.leases.get(key);
    if (!l) {
      l = { share: 0, until: 0, debt: 0, charging: 0, waiting: 0, deniedUntil: 0 };
      remember(this.leases, key, l);
    }
    if (l.share > 0 && now >= l.until) l.share = 0;
    // A share already granted is used even when a later reply said the bucket is now empty.
    if (l.share >= 1 && l.waiting === 0) {
      l.share--;
      if (l.share < this.leaseSize / 2) this.request(key, l);
      return undefined;
    }
    if (now < l.deniedUntil) return this.refusal(l.deniedUntil - now);
    if (l.debt + l.charging < this.leaseSize && l.waiting === 0) {
      l.debt++;
      this.request(key, l);
      return undefined;
    }
    return this.wait(key, l);
  }

  /** Share and credit used up: wait for Redis's replies (each bounded by the store's timeout). */
  private async wait(key: string, l: Lease): Promise<Verdict> {
    l.waiting++;
    try {
      for (let round = 0; round < WAIT_ROUNDS; round++) {
        this.request(key, l);
        await l.inflight;
        if (!this.store?.usable()) return this.takeLocal(key);
        const now = this.clock();
        if (l.share >= 1 && now < l.until) {
          l.share--;
          return undefined;
        }
        if (now < l.deniedUntil) return this.refusal(l.deniedUntil - now);
      }
      return this.refusal(1000 / this.spec.rate);
    } finally {
      l.waiting--;
    }
  }

  /**
   * Asks Redis for the next share (what the waiting takes need, plus a lease) and charges the
   * credit used, unless a request is already on its way.
   */
  private request(key: string, l: Lease): void {
    if (l.inflight || !this.store) return;
    const charge = l.debt;
    const want = Math.min(this.spec.burst, Math.max(0, l.waiting - l.share) + this.leaseSize);
    l.debt = 0;
    l.charging = charge;
    l.inflight = this.store
      .take(`${this.spec.name}:${key}`, this.spec.rate, this.spec.burst, charge, want)
      .then(
        (r) => {
          const now = this.clock();
          l.share = (now < l.until ? l.share : 0) + r.granted;
          l.until = now + LEASE_MS;
          l.deniedUntil = r.granted === 0 && r.waitMs > 0 ? now + r.waitMs : 0;
        },
        () => {
          // Redis away or slow: this credit is not charged; the local buckets decide meanwhile.
        },
      )
      .finally(() => {
        l.charging = 0;
        l.inflight = undefined;
        if ((l.debt > 0 || l.waiting > l.share) && this.clock() >= l.deniedUntil && this.store?.usable()) this.request(key, l);
      });
  }

  /** Forgets keys whose state no longer matters (a full bucket is the same as none). */
  sweep(): void {
    const now = this.clock();
    for (const [k, l] of this.leases) {
      if (!l.inflight && l.debt === 0 && now >= l.deniedUntil && (l.share === 0 || now >= l.until)) this.leases.delete(k);
    }
    for (const [k, b] of this.local) if (b.full(now)) this.local.delete(k);
  }

  get size(): number {
    return this.leases.size + this.local.size;
  }
}

function remember<V>(map: Map<string, V>, key: string, v: V): void {
  if (map.size >= MAX_KEYS) map.delete(map.keys().next().value!);
  map.set(key, v);
}

/** The relay's limits: EVENTs per pubkey and per address, unpaid EVENTs and REQ/COUNT per address. */
export class RateLimiter {
  readonly eventsPerPubkey?: Limit;
  readonly eventsPerIp?: Limit;
  readonly unpaidPerIp?: Limit;
  readonly reqsPerIp?: Limit;
  private sweeper: NodeJS.Timeout;

  constructor(
    private readonly config: Config,
    private readonly store?: SharedBuckets,
    clock: () => number = Date.now,
  ) {
    const limit = (name: string, rate: number, burst: number, unit: string) =>
      rate > 0 ? new Limit({ name, rate, burst: Math.max(1, burst), unit }, store, clock) : undefined;
    this.eventsPerPubkey = limit(
      'ev-pk',
      config.RATE_EVENTS_PER_PUBKEY,
      config.RATE_EVENTS_BURST_PER_PUBKEY,
      'events per second per pubkey',
    );
    this.eventsPerIp = limit('ev-ip', config.RATE_EVENTS_PER_IP, config.RATE_EVENTS_BURST_PER_IP, 'events per second per address');
    this.unpaidPerIp = limit(
      'unpaid-ip',
      config.RATE_UNPAID_EVENTS_PER_IP,
      config.RATE_UNPAID_EVENTS_BURST_PER_IP,
      'unpaid events per second per address',
    );
    this.reqsPerIp = limit('req-ip', config.RATE_REQS_PER_IP, config.RATE_REQS_BURST_PER_IP, 'REQ or COUNT per second per address');
    this.sweeper = setInterval(() => {
      this.eventsPerPubkey?.sweep();
      this.eventsPerIp?.sweep();
      this.unpaidPerIp?.sweep();
      this.reqsPerIp?.sweep();
    }, SWEEP_MS);
    this.sweeper.unref();
  }

  get enabled(): boolean {
    return !!(this.eventsPerPubkey || this.eventsPerIp || this.unpaidPerIp || this.reqsPerIp);
  }

  /** Client address to its network, remembered (asked for every EVENT of a flood). */
  private networks = new Map<string, string>();

  private address(ip: string): string {
    let key = this.networks.get(ip);
    if (key === undefined) {
      key = networkKey(ip, this.config.RATE_V6_PREFIX, this.config.RATE_V4_PREFIX);
      remember(this.networks, ip, key);
    }
    return key;
  }

  /** Before the message is parsed: the sender's address. */
  eventFromAddress(ip: string): Verdict | Promise<Verdict> {
    return this.eventsPerIp?.take(this.address(ip));
  }

  /** An event the payment gate refuses, before its signature is verified (it is held once verified). */
  unpaidFromAddress(ip: string): Verdict | Promise<Verdict> {
    return this.unpaidPerIp?.take(this.address(ip));
  }

  /** After the signature check: the author. */
  eventFromPubkey(pubkey: string): Verdict | Promise<Verdict> {
    return this.eventsPerPubkey?.take(pubkey);
  }

  read(ip: string): Verdict | Promise<Verdict> {
    return this.reqsPerIp?.take(this.address(ip));
  }

  async close(): Promise<void> {
    clearInterval(this.sweeper);
    await this.store?.close();
  }
}

/** The relay's limiter: buckets in Redis when REDIS_URL is set (connecting in the background), else per process. */
export function createRateLimiter(config: Config, log: Logger): RateLimiter {
  const on = [config.RATE_EVENTS_PER_PUBKEY, config.RATE_EVENTS_PER_IP, config.RATE_UNPAID_EVENTS_PER_IP, config.RATE_REQS_PER_IP].some(
    (r) => r > 0,
  );
  const store =
    on && config.REDIS_URL
      ? new RedisBuckets(config.REDIS_URL, log, { timeoutMs: config.RATE_REDIS_TIMEOUT_MS, prefix: `${config.REDIS_PREFIX}rl:` })
      : undefined;
  return new RateLimiter(config, store);
}

type ReadHost = { rateLimiter?: RateLimiter; metrics: { messages: { inc(labels: { type: string }): void } } };

/** Per connection, the REQ/COUNT/CLOSE messages still waiting behind a rate-limit decision. */
const readChains = new WeakMap<Connection, Promise<void>>();

/**
 * Runs a REQ or COUNT (`subId` set: checked against the per-address bucket first) or a CLOSE
 * (`subId` undefined: ordering only). Messages of one connection keep their order even when a
 * decision has to wait for Redis (a CLOSE never overtakes its REQ). A refused REQ/COUNT is
 * answered CLOSED with the `rate-limited:` reason; `onRefused` closes a subscription it replaced.
 */
export function limitRead(ctx: ReadHost, conn: Connection, subId: string | undefined, run: () => void, onRefused?: () => void): void {
  const refuse = (why: string) => {
    ctx.metrics.messages.inc({ type: 'read-rate-limited' });
    onRefused?.();
    if (subId !== undefined) send(conn, encodeClosed(subId, why));
  };
  const step = (): void | Promise<void> => {
    const v = subId === undefined ? undefined : ctx.rateLimiter?.read(conn.ip);
    if (v === undefined) return run();
    if (typeof v === 'string') return refuse(v);
    return v.then((why) => (why === undefined ? run() : refuse(why)));
  };
  const pending = readChains.get(conn);
  const next = pending ? pending.then(step, step) : step();
  if (!next) return;
  readChains.set(conn, next);
  void next.finally(() => {
    if (readChains.get(conn) === next) readChains.delete(conn);
  });
}
