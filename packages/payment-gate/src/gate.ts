import { DAY, LocalVolumes, RedisVolumes, type Bus, type VolumeCounters, type VolumeWindow } from '@paidrelay/bus';
import { networkKey, type Config } from '@paidrelay/config';
import {
  affordableCharges,
  debitForEvent,
  holdEvents,
  purgeHeldEvents,
  trimHeldEvents,
  type Database,
  type HeldStats,
} from '@paidrelay/db';
import { randomUUID } from 'node:crypto';
import { nowSeconds, type NostrEvent } from '@paidrelay/nostr';
import { gate, heldEventPrice, isAdmitted, payUrl, type Pricing, type SurgeInputs } from '@paidrelay/pricing';
import type { Logger } from 'pino';
import { AccountCache } from './accounts.ts';
import { HoldQueue } from './hold.ts';
import { VolumeTracker } from './volume.ts';

/**
 * `debit`: the price is reserved from the cached balance until `settle` is called with
 * whether the debit was committed, so a burst from a short balance passes the gate only as
 * many times as the balance covers. With spam pricing, a write that passes (`accept` or
 * `debit`) is counted in its sender's volume at once, and `settle(false)` takes it back.
 */
export type GateDecision =
  | { action: 'accept'; settle?(committed: boolean): void }
  | { action: 'debit'; amountMsat: number; settle(committed: boolean): void }
  | { action: 'refuse'; amountMsat: number; eventMsat: number; reason: string };

/**
 * The payment gate of a paid relay. The relay core declares what it needs of a gate (its
 * `PaymentGate`: check, hold, charges, unpaidReason); this object has that shape and, besides,
 * what the relay's entry point hands the core as other hooks: the membership check, the purge
 * of held events (the purge timer) and close.
 */
export type PaymentGate = {
  /** `ip`: the client's address, whose network's volume counts in the spam price. */
  check(ev: NostrEvent, json: string, ip?: string): GateDecision;
  /** Admitted, subscribed or allow-listed at `now` (members-only reads), from the same cache. */
  isMember(pubkey: string, now: number): boolean;
  /** Keeps a refused event for later payment, in the background; `network` is the client's address network (per-address bound). */
  hold(ev: NostrEvent, json: string, network: string, eventMsat?: number): void;
  /** Writes the queued held events, then drops those that are due or over the global bound. */
  purge(now: number): Promise<number>;
  /** The writer's hook: balances locked and debited in the transaction that stores the events. */
  charges: { cover: typeof affordableCharges; debit: typeof debitForEvent };
  /** The refusal of a write whose balance, read at commit time, did not cover its price. */
  unpaidReason(ev: NostrEvent, json: string, balanceMsat: number): string;
  /** Stops the cache and writes the held events still queued. */
  close(): Promise<void>;
};

/** Members-only reads: allow-listed, or admitted (one-time or a subscription still running). A cache lookup. */
function memberCheck(pricing: Pricing, cache: AccountCache): (pubkey: string, at: number) => boolean {
  return (pubkey, at) => pricing.allowed.has(pubkey) || isAdmitted(cache.get(pubkey), at);
}

export type PaymentGateOptions = {
  /** The held events of all replicas, after each trim (metrics). */
  onHeldStats?: (stats: HeldStats) => void;
  /** A refused event not held because the hold queue was full (metrics). */
  onHoldDropped?: () => void;
};

/**
 * The payment gate of a paid relay: `pricing` read at each decision (live prices, prices.ts),
 * accounts from the cache.
 */
export async function createPaymentGate(
  config: Config,
  pricing: Pricing,
  db: Database,
  bus: Bus,
  log: Logger,
  { onHeldStats = () => {}, onHoldDropped = () => {} }: PaymentGateOptions = {},
): Promise<PaymentGate> {
  const cache = new AccountCache(db, log);
  await cache.start(bus);
  // The global bound is enforced by a trim, run by the purge timer and whenever this replica
  // has held a sixteenth of the bound since the last one: it overshoots by at most that much
  // per replica, and a refusal never pays for a sum over the whole table.
  const trimEvery = Math.max(64 * 1024, Math.floor(config.HELD_EVENTS_MAX_TOTAL_BYTES / 16));
  let heldSinceTrim = 0;
  let trimming: Promise<number> | undefined;
  const trim = (at: number): Promise<number> => {
    heldSinceTrim = 0;
    trimming ??= trimHeldEvents(db.kysely, config.HELD_EVENTS_MAX_TOTAL_BYTES, at)
      .then(({ deleted, ...stats }) => {
        onHeldStats(stats);
        if (deleted > 0) log.info({ deleted, ...stats }, 'held events over the global bound dropped, oldest first');
        return deleted;
      })
      .finally(() => (trimming = undefined));
    return trimming;
  };
  await trim(nowSeconds()).catch((err) => log.warn({ err }, 'held events: first trim failed'));
  const holds = new HoldQueue(async (items) => {
    const results = await holdEvents(db.kysely, items, {
      now: nowSeconds(),
      ttlSeconds: config.HELD_EVENT_TTL_SECONDS,
      maxPerPubkey: config.HELD_EVENTS_PER_PUBKEY,
      maxBytes: config.HELD_EVENT_MAX_BYTES,
      maxBytesPerIp: config.HELD_BYTES_PER_IP,
    });
    for (let i = 0; i < items.length; i++) if (results[i] === 'held') heldSinceTrim += Buffer.byteLength(items[i].raw);
    if (heldSinceTrim >= trimEvery) await trim(nowSeconds());
  }, log);
  const spam = spamPricing(config, pricing, log);
  return {
    check(ev: NostrEvent, json: string, ip = ''): GateDecision {
      const bytes = Buffer.byteLength(json);
      const at = nowSeconds();
      const volume = spam?.inputs(ev.pubkey, ip, cache.createdAt(ev.pubkey));
      const d = gate(pricing, ev, bytes, cache.available(ev.pubkey), at, volume?.inputs);
      if (d.action === 'refuse') return d;
      const counted = volume?.count(bytes);
      if (d.action === 'accept') return counted ? { action: 'accept', settle: counted } : d;
      const reserved = cache.reserve(ev.pubkey, d.amountMsat);
      return {
        ...d,
        settle: (committed) => {
          reserved(committed);
          counted?.(committed);
        },
      };
    },
    unpaidReason(ev: NostrEvent, json: string, balanceMsat: number) {
      const account = cache.get(ev.pubkey) ?? { admitted: true, admittedUntil: null, balanceMsat };
      const d = gate(pricing, ev, Buffer.byteLength(json), { ...account, balanceMsat }, nowSeconds());
      return d.action === 'refuse'
        ? d.reason
        : `blocked: payment required: the balance was spent elsewhere: ${payUrl(pricing, ev.pubkey, ev.id)}`;
    },
    isMember: memberCheck(pricing, cache),
    hold(ev: NostrEvent, json: string, network: string, eventMsat?: number) {
      const bytes = Buffer.byteLength(json);
      if (bytes > config.HELD_EVENT_MAX_BYTES) return;
      const item = {
        id: ev.id,
        pubkey: ev.pubkey,
        kind: ev.kind,
        raw: json,
        // The price the refusal named (with spam pricing, the surge price of that moment).
        amountMsat: eventMsat ?? heldEventPrice(pricing, ev.kind, bytes),
        ip: network,
      };
      if (!holds.add(item, bytes)) onHoldDropped();
    },
    async purge(at: number) {
      await holds.drain();
      return (await purgeHeldEvents(db.kysely, at)) + (await trim(at));
    },
    charges: { cover: affordableCharges, debit: debitForEvent },
    async close() {
      cache.close();
      await spam?.close();
      await holds.drain();
    },
  };
}

/**
 * Spam pricing's inputs to the gate: the sender's writing in the last day (its allowance) and in
 * the window, and its network's, from the volume counters every replica shares (Redis; this
 * process's own without REDIS_URL). A write that passes is counted at once (a burst sees its own
 * earlier events) and taken back if it is not stored.
 */
function spamPricing(config: Config, pricing: Pricing, log: Logger) {
  if (!pricing.surge) return undefined;
  const store: VolumeCounters = config.REDIS_URL ? new RedisVolumes(config.REDIS_URL, log) : new LocalVolumes();
  const tracker = new VolumeTracker(store, randomUUID(), log);
  tracker.start();
  return {
    inputs(pubkey: string, ip: string, createdAt: number | null) {
      // The policy as it is now (admins change it at run time).
      const policy = pricing.surge;
      if (!policy) return undefined;
      const window: VolumeWindow = { slotSeconds: Math.max(1, Math.round(policy.windowSeconds / 60)), slots: 60 };
      const keys = {
        day: `d:${pubkey}`,
        window: `w:${pubkey}`,
        network: `n:${networkKey(ip, config.SURGE_V6_PREFIX, config.SURGE_V4_PREFIX)}`,
      };
      const inputs: SurgeInputs = {
        policy,
        history: { admittedSince: createdAt, paidMsat: 0 },
        day: tracker.view(keys.day, DAY),
        window: tracker.view(keys.window, window),
        networkWindow: ip ? tracker.view(keys.network, window) : { events: 0, bytes: 0 },
        networkAdmissions: 0,
        loadLevel: 0,
      };
      const count = (bytes: number): ((committed: boolean) => void) => {
        const add = (sign: number) => {
          tracker.count(keys.day, DAY, sign, sign * bytes);
          tracker.count(keys.window, window, sign, sign * bytes);
          if (ip) tracker.count(keys.network, window, sign, sign * bytes);
        };
        add(1);
        let done = false;
        return (committed) => {
          if (done) return;
          done = true;
          if (!committed) add(-1);
        };
      };
      return { inputs, count };
    },
    async close() {
      await tracker.close();
      await store.close();
    },
  };
}
