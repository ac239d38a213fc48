import { DAY, LocalVolumes, RedisVolumes, type Bus, type VolumeCounters, type VolumeWindow } from '@paidrelay/bus';
import { networkKey, type Config } from '@paidrelay/config';
import { affordableCharges, debitEvents, holdEvents, purgeHeldEvents, trimHeldEvents, type Database, type HeldStats } from '@paidrelay/db';
import { randomUUID } from 'node:crypto';
import { nowSeconds, type NostrEvent } from '@paidrelay/nostr';
import {
  counterKeys,
  gate,
  heldEventPrice,
  isAdmitted,
  payUrl,
  surgeWindow,
  writeMultiplier,
  type History,
  type Pricing,
  type SurgeInputs,
  type SurgePolicy,
} from '@paidrelay/pricing';
import type { Logger } from 'pino';
import { AccountCache } from './accounts.ts';
import { HoldQueue } from './hold.ts';
import { LoadMonitor } from './load.ts';
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
  charges: { cover: typeof affordableCharges; debit: typeof debitEvents };
  /** The refusal of a write whose balance, read at commit time, did not cover its price. */
  unpaidReason(ev: NostrEvent, json: string, balanceMsat: number): string;
  /**
   * The heaviest senders of the spam window (every replica's counts), heaviest first by events,
   * each with the multiplier its next write beyond the allowance pays from its own volume and the
   * relay's load (its network is not known here, so a network surge is not in it). Empty with
   * spam pricing off.
   */
  topSenders(limit: number): Promise<TopSender[]>;
  /** The relay-wide load level and every replica's write rate, as of the last evaluation (metrics). */
  load(): { level: number; writesPerSecond: number; evaluations: number };
  /** Stops the cache and writes the held events still queued. */
  close(): Promise<void>;
};

export type TopSender = { pubkey: string; events: number; bytes: number; multiplier: number };

/** Members-only reads: allow-listed, or admitted (one-time or a subscription still running). A cache lookup. */
function memberCheck(pricing: Pricing, cache: AccountCache): (pubkey: string, at: number) => boolean {
  return (pubkey, at) => pricing.allowed.has(pubkey) || isAdmitted(cache.get(pubkey), at);
}

export type PaymentGateOptions = {
  /** The held events of all replicas, after each trim (metrics). */
  onHeldStats?: (stats: HeldStats) => void;
  /** A refused event not held because the hold queue was full (metrics). */
  onHoldDropped?: () => void;
  /**
   * Resolves when the relay's writer has no group commit in flight: a batch of held events
   * waits for it (a bounded time, hold.ts) rather than share the database with paying writes.
   */
  writerIdle?: () => Promise<void>;
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
  { onHeldStats = () => {}, onHoldDropped = () => {}, writerIdle }: PaymentGateOptions = {},
): Promise<PaymentGate> {
  const cache = new AccountCache(db, log);
  await cache.start(bus);
  // The global bound is enforced by a trim, run by the purge timer and whenever this replica
  // has held a sixteenth of the bound since the last one: it overshoots by at most that much
  // per replica, and a refusal never pays for a sum over the whole table.
  const trimEvery = Math.max(64 * 1024, Math.floor(config.HELD_EVENTS_MAX_TOTAL_BYTES / 16));
  let heldSinceTrim = 0;
  // A trim answers for the rows held before it was asked for: a call while one runs waits for
  // the next one, which every call meanwhile shares (one on Postgres, at most one waiting). The
  // one running may have read the table before rows the caller knows of were written.
  let trimming: Promise<number> | undefined;
  let nextTrim: Promise<number> | undefined;
  const trim = (at: number): Promise<number> => {
    heldSinceTrim = 0;
    if (trimming) {
      nextTrim ??= trimming
        .catch(() => 0)
        .then(() => {
          nextTrim = undefined;
          return trim(at);
        });
      return nextTrim;
    }
    trimming = trimHeldEvents(db.kysely, config.HELD_EVENTS_MAX_TOTAL_BYTES, at)
      .then(({ deleted, ...stats }) => {
        onHeldStats(stats);
        if (deleted > 0) log.info({ deleted, ...stats }, 'held events over the global bound dropped, oldest first');
        return deleted;
      })
      .finally(() => (trimming = undefined));
    return trimming;
  };
  await trim(nowSeconds()).catch((err) => log.warn({ err }, 'held events: first trim failed'));
  const holds = new HoldQueue(
    async (items) => {
      const results = await holdEvents(db.kysely, items, {
        now: nowSeconds(),
        ttlSeconds: config.HELD_EVENT_TTL_SECONDS,
        maxPerPubkey: config.HELD_EVENTS_PER_PUBKEY,
        maxBytes: config.HELD_EVENT_MAX_BYTES,
        maxBytesPerIp: config.HELD_BYTES_PER_IP,
      });
      for (let i = 0; i < items.length; i++) if (results[i] === 'held') heldSinceTrim += Buffer.byteLength(items[i].raw);
      if (heldSinceTrim >= trimEvery) await trim(nowSeconds());
    },
    log,
    { beforeBatch: writerIdle },
  );
  const spam = spamPricing(config, pricing, log);
  return {
    check(ev: NostrEvent, json: string, ip = ''): GateDecision {
      const bytes = Buffer.byteLength(json);
      const at = nowSeconds();
      const volume = spam.inputs(ev.pubkey, ip, cache.history(ev.pubkey));
      const d = gate(pricing, ev, bytes, cache.available(ev.pubkey), at, volume?.inputs);
      if (d.action === 'refuse') {
        volume?.refused();
        return d;
      }
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
    topSenders: (limit) => spam.topSenders(limit),
    load: () => spam.load(),
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
    charges: { cover: affordableCharges, debit: debitEvents },
    async close() {
      cache.close();
      await spam.close();
      await holds.drain();
    },
  };
}

/**
 * Spam pricing's inputs to the gate: the sender's writing in the last day (its allowance) and in
 * the window, and its network's, from the volume counters every replica shares (Redis; this
 * process's own without REDIS_URL). A write that passes is counted at once (a burst sees its own
 * earlier events) and taken back if it is not stored. A stored write also counts in the
 * relay-wide load (load.ts), whose level is the gate's `loadLevel`.
 */
function spamPricing(config: Config, pricing: Pricing, log: Logger) {
  // Made at the first decision with spam pricing on: an admin may switch it on at run time.
  // `reader`: the admin's top-senders read, on a connection of its own with a longer bound (a
  // slow read must not leave the gate's counters stalled).
  let counters: { store: VolumeCounters; tracker: VolumeTracker; load: LoadMonitor; reader: VolumeCounters } | undefined;
  const started = () => {
    if (counters) return counters;
    const store: VolumeCounters = config.REDIS_URL
      ? new RedisVolumes(config.REDIS_URL, log, { prefix: `${config.REDIS_PREFIX}vol:` })
      : new LocalVolumes();
    const tracker = new VolumeTracker(store, randomUUID(), log);
    tracker.start();
    // The policy read at each evaluation: admins change it (and its capacity) at run time.
    const load = new LoadMonitor(
      store,
      () => pricing.surge,
      () => tracker.replicasSeen,
      log,
    );
    load.start();
    const reader = config.REDIS_URL
      ? new RedisVolumes(config.REDIS_URL, log, { timeoutMs: 2_000, prefix: `${config.REDIS_PREFIX}vol:` })
      : store;
    counters = { store, tracker, load, reader };
    return counters;
  };
  // On at start: the load level is followed from the first second, before this replica's first write.
  if (pricing.surge) started();
  // Client address to its network, remembered: asked for every write, a flood's included.
  const networks = new Map<string, string>();
  const network = (ip: string): string => {
    let key = networks.get(ip);
    if (key === undefined) {
      key = networkKey(ip, config.SURGE_V6_PREFIX, config.SURGE_V4_PREFIX);
      if (networks.size >= NETWORKS_MAX) networks.delete(networks.keys().next().value as string);
      networks.set(ip, key);
    }
    return key;
  };
  return {
    async topSenders(limit: number): Promise<TopSender[]> {
      const policy = pricing.surge;
      if (!policy) return [];
      const { reader, load } = started();
      const window = surgeWindow(policy);
      const rows = await reader.top(windowGroup(window), window, limit);
      return rows.map((r) => ({
        pubkey: r.member,
        events: r.events,
        bytes: r.bytes,
        multiplier: senderMultiplier(policy, r, load.level),
      }));
    },
    load() {
      const load = counters?.load;
      return { level: load?.level ?? 0, writesPerSecond: load?.writesPerSecond ?? 0, evaluations: load?.evaluations ?? 0 };
    },
    inputs(pubkey: string, ip: string, history: History): SenderVolume | undefined {
      // The policy as it is now (admins change it at run time; switched off, nothing is counted).
      const policy = pricing.surge;
      if (!policy) return undefined;
      const { tracker, load } = started();
      return new SenderVolume(tracker, load, policy, pubkey, ip, network(ip), history);
    },
    async close() {
      if (!counters) return;
      if (counters.reader !== counters.store) await counters.reader.close();
      await counters.load.close();
      await counters.tracker.close();
      await counters.store.close();
    },
  };
}

/** Client addresses whose network is remembered; the oldest go first. */
const NETWORKS_MAX = 100_000;

/**
 * Spam pricing for one decision: the gate's inputs for a sender and its network, and what the
 * outcome counts. Made for every write, a flood's refusals included, so it is a class (its
 * methods are made once) rather than closures made per write.
 */
class SenderVolume {
  readonly inputs: SurgeInputs;
  private readonly keys: ReturnType<typeof counterKeys>;
  private readonly window: VolumeWindow;

  constructor(
    private readonly tracker: VolumeTracker,
    private readonly load: LoadMonitor,
    policy: SurgePolicy,
    pubkey: string,
    private readonly ip: string,
    network: string,
    history: History,
  ) {
    const window = surgeWindow(policy);
    // The keys the admission API reads too (the slot size is in the window keys).
    const keys = counterKeys(pubkey, network, policy);
    const now = Date.now();
    this.window = window;
    this.keys = keys;
    this.inputs = {
      policy,
      // Trust grows with the account's age and with what the key has paid in all.
      history,
      day: tracker.view(keys.day, DAY, now),
      window: tracker.view(keys.window, window, now),
      networkWindow: ip ? tracker.view(keys.network, window, now) : { events: 0, bytes: 0 },
      // Admissions bought from the network lately (counted by the admission service when paid):
      // the admission price a refusal names is the one the pay page asks.
      networkAdmissions: ip ? tracker.view(keys.admissions, window, now).events : 0,
      loadLevel: load.level,
    };
  }

  /** Counts a write that passes at once; the settle it returns takes it back unless it was stored. */
  count(bytes: number): (committed: boolean) => void {
    this.add(1, bytes);
    let done = false;
    return (committed) => {
      if (done) return;
      done = true;
      if (!committed) this.add(-1, bytes);
      else this.load.count();
    };
  }

  /**
   * A refusal may name the admission price: the network's admissions are followed from now on
   * (one counter per network, refreshed while in use; a flood of fresh keys adds none).
   */
  refused(): void {
    if (this.ip) this.tracker.count(this.keys.admissions, this.window, 0, 0);
  }

  private add(sign: number, bytes: number): void {
    this.tracker.count(this.keys.day, DAY, sign, sign * bytes);
    this.tracker.count(this.keys.window, this.window, sign, sign * bytes, windowGroup(this.window));
    if (this.ip) this.tracker.count(this.keys.network, this.window, sign, sign * bytes);
  }
}

/**
 * The senders' window counters, ranked (top senders). The slot size is in the keys: after a
 * change of the window, counters of another slot size (whose slot numbers mean other times) are
 * not read as this one's.
 */
function windowGroup(w: VolumeWindow): string {
  return `w:${w.slotSeconds}:`;
}

/** The multiplier of a sender's next write beyond its allowance, from its own volume and the load. */
function senderMultiplier(policy: SurgePolicy, window: { events: number; bytes: number }, loadLevel: number): number {
  const none = { events: 0, bytes: 0 };
  const inputs: SurgeInputs = {
    policy,
    history: { admittedSince: null, paidMsat: 0 },
    day: none,
    window,
    networkWindow: none,
    networkAdmissions: 0,
    loadLevel,
  };
  return writeMultiplier(inputs).multiplier;
}
