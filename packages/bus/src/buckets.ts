import type { Logger } from 'pino';
import { RedisScripts, script, type RedisScriptsOptions } from './scripts.ts';

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
const TAKE = script(`
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
`);

export type BucketReply = { granted: number; waitMs: number };

/** Where shared buckets live. `take` may reject (unreachable, too slow); the caller falls back. */
export interface SharedBuckets {
  /** False while the store is unreachable or stalled: callers decide locally without asking. */
  usable(): boolean;
  take(key: string, rate: number, burst: number, charge: number, want: number): Promise<BucketReply>;
  close(): Promise<void>;
}

export type RedisBucketsOptions = Omit<RedisScriptsOptions, 'what'> & {
  /** Prefix of every bucket key (default `paidrelay:rl:`). */
  prefix?: string;
};

/**
 * Shared token buckets on their own Redis connection (RedisScripts: never the bus's, bounded,
 * left alone for a while after a reply that did not come in time, reconnected when half-open).
 */
export class RedisBuckets implements SharedBuckets {
  private readonly scripts: RedisScripts;
  private readonly prefix: string;

  constructor(url: string, log: Logger, opts: RedisBucketsOptions = {}) {
    this.scripts = new RedisScripts(url, log, { ...opts, what: 'rate limits' });
    this.prefix = opts.prefix ?? 'paidrelay:rl:';
  }

  usable(): boolean {
    return this.scripts.usable();
  }

  async take(key: string, rate: number, burst: number, charge: number, want: number): Promise<BucketReply> {
    const args = [rate, burst, charge, want].map(String);
    const reply = (await this.scripts.run(TAKE, [this.prefix + key], args)) as [number, number];
    return { granted: Number(reply[0]), waitMs: Number(reply[1]) };
  }

  close(): Promise<void> {
    return this.scripts.close();
  }
}
