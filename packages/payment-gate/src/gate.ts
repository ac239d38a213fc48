import type { Bus } from '@paidrelay/bus';
import type { Config } from '@paidrelay/config';
import {
  affordableCharges,
  debitForEvent,
  holdEvents,
  purgeHeldEvents,
  trimHeldEvents,
  type Database,
  type HeldStats,
} from '@paidrelay/db';
import { nowSeconds, type NostrEvent } from '@paidrelay/nostr';
import { gate, heldEventPrice, isAdmitted, payUrl, type Pricing } from '@paidrelay/pricing';
import type { Logger } from 'pino';
import { AccountCache } from './accounts.ts';
import { HoldQueue } from './hold.ts';

/**
 * `debit`: the price is reserved from the cached balance until `settle` is called with
 * whether the debit was committed, so a burst from a short balance passes the gate only as
 * many times as the balance covers.
 */
export type GateDecision =
  | { action: 'accept' }
  | { action: 'debit'; amountMsat: number; settle(committed: boolean): void }
  | { action: 'refuse'; amountMsat: number; reason: string };

/**
 * The payment gate of a paid relay. The relay core declares what it needs of a gate (its
 * `PaymentGate`: check, hold, charges, unpaidReason); this object has that shape and, besides,
 * what the relay's entry point hands the core as other hooks: the membership check, the purge
 * of held events (the purge timer) and close.
 */
export type PaymentGate = {
  check(ev: NostrEvent, json: string): GateDecision;
  /** Admitted, subscribed or allow-listed at `now` (members-only reads), from the same cache. */
  isMember(pubkey: string, now: number): boolean;
  /** Keeps a refused event for later payment, in the background; `network` is the client's address network (per-address bound). */
  hold(ev: NostrEvent, json: string, network: string): void;
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
  return {
    check(ev: NostrEvent, json: string): GateDecision {
      const d = gate(pricing, ev, Buffer.byteLength(json), cache.available(ev.pubkey), nowSeconds());
      return d.action === 'debit' ? { ...d, settle: cache.reserve(ev.pubkey, d.amountMsat) } : d;
    },
    unpaidReason(ev: NostrEvent, json: string, balanceMsat: number) {
      const account = cache.get(ev.pubkey) ?? { admitted: true, admittedUntil: null, balanceMsat };
      const d = gate(pricing, ev, Buffer.byteLength(json), { ...account, balanceMsat }, nowSeconds());
      return d.action === 'refuse'
        ? d.reason
        : `blocked: payment required: the balance was spent elsewhere: ${payUrl(pricing, ev.pubkey, ev.id)}`;
    },
    isMember: memberCheck(pricing, cache),
    hold(ev: NostrEvent, json: string, network: string) {
      const bytes = Buffer.byteLength(json);
      if (bytes > config.HELD_EVENT_MAX_BYTES) return;
      const item = {
        id: ev.id,
        pubkey: ev.pubkey,
        kind: ev.kind,
        raw: json,
        amountMsat: heldEventPrice(pricing, ev.kind, bytes),
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
      await holds.drain();
    },
  };
}
