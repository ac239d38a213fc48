import { createHash } from 'node:crypto';
import type { RedisClientType } from 'redis';
import type { Logger } from 'pino';
import { destroyClient, newRedisClient } from './redis-client.ts';

/**
 * Token buckets shared by every replica, in Redis: one hash per bucket (`t` tokens, `ts` the
 * Redis time of the last refill, ms), refilled, charged and drawn from by one Lua script, so a
 * take is atomic whatever the number of replicas. Redis's own clock (TIME) is used, never the
 * replicas': no clock skew between them matters. A bucket untouched long enough to be full again
 * expires (a missing bucket is a full one).
 *
 * The script takes two amounts: `charge`, tokens already spent by the caller on its own
 * (optimistically, before asking) that are taken unconditionally (the bucket may go below zero,
 * down to -burst, which delays its next grant: nothing spent is forgotten), and `want`, tokens
 * asked for in advance, granted only as far as the bucket holds whole tokens. It answers the tokens
 * granted and, when the bucket is left below one token, the milliseconds until it holds one.
 *
 * KEYS[1] the bucket; ARGV rate (tokens/s), burst, charge, want.
 */
const TAKE_SCRIPT = `
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local charge = tonumber(ARGV[3])
local want = tonumber(ARGV[4])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local v = redis.call('HMGET', KEYS[1], 't', 'ts')
local tokens = tonumber(v[1])
local ts = tonumber(v[2])
if tokens == nil or ts == nil then
  tokens = burst
  ts = now
end
if now > ts then
  tokens = math.min(burst, tokens + (now - ts) * rate / 1000)
  ts = now
end
tokens = math.max(-burst, tokens - charge)
local granted = 0
if tokens >= 1 then
  granted = math.min(want, math.floor(tokens))
  tokens = tokens - granted
end
redis.call('HSET', KEYS[1], 't', tostring(tokens), 'ts', tostring(ts))
redis.call('PEXPIRE', KEYS[1], math.ceil(2 * burst * 1000 / rate) + 1000)
local wait = 0
if tokens < 1 then wait = math.ceil((1 - tokens) * 1000 / rate) end
return {granted, wait}
`;
const TAKE_SHA = createHash('sha1').update(TAKE_SCRIPT).digest('hex');

export type BucketReply = { granted: number; waitMs: number };

/** Where shared buckets live. `take` may reject (unreachable, too slow); the caller falls back. */
export interface SharedBuckets {
  /** False while the store is unreachable or stalled: callers decide locally without asking. */
  usable(): boolean;
  take(key: string, rate: number, burst: number, charge: number, want: number): Promise<BucketReply>;
  close(): Promise<void>;
}

export type RedisBucketsOptions = {
  /** Bound on one take's reply (default 50 ms). */
  timeoutMs?: number;
  connectTimeoutMs?: number;
  /** Prefix of every bucket key (default `paidrelay:rl:`). */
  prefix?: string;
  /** How long after a reply that did not come in time the store is left alone (default 1 s). */
  stallBackoffMs?: number;
};

class Timeout extends Error {}

/**
 * Shared token buckets on their own Redis connection (never the bus's: a slow stream read must
 * not delay a take). It connects in the background and never blocks its creator; every command
 * fails at once while disconnected (no offline queue) and is bounded by `timeoutMs`. After a
 * reply that did not come in time the store says it is not usable for `stallBackoffMs` (callers
 * use their local buckets meanwhile, without waiting), and after three in a row the connection is
 * dropped and made again (a half-open connection).
 */
export class RedisBuckets implements SharedBuckets {
  private client: RedisClientType | null = null;
  private closed = false;
  private stalledUntil = 0;
  private stalls = 0;
  private warned = false;
  private readonly timeoutMs: number;
  private readonly connectTimeoutMs: number;
  private readonly prefix: string;
  private readonly stallBackoffMs: number;

  constructor(
    private readonly url: string,
    private readonly log: Logger,
    opts: RedisBucketsOptions = {},
  ) {
    this.timeoutMs = opts.timeoutMs ?? 50;
    this.connectTimeoutMs = opts.connectTimeoutMs ?? 1_000;
    this.prefix = opts.prefix ?? 'paidrelay:rl:';
    this.stallBackoffMs = opts.stallBackoffMs ?? 1_000;
    this.open();
  }

  private open(): void {
    const c = newRedisClient(this.url, this.connectTimeoutMs);
    c.on('error', (err: Error) => {
      if (this.client !== c || this.warned) return;
      this.warned = true;
      this.log.warn({ err }, 'rate limits: Redis unreachable, each replica limits on its own meanwhile');
    });
    c.on('ready', () => {
      if (this.client !== c) return;
      if (this.warned) this.log.info('rate limits: Redis reachable again, buckets shared');
      this.warned = false;
      this.stalls = 0;
    });
    this.client = c;
    c.connect().catch((err: unknown) => {
      if (this.closed || this.client !== c) return;
      this.log.warn({ err }, 'rate limits: Redis connect failed, making a new connection');
      setTimeout(() => this.client === c && this.reset(), 1_000).unref?.();
    });
  }

  private reset(): void {
    const c = this.client;
    this.client = null;
    destroyClient(c, this.log, 'rate limits');
    if (!this.closed) this.open();
  }

  usable(): boolean {
    return !this.closed && !!this.client?.isReady && Date.now() >= this.stalledUntil;
  }

  async take(key: string, rate: number, burst: number, charge: number, want: number): Promise<BucketReply> {
    const c = this.client;
    if (!c?.isReady || this.closed) throw new Error('rate limits: Redis not connected');
    const keys = [this.prefix + key];
    const args = [String(rate), String(burst), String(charge), String(want)];
    let timer: NodeJS.Timeout | undefined;
    const bound = new Promise<never>((_, reject) => {
      // Through setImmediate: when the event loop was busy past the bound, a reply that arrived
      // meanwhile is read (poll phase) before the timer's verdict, so a busy replica does not
      // mistake its own stall for Redis's.
      timer = setTimeout(
        () => setImmediate(() => reject(new Timeout(`rate limits: no reply from Redis within ${this.timeoutMs} ms`))),
        this.timeoutMs,
      );
    });
    const run = async (): Promise<unknown> => {
      try {
        return await c.evalSha(TAKE_SHA, { keys, arguments: args });
      } catch (err) {
        if (!String((err as Error).message).includes('NOSCRIPT')) throw err;
        return c.eval(TAKE_SCRIPT, { keys, arguments: args });
      }
    };
    try {
      const reply = (await Promise.race([run(), bound])) as [number, number];
      this.stalls = 0;
      return { granted: Number(reply[0]), waitMs: Number(reply[1]) };
    } catch (err) {
      if (err instanceof Timeout && this.client === c && !this.closed) {
        this.stalledUntil = Date.now() + this.stallBackoffMs;
        if (++this.stalls >= 3) {
          this.log.warn('rate limits: Redis stopped answering, reconnecting');
          this.stalls = 0;
          this.reset();
        }
      }
      throw err;
    } finally {
      clearTimeout(timer);
    }
  }

  async close(): Promise<void> {
    this.closed = true;
    const c = this.client;
    this.client = null;
    destroyClient(c, this.log, 'rate limits');
  }
}
