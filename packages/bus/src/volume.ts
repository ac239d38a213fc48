import type { Logger } from 'pino';
import { RedisScripts, script, type RedisScriptsOptions } from './scripts.ts';

/** An amount of writing: events and bytes of their JSON. */
export type Volume = { events: number; bytes: number };

/** A sliding window, counted in `slots` slots of `slotSeconds` (the current, partial one included). */
export type VolumeWindow = { slotSeconds: number; slots: number };

/** The last hour in one-minute slots, and the last day in one-hour slots. */
export const HOUR: VolumeWindow = { slotSeconds: 60, slots: 60 };
export const DAY: VolumeWindow = { slotSeconds: 3_600, slots: 24 };

/** A counter's member of a ranked group (`top`), with its volume in the window. */
export type Ranked = Volume & { member: string };

/** Members kept per slot of a ranked group: bounded memory, the heaviest kept. */
export const RANK_KEEP = 1_024;
/** Members read per slot by `top`: the read stays a few milliseconds of Redis's time. */
const RANK_READ = 256;

/**
 * Where volume is counted. `add` answers the counter's total over its window, the addition
 * included. With `group` (a prefix of `key`; the rest is the member, e.g. `w:60:` and a pubkey),
 * the counter is also ranked among its group's by events, per slot, so that `top` can answer the
 * heaviest members of the window without reading every counter.
 */
export interface VolumeCounters {
  /** False while the store is unreachable or stalled: callers count locally without asking. */
  usable(): boolean;
  add(key: string, w: VolumeWindow, events: number, bytes: number, group?: string): Promise<Volume>;
  /** The group's heaviest members in the window, by events, heaviest first (at most `limit`). */
  top(group: string, w: VolumeWindow, limit: number): Promise<Ranked[]>;
  /** Replicas that counted in the last `seconds` (this one included), as the store saw them. */
  replicas(instanceId: string, seconds: number): Promise<number>;
  close(): Promise<void>;
}

/**
 * One hash per counter, a field per slot and dimension (`e<slot>`, `b<slot>`), slots numbered on
 * Redis's clock (TIME) so replicas' clocks never matter. A run adds to the current slot, drops
 * slots that left the window, and answers the sums. An idle counter expires with its window.
 *
 * With KEYS[2] (a ranked group's slot-set prefix; the slot number is appended, so the set is
 * named from KEYS[2] at run time: one Redis, not a cluster), the member ARGV[5] gains the events
 * in a sorted set per slot, trimmed to the ARGV[6] heaviest, expiring with the window.
 *
 * KEYS[1] the counter; ARGV slot seconds, slots, events, bytes[, member, keep].
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
if KEYS[2] and e ~= 0 then
  local z = KEYS[2] .. cur
  redis.call('ZINCRBY', z, e, ARGV[5])
  local keep = tonumber(ARGV[6])
  if redis.call('ZCARD', z) > keep then redis.call('ZREMRANGEBYRANK', z, 0, -(keep + 1)) end
  redis.call('EXPIRE', z, slot * (n + 1))
end
return {se, sb}
`);

/**
 * The heaviest members of a ranked group in the window: each slot's ARGV[4] heaviest, summed
 * over the window's slots (a Lua script blocks Redis for every replica: a union of whole sets
 * could take long), the top ARGV[3] of those, each with its counter's exact sums. A member that
 * is never among a slot's heaviest is not listed: the list is of the heaviest, not a census.
 *
 * KEYS[1] the group's slot-set prefix, KEYS[2] its counters' prefix; ARGV slot seconds, slots,
 * limit, read per slot.
 */
const TOP = script(`
local slot = tonumber(ARGV[1])
local n = tonumber(ARGV[2])
local limit = tonumber(ARGV[3])
local per = tonumber(ARGV[4])
local cur = math.floor(tonumber(redis.call('TIME')[1]) / slot)
local sums = {}
local names = {}
for i = cur - n + 1, cur do
  local top = redis.call('ZRANGE', KEYS[1] .. i, 0, per - 1, 'REV', 'WITHSCORES')
  for j = 1, #top, 2 do
    local m = top[j]
    if not sums[m] then
      sums[m] = 0
      names[#names + 1] = m
    end
    sums[m] = sums[m] + tonumber(top[j + 1])
  end
end
table.sort(names, function(x, y) return sums[x] > sums[y] end)
local out = {}
for r = 1, math.min(limit, #names) do
  local m = names[r]
  local all = redis.call('HGETALL', KEYS[2] .. m)
  local se, sb = 0, 0
  for i = 1, #all, 2 do
    local f = all[i]
    if tonumber(string.sub(f, 2)) > cur - n then
      if string.byte(f, 1) == 101 then se = se + tonumber(all[i + 1]) else sb = sb + tonumber(all[i + 1]) end
    end
  end
  out[#out + 1] = m
  out[#out + 1] = se
  out[#out + 1] = sb
end
return out
`);

/** Ranked members, heaviest first; members with nothing left in the window dropped. */
function ranked(rows: Ranked[], limit: number): Ranked[] {
  return rows
    .filter((r) => r.events > 0 || r.bytes > 0)
    .sort((a, b) => b.events - a.events || b.bytes - a.bytes || (a.member < b.member ? -1 : 1))
    .slice(0, limit);
}

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

  async add(key: string, w: VolumeWindow, events: number, bytes: number, group?: string): Promise<Volume> {
    const args = [w.slotSeconds, w.slots, events, bytes].map(String);
    const keys = [this.prefix + key];
    if (group !== undefined) {
      keys.push(this.rankPrefix(group, w));
      args.push(key.slice(group.length), String(RANK_KEEP));
    }
    const [e, b] = (await this.scripts.run(ADD, keys, args)) as [number, number];
    return { events: Number(e), bytes: Number(b) };
  }

  async top(group: string, w: VolumeWindow, limit: number): Promise<Ranked[]> {
    const keys = [this.rankPrefix(group, w), this.prefix + group];
    const args = [w.slotSeconds, w.slots, limit, Math.max(limit, RANK_READ)].map(String);
    const flat = (await this.scripts.run(TOP, keys, args)) as unknown[];
    const rows: Ranked[] = [];
    for (let i = 0; i + 2 < flat.length; i += 3)
      rows.push({ member: String(flat[i]), events: Number(flat[i + 1]), bytes: Number(flat[i + 2]) });
    return ranked(rows, limit);
  }

  /** The slot sets of a group, per window shape (a slot number means another time in another shape). */
  private rankPrefix(group: string, w: VolumeWindow): string {
    return `${this.prefix}top:${w.slotSeconds}/${w.slots}:${group}:`;
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
  /** Per group and window shape: per slot, the members' events. */
  private readonly ranks = new Map<string, Map<number, Map<string, number>>>();

  constructor(
    private readonly now: () => number = () => Date.now() / 1000,
    private readonly maxKeys = 100_000,
  ) {}

  usable(): boolean {
    return true;
  }

  async add(key: string, w: VolumeWindow, events: number, bytes: number, group?: string): Promise<Volume> {
    const id = `${w.slotSeconds}/${w.slots}/${key}`;
    const cur = Math.floor(this.now() / w.slotSeconds);
    if (group !== undefined && events !== 0) this.rank(group, w, cur, key.slice(group.length), events);
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

  async top(group: string, w: VolumeWindow, limit: number): Promise<Ranked[]> {
    const cur = Math.floor(this.now() / w.slotSeconds);
    const slots = this.ranks.get(`${w.slotSeconds}/${w.slots}/${group}`);
    const members = new Map<string, number>();
    for (const [slot, set] of slots ?? []) {
      if (slot <= cur - w.slots) slots?.delete(slot);
      else for (const [m, e] of set) members.set(m, (members.get(m) ?? 0) + e);
    }
    const heaviest = [...members].sort((a, b) => b[1] - a[1]).slice(0, limit);
    const rows = await Promise.all(heaviest.map(async ([member]) => ({ member, ...(await this.add(group + member, w, 0, 0)) })));
    return ranked(rows, limit);
  }

  private rank(group: string, w: VolumeWindow, cur: number, member: string, events: number): void {
    const id = `${w.slotSeconds}/${w.slots}/${group}`;
    let slots = this.ranks.get(id);
    if (!slots) this.ranks.set(id, (slots = new Map()));
    let set = slots.get(cur);
    if (!set) slots.set(cur, (set = new Map()));
    set.set(member, (set.get(member) ?? 0) + events);
    // Trimmed to the heaviest by half when twice over: amortised, as bounded as Redis's.
    if (set.size > 2 * RANK_KEEP) {
      const kept = [...set].sort((a, b) => b[1] - a[1]).slice(0, RANK_KEEP);
      slots.set(cur, new Map(kept));
    }
  }

  async replicas(): Promise<number> {
    return 1;
  }

  async close(): Promise<void> {
    this.counters.clear();
    this.ranks.clear();
  }
}
