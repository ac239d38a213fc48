import type { Logger } from 'pino';
import { RedisScripts, script, type RedisScriptsOptions } from './scripts.ts';

/** An amount of writing: events and bytes of their JSON. */
export type Volume = { events: number; bytes: number };

/** A sliding window, counted in `slots` slots of `slotSeconds` (the current, partial one included). */
export type VolumeWindow = { slotSeconds: number; slots: number };

/** The last hour in one-minute slots, and the last day in one-hour slots. */
export const HOUR: VolumeWindow = { slotSeconds: 60, slots: 60 };
export const DAY: VolumeWindow = { slotSeconds: 3_600, slots: 24 };

/** Where volume is counted. `add` answers the counter's total over its window, the addition included. */
export interface VolumeCounters {
  /** False while the store is unreachable or stalled: callers count locally without asking. */
  usable(): boolean;
  add(key: string, w: VolumeWindow, events: number, bytes: number): Promise<Volume>;
  /** Replicas that counted in the last `seconds` (this one included), as the store saw them. */
  replicas(instanceId: string, seconds: number): Promise<number>;
  close(): Promise<void>;
}

/**
 * One hash per counter, a field per slot and dimension (`e<slot>`, `b<slot>`), slots numbered on
 * Redis's clock (TIME) so replicas' clocks never matter. A run adds to the current slot, drops
 * slots that left the window, and answers the sums. An idle counter expires with its window.
 *
 * KEYS[1] the counter; ARGV slot seconds, slots, events, bytes.
 */
const ADD = script(`
local slot = tonumber(ARGV[1])
local n = tonumber(ARGV[2])
local e = tonumber(ARGV[3])
local b = tonumber(ARGV[4])
local cur = math.floor(tonumber(redis.call('TIME')[1]) / slot)
if e ~= 0 then redis.call('HINCRBY', KEYS[1], 'e' .. cur, e) end
if b ~= 0 then redis.call('HINCRBY', KEYS[1], 'b' .. cur, b) end
local all = redis.call('HGETALL', KEYS[1])
local se, sb = 0, 0
local stale = {}
for i = 1, #all, 2 do
  local f = all[i]
  if tonumber(string.sub(f, 2)) <= cur - n then
    stale[#stale + 1] = f
  elseif string.byte(f, 1) == 101 then
    se = se + tonumber(all[i + 1])
  else
    sb = sb + tonumber(all[i + 1])
  end
end
if #stale > 0 then redis.call('HDEL', KEYS[1], unpack(stale)) end
if #all > 0 then redis.call('EXPIRE', KEYS[1], slot * (n + 1)) end
return {se, sb}
`);

/** KEYS[1] the replica set; ARGV instance id, seconds. Answers the replicas seen within the seconds. */
const REPLICAS = script(`
local now = tonumber(redis.call('TIME')[1])
redis.call('ZADD', KEYS[1], now, ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - tonumber(ARGV[2]))
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[2]) * 2)
return redis.call('ZCARD', KEYS[1])
`);

export class RedisVolumes implements VolumeCounters {
  private readonly scripts: RedisScripts;
  private readonly prefix: string;

  constructor(url: string, log: Logger, opts: Omit<RedisScriptsOptions, 'what'> & { prefix?: string } = {}) {
    this.scripts = new RedisScripts(url, log, { ...opts, what: 'volume counters' });
    this.prefix = opts.prefix ?? 'paidrelay:vol:';
  }

  usable(): boolean {
    return this.scripts.usable();
  }

  async add(key: string, w: VolumeWindow, events: number, bytes: number): Promise<Volume> {
    const args = [w.slotSeconds, w.slots, events, bytes].map(String);
    const [e, b] = (await this.scripts.run(ADD, [this.prefix + key], args)) as [number, number];
    return { events: Number(e), bytes: Number(b) };
  }

  async replicas(instanceId: string, seconds: number): Promise<number> {
    return Number(await this.scripts.run(REPLICAS, [`${this.prefix}replicas`], [instanceId, String(seconds)]));
  }

  close(): Promise<void> {
    return this.scripts.close();
  }
}

/**
 * The same counters in this process: the store without Redis (one replica), and each replica's
 * fallback while Redis is down. At most `maxKeys` counters; the least recently used go first.
 */
export class LocalVolumes implements VolumeCounters {
  private readonly counters = new Map<string, Map<number, Volume>>();

  constructor(
    private readonly now: () => number = () => Date.now() / 1000,
    private readonly maxKeys = 100_000,
  ) {}

  usable(): boolean {
    return true;
  }

  async add(key: string, w: VolumeWindow, events: number, bytes: number): Promise<Volume> {
    const id = `${w.slotSeconds}/${w.slots}/${key}`;
    const cur = Math.floor(this.now() / w.slotSeconds);
    const slots = this.counters.get(id) ?? new Map<number, Volume>();
    this.counters.delete(id);
    this.counters.set(id, slots);
    if (this.counters.size > this.maxKeys) this.counters.delete(this.counters.keys().next().value as string);
    if (events !== 0 || bytes !== 0) {
      const s = slots.get(cur) ?? { events: 0, bytes: 0 };
      slots.set(cur, { events: s.events + events, bytes: s.bytes + bytes });
    }
    const sum = { events: 0, bytes: 0 };
    for (const [slot, v] of slots) {
      if (slot <= cur - w.slots) slots.delete(slot);
      else {
        sum.events += v.events;
        sum.bytes += v.bytes;
      }
    }
    return sum;
  }

  async replicas(): Promise<number> {
    return 1;
  }

  async close(): Promise<void> {
    this.counters.clear();
  }
}
