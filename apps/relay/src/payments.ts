import { ACCOUNTS_CHANNEL, type Bus } from '@paidrelay/bus';
import type { Config } from '@paidrelay/config';
import {
  affordableCharges,
  debitForEvent,
  holdEvents,
  listAccounts,
  purgeHeldEvents,
  trimHeldEvents,
  type AccountRow,
  type Database,
  type HeldStats,
  type HoldItem,
} from '@paidrelay/db';
import { nowSeconds, type NostrEvent } from '@paidrelay/nostr';
import { gate, heldEventPrice, isAdmitted, payUrl, type Account, type Pricing } from '@paidrelay/pricing';
import type { Logger } from 'pino';
import type { GateDecision, PaymentGate } from './gate.ts';
import { networkKey } from './limits.ts';

const REFRESH_MS = 30_000;

/**
 * Accounts as this replica knows them: loaded at start, kept fresh by the bus (a grant on
 * any admission replica reaches here within a second), and re-read periodically as a backstop.
 */
export class AccountCache {
  private accounts = new Map<string, Account & { version: number }>();
  /** msat taken by this replica's writes that passed the gate and are not committed yet. */
  private reserved = new Map<string, number>();
  private version = 0;
  private updatedAt = 0;
  private timer?: NodeJS.Timeout;

  constructor(
    private readonly db: Database,
    private readonly log: Logger,
  ) {}

  async start(bus: Bus): Promise<void> {
    await bus.subscribe(ACCOUNTS_CHANNEL, (msg) => {
      try {
        this.put(JSON.parse(msg) as AccountRow);
      } catch (err) {
        this.log.warn({ err: (err as Error).message }, 'accounts: bad bus message');
      }
    });
    await this.refresh();
    this.timer = setInterval(() => void this.refresh(), REFRESH_MS);
    this.timer.unref();
  }

  private async refresh(): Promise<void> {
    try {
      const since = this.updatedAt;
      this.updatedAt = nowSeconds() - 5;
      for (const row of await listAccounts(this.db.kysely, since > 0 ? { sinceUpdatedAt: since } : undefined)) this.put(row);
    } catch (err) {
      this.log.warn({ err: (err as Error).message }, 'accounts: refresh failed, keeping the cache');
    }
  }

  put(row: AccountRow): void {
    this.accounts.set(row.pubkey, { admitted: row.admitted, admittedUntil: row.admittedUntil, balanceMsat: row.balanceMsat, version: ++this.version });
  }

  get(pubkey: string): Account | undefined {
    return this.accounts.get(pubkey);
  }

  /** The account as the gate must see it: its balance less what in-flight writes have reserved. */
  available(pubkey: string): Account | undefined {
    const a = this.accounts.get(pubkey);
    const r = this.reserved.get(pubkey) ?? 0;
    return a && (r === 0 ? a : { ...a, balanceMsat: Math.max(0, a.balanceMsat - r) });
  }

  /**
   * Takes `amountMsat` from the available balance for one write (synchronous, so reservations
   * of one key are serialised). The returned function gives it back once the write is over,
   * lowering the cached balance only if the debit was committed and no fresher row has arrived
   * since (a fresher row already counts it). Nothing is changed inside a transaction: an
   * aborted one leaves the cache as it was.
   */
  reserve(pubkey: string, amountMsat: number): (committed: boolean) => void {
    this.reserved.set(pubkey, (this.reserved.get(pubkey) ?? 0) + amountMsat);
    const version = this.accounts.get(pubkey)?.version;
    let done = false;
    return (committed) => {
      if (done) return;
      done = true;
      const left = (this.reserved.get(pubkey) ?? 0) - amountMsat;
      if (left > 0) this.reserved.set(pubkey, left);
      else this.reserved.delete(pubkey);
      const a = this.accounts.get(pubkey);
      if (committed && a && a.version === version) a.balanceMsat = Math.max(0, a.balanceMsat - amountMsat);
    };
  }

  close(): void {
    clearInterval(this.timer);
  }
}

/** Members-only reads: allow-listed, or admitted (one-time or a subscription still running). A cache lookup. */
function memberCheck(pricing: Pricing, cache: AccountCache): (pubkey: string, at: number) => boolean {
  return (pubkey, at) => pricing.allowed.has(pubkey) || isAdmitted(cache.get(pubkey), at);
}

/** The membership check alone, for members-only reads on a relay whose writes cost nothing. */
export async function createMembership(
  pricing: Pricing,
  db: Database,
  bus: Bus,
  log: Logger,
): Promise<{ isMember(pubkey: string, now: number): boolean; close(): void }> {
  const cache = new AccountCache(db, log);
  await cache.start(bus);
  return { isMember: memberCheck(pricing, cache), close: () => cache.close() };
}

/** The payment gate of a paid relay: pricing from the shared config, accounts from the cache. */
export async function createPaymentGate(
  config: Config,
  pricing: Pricing,
  db: Database,
  bus: Bus,
  log: Logger,
  onHeldStats: (stats: HeldStats) => void = () => {},
  onHoldDropped: () => void = () => {},
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
      return d.action === 'refuse' ? d.reason : `blocked: payment required: the balance was spent elsewhere: ${payUrl(pricing, ev.pubkey, ev.id)}`;
    },
    isMember: memberCheck(pricing, cache),
    hold(ev: NostrEvent, json: string, ip: string) {
      const bytes = Buffer.byteLength(json);
      if (bytes > config.HELD_EVENT_MAX_BYTES) return;
      const item = { id: ev.id, pubkey: ev.pubkey, kind: ev.kind, raw: json, amountMsat: heldEventPrice(pricing, ev.kind, bytes), ip: networkKey(ip) };
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

/** Held events waiting for their batch: enough for a burst, bounded so a flood cannot grow memory. */
const HOLD_QUEUE_MAX_BYTES = 8 * 1024 * 1024;
const HOLD_BATCH_MAX = 500;

/**
 * Refused events on their way to `held_events`, written in batches, one transaction each: the
 * refusal is answered at once and costs no transaction of its own. When a flood fills the
 * queue, further events are not held (their refusal stands, with its pay URL; they can be sent
 * again after paying). A failed batch is logged and dropped: holding is a convenience.
 */
export class HoldQueue {
  private items: HoldItem[] = [];
  private bytes = 0;
  private running?: Promise<void>;

  constructor(
    private readonly write: (items: HoldItem[]) => Promise<void>,
    private readonly log: Logger,
    private readonly maxBytes = HOLD_QUEUE_MAX_BYTES,
  ) {}

  add(item: HoldItem, bytes: number): boolean {
    if (this.bytes + bytes > this.maxBytes) return false;
    this.items.push(item);
    this.bytes += bytes;
    this.running ??= this.run();
    return true;
  }

  private async run(): Promise<void> {
    // Let the refusals of this turn join the batch.
    await new Promise((r) => setImmediate(r));
    while (this.items.length > 0) {
      const batch = this.items.splice(0, HOLD_BATCH_MAX);
      try {
        await this.write(batch);
      } catch (err) {
        this.log.warn({ err, events: batch.length }, 'could not hold refused events');
      } finally {
        for (const it of batch) this.bytes -= Buffer.byteLength(it.raw);
      }
    }
    this.running = undefined;
  }

  /** Resolves when everything queued so far has been written (or has failed). */
  async drain(): Promise<void> {
    while (this.running) await this.running;
  }
}
