/** Held events: refused writes kept for a while so that they can be paid for and then published. */
import { createHash } from 'node:crypto';
import { sql, type ExpressionBuilder, type Kysely, type RawBuilder, type Selectable } from 'kysely';
import { isHex64 } from '@paidrelay/nostr';
import type { HeldEventsTable, Schema } from '../schema.ts';
import { atomically } from '../transaction.ts';
import { bufHex, hexBuf } from '../hex.ts';
import { checkHex64, checkInt } from './checks.ts';

export type HeldEvent = { id: string; pubkey: string; kind: number; raw: string; amountMsat: number; expiresAt: number };

export type HoldResult = 'held' | 'already-held' | 'too-large' | 'limit-reached';

/** Namespace (first key) of the advisory locks that serialise holdEvent per pubkey. */
const HOLD_LOCK_NAMESPACE = 0x484c4450;
/** Namespace of the advisory locks that serialise holds per client address (taken after the pubkeys'). */
const HOLD_IP_LOCK_NAMESPACE = 0x484c4449;

export type HoldItem = { id: string; pubkey: string; kind: number; raw: string; amountMsat: number; ip?: string };
export type HoldOptions = { now: number; ttlSeconds: number; maxPerPubkey: number; maxBytes: number; maxBytesPerIp?: number };

/**
 * Keeps a refused event until it is paid for, for `ttlSeconds`, at most `maxPerPubkey` per
 * pubkey, `maxBytesPerIp` bytes per client address (when the event names one) and `maxBytes`
 * of JSON each.
 *
 * - 'already-held': the same event is held; its expiry is pushed to now + ttl (price unchanged).
 * - When the pubkey (or the address) is at its limit the OLDEST held events are dropped, so the
 *   newest refused write is always the one that can be paid for; an event with a pending,
 *   unexpired invoice is never dropped (someone is paying for it). 'limit-reached' only when
 *   every slot is taken by such events (or maxPerPubkey is 0).
 * - 'too-large': raw is over maxBytes (UTF-8).
 */
export async function holdEvent(db: Kysely<Schema>, ev: HoldItem, opts: HoldOptions): Promise<HoldResult> {
  return (await holdEvents(db, [ev], opts))[0];
}

/**
 * holdEvent for many events in one transaction (a refusal must stay cheap: the relay batches
 * the events it refuses, as it batches the ones it stores). Results are in input order, exactly
 * as if the events were held one after another; the whole batch costs a fixed number of
 * statements however large it is: one to lock its pubkeys and addresses, one to read what they
 * hold, one to write the difference (planHolds decides in memory, item by item).
 */
export async function holdEvents(db: Kysely<Schema>, evs: HoldItem[], opts: HoldOptions): Promise<HoldResult[]> {
  for (const ev of evs) {
    checkHex64(ev.id, 'id');
    checkHex64(ev.pubkey, 'pubkey');
    checkInt(ev.kind, 'kind');
    if (typeof ev.raw !== 'string') throw new TypeError('raw must be a string');
    checkInt(ev.amountMsat, 'amountMsat');
  }
  checkInt(opts.now, 'now');
  checkInt(opts.ttlSeconds, 'ttlSeconds', 1);
  checkInt(opts.maxPerPubkey, 'maxPerPubkey');
  checkInt(opts.maxBytes, 'maxBytes');
  const items = evs.map((ev) => ({ ev, bytes: Buffer.byteLength(ev.raw, 'utf8'), ip: ev.ip ?? '' }));
  const results: HoldResult[] = items.map((it) => (it.bytes > opts.maxBytes ? 'too-large' : 'held'));
  const todo = items.filter((_, i) => results[i] !== 'too-large');
  if (todo.length === 0) return results;

  return atomically(db, async (trx) => {
    // Serialise holds of one pubkey, then of one address (each hashed to 2^32 keys), so the bounds
    // hold across replicas; every transaction takes its locks in the same order, so none deadlock.
    const perIp = opts.maxBytesPerIp !== undefined;
    const pubkeys = [...new Set(todo.map((t) => t.ev.pubkey))];
    const ips = perIp ? [...new Set(todo.filter((t) => t.ip !== '').map((t) => t.ip))] : [];
    await lockAll(trx, [
      [HOLD_LOCK_NAMESPACE, pubkeys.map((p) => hexBuf(p).readInt32BE(0))],
      [HOLD_IP_LOCK_NAMESPACE, ips.map(addressLockKey)],
    ]);
    const ids = [...new Set(todo.map((t) => t.ev.id))];
    const before = await readHeld(trx, pubkeys, ips, ids, opts.now);
    const plan = planHolds(before, todo, opts);
    await writePlan(trx, plan, opts.now, opts.now + opts.ttlSeconds);
    let k = 0;
    return results.map((r) => (r === 'too-large' ? r : plan.results[k++]));
  });
}

/**
 * Takes transaction-level advisory locks, namespace by namespace in the order given and keys
 * ascending within one (duplicates once), in one statement.
 */
async function lockAll(trx: Kysely<Schema>, groups: [namespace: number, keys: number[]][]): Promise<void> {
  const ns: number[] = [];
  const ks: number[] = [];
  for (const [namespace, keys] of groups) {
    for (const k of [...new Set(keys)].sort((a, b) => a - b)) {
      ns.push(namespace);
      ks.push(k);
    }
  }
  if (ks.length === 0) return;
  await sql`SELECT count(pg_advisory_xact_lock(n, k)) FROM (SELECT n, k FROM unnest(${ns}::int4[], ${ks}::int4[]) WITH ORDINALITY AS l(n, k, o) ORDER BY o) s`.execute(
    trx,
  );
}

function addressLockKey(ip: string): number {
  return createHash('sha256').update(ip).digest().readInt32BE(0);
}

/** What planHolds needs of a held event (ids hex). */
type HeldRow = {
  id: string;
  pubkey: string;
  ip: string;
  bytes: number;
  createdAt: number;
  expiresAt: number;
  /** A pending, unexpired invoice is for this event: it is never dropped. */
  beingPaid: boolean;
};

type Before = { rows: HeldRow[]; paidIds: Set<string> };

/**
 * One statement: the held events of the batch's pubkeys and addresses and its own ids, and the
 * batch's ids that a pending invoice is for although they are not held (held again, they are
 * being paid for).
 */
async function readHeld(trx: Kysely<Schema>, pubkeys: string[], ips: string[], ids: string[], now: number): Promise<Before> {
  const pending = (id: RawBuilder<unknown>) =>
    sql`EXISTS (SELECT 1 FROM invoices i WHERE i.event_id = ${id} AND i.status = 'pending' AND i.expires_at > ${now})`;
  const r = await sql<{
    event_id: Uint8Array;
    pubkey: Uint8Array | null;
    ip: string | null;
    bytes: number | null;
    created_at: number | null;
    expires_at: number | null;
    being_paid: boolean;
  }>`
    SELECT h.event_id, h.pubkey, h.ip, h.bytes, h.created_at, h.expires_at, ${pending(sql`h.event_id`)} AS being_paid
      FROM held_events h
      WHERE h.pubkey = ANY(${pubkeys.map(hexBuf)}::bytea[]) OR h.ip = ANY(${ips}::text[]) OR h.event_id = ANY(${ids.map(hexBuf)}::bytea[])
    UNION ALL
    SELECT x.id, NULL, NULL, NULL, NULL, NULL, true
      FROM unnest(${ids.map(hexBuf)}::bytea[]) AS x(id)
      WHERE ${pending(sql`x.id`)} AND NOT EXISTS (SELECT 1 FROM held_events h WHERE h.event_id = x.id)`.execute(trx);
  const rows: HeldRow[] = [];
  const paidIds = new Set<string>();
  for (const x of r.rows) {
    if (x.pubkey === null) paidIds.add(bufHex(x.event_id));
    else
      rows.push({
        id: bufHex(x.event_id),
        pubkey: bufHex(x.pubkey),
        ip: x.ip ?? '',
        bytes: Number(x.bytes),
        createdAt: Number(x.created_at),
        expiresAt: Number(x.expires_at),
        beingPaid: x.being_paid,
      });
  }
  return { rows, paidIds };
}

type PlanItem = { ev: HoldItem; bytes: number; ip: string };

type HoldPlan = {
  results: HoldResult[];
  /** Held before, gone after. */
  deleted: string[];
  /** Held before and kept as they were, their expiry pushed to now + ttl. */
  refreshed: string[];
  /** To insert (an id held before, dropped and held again within the batch: to overwrite). */
  inserted: { item: HoldItem; bytes: number; ip: string }[];
};

/** (created_at, event_id) ascending: the order in which the oldest go first. */
const oldestFirst = (a: HeldRow, b: HeldRow) => a.createdAt - b.createdAt || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0);

/** The held events of one pubkey or one address, oldest first, and their bytes. */
type Group = { rows: HeldRow[]; bytes: number };

/**
 * Held events by pubkey and by address as a plan goes, each group kept in order: sorted once,
 * then each change put in its place (an address near its bound holds thousands of events, and
 * sorting them again for every item of a batch was most of a batch's cost).
 */
class HeldIndex {
  readonly byId = new Map<string, HeldRow>();
  private readonly byPubkey = new Map<string, Group>();
  private readonly byIp = new Map<string, Group>();

  constructor(rows: HeldRow[]) {
    for (const r of rows) {
      this.byId.set(r.id, r);
      groupOf(this.byPubkey, r.pubkey).rows.push(r);
      const g = groupOf(this.byIp, r.ip);
      g.rows.push(r);
      g.bytes += r.bytes;
    }
    for (const g of this.byPubkey.values()) g.rows.sort(oldestFirst);
    for (const g of this.byIp.values()) g.rows.sort(oldestFirst);
  }

  pubkey(pubkey: string): Group {
    return this.byPubkey.get(pubkey) ?? EMPTY;
  }

  ip(ip: string): Group {
    return this.byIp.get(ip) ?? EMPTY;
  }

  add(r: HeldRow): void {
    this.byId.set(r.id, r);
    place(groupOf(this.byPubkey, r.pubkey), r);
    place(groupOf(this.byIp, r.ip), r);
  }

  remove(r: HeldRow): void {
    this.byId.delete(r.id);
    unplace(this.byPubkey.get(r.pubkey), r);
    unplace(this.byIp.get(r.ip), r);
  }
}

const EMPTY: Group = { rows: [], bytes: 0 };

function groupOf(m: Map<string, Group>, key: string): Group {
  let g = m.get(key);
  if (!g) m.set(key, (g = { rows: [], bytes: 0 }));
  return g;
}

/** Where `r` goes in (or is in) rows ordered oldest first: the first row not older than it. */
function position(rows: HeldRow[], r: HeldRow): number {
  let lo = 0;
  let hi = rows.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (oldestFirst(rows[mid], r) < 0) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

function place(g: Group, r: HeldRow): void {
  g.rows.splice(position(g.rows, r), 0, r);
  g.bytes += r.bytes;
}

function unplace(g: Group | undefined, r: HeldRow): void {
  if (!g) return;
  const i = position(g.rows, r);
  if (g.rows[i] !== r) return;
  g.rows.splice(i, 1);
  g.bytes -= r.bytes;
}

/**
 * Decides a batch of holds in memory from what was held before it, item by item in input order,
 * as holding them one after another would (later items see the effect of earlier ones), and says
 * what to write. Pure.
 */
function planHolds(before: Before, items: PlanItem[], opts: HoldOptions): HoldPlan {
  const { now } = opts;
  const expiresAt = now + opts.ttlSeconds;
  const held = new HeldIndex(before.rows.map((r) => ({ ...r })));
  const existed = new Set(held.byId.keys());
  const refreshed = new Set<string>();
  const inserted = new Map<string, PlanItem>();

  const results = items.map(({ ev, bytes, ip }): HoldResult => {
    const same = held.byId.get(ev.id);
    if (same) {
      same.expiresAt = Math.max(same.expiresAt, expiresAt);
      if (!inserted.has(ev.id)) refreshed.add(ev.id);
      return 'already-held';
    }
    if (opts.maxPerPubkey === 0) return 'limit-reached';
    const drop = dropForPubkey(held.pubkey(ev.pubkey).rows, opts.maxPerPubkey, now);
    if (drop === undefined) return 'limit-reached';
    if (ip !== '' && opts.maxBytesPerIp !== undefined) {
      if (!dropForAddress(held.ip(ip), ip, bytes, opts.maxBytesPerIp, drop)) return 'limit-reached';
    }
    for (const r of drop) {
      held.remove(r);
      refreshed.delete(r.id);
      inserted.delete(r.id);
    }
    held.add({ id: ev.id, pubkey: ev.pubkey, ip, bytes, createdAt: now, expiresAt, beingPaid: before.paidIds.has(ev.id) });
    inserted.set(ev.id, { ev, bytes, ip });
    return 'held';
  });
  return {
    results,
    deleted: [...existed].filter((id) => !held.byId.has(id)),
    refreshed: [...refreshed],
    inserted: [...inserted.values()].map(({ ev, bytes, ip }) => ({ item: ev, bytes, ip })),
  };
}

/**
 * Per-pubkey bound, over its held events oldest first: drops what has expired (unless being
 * paid), then the oldest until there is room. The events to drop, or undefined when there is no room.
 */
function dropForPubkey(rows: HeldRow[], max: number, now: number): Set<HeldRow> | undefined {
  const drop = new Set<HeldRow>();
  let live = rows.length;
  for (const r of rows) {
    if (!r.beingPaid && r.expiresAt <= now) {
      drop.add(r);
      live--;
    }
  }
  for (const r of rows) {
    if (live < max) break;
    if (!r.beingPaid && r.expiresAt > now) {
      drop.add(r);
      live--;
    }
  }
  return live >= max ? undefined : drop;
}

/**
 * Per-address bound: fresh keys are free, so one address could otherwise hold
 * `maxPerPubkey × keys` events. Adds to `drop` the address's oldest held events (never one
 * being paid for) until `bytes` more fit under `maxBytes`; false when they cannot. `held`: the
 * address's events, oldest first.
 */
function dropForAddress(held: Group, ip: string, bytes: number, maxBytes: number, drop: Set<HeldRow>): boolean {
  if (bytes > maxBytes) return false;
  let used = held.bytes;
  for (const r of drop) if (r.ip === ip) used -= r.bytes;
  for (const r of held.rows) {
    if (used + bytes <= maxBytes) break;
    if (r.beingPaid || drop.has(r)) continue;
    drop.add(r);
    used -= r.bytes;
  }
  return used + bytes <= maxBytes;
}

/**
 * The plan in one statement: delete, push expiries, insert. An id dropped and held again within
 * the batch is overwritten (ON CONFLICT) rather than deleted and inserted in the same statement.
 */
async function writePlan(trx: Kysely<Schema>, plan: HoldPlan, now: number, expiresAt: number): Promise<void> {
  const { deleted, refreshed, inserted } = plan;
  if (deleted.length + refreshed.length + inserted.length === 0) return;
  const col = <T>(f: (x: HoldPlan['inserted'][number]) => T) => inserted.map(f);
  await sql`
    WITH gone AS (
      DELETE FROM held_events WHERE event_id = ANY(${deleted.map(hexBuf)}::bytea[])
    ), pushed AS (
      UPDATE held_events SET expires_at = greatest(expires_at, ${expiresAt}) WHERE event_id = ANY(${refreshed.map(hexBuf)}::bytea[])
    )
    INSERT INTO held_events (event_id, pubkey, kind, raw, amount_msat, created_at, expires_at, ip, bytes)
    SELECT x.id, x.pubkey, x.kind, x.raw, x.amount, ${now}, ${expiresAt}, x.ip, x.bytes
      FROM unnest(${col((x) => hexBuf(x.item.id))}::bytea[], ${col((x) => hexBuf(x.item.pubkey))}::bytea[], ${col((x) => x.item.kind)}::int4[],
        ${col((x) => x.item.raw)}::text[], ${col((x) => x.item.amountMsat)}::int8[], ${col((x) => x.ip)}::text[], ${col((x) => x.bytes)}::int4[])
        AS x(id, pubkey, kind, raw, amount, ip, bytes)
    ON CONFLICT (event_id) DO UPDATE SET pubkey = excluded.pubkey, kind = excluded.kind, raw = excluded.raw,
      amount_msat = excluded.amount_msat, created_at = excluded.created_at, expires_at = excluded.expires_at,
      ip = excluded.ip, bytes = excluded.bytes`.execute(trx);
}

/** The held event `h` has a pending invoice that has not expired: someone is paying for it. */
function paymentPending(eb: ExpressionBuilder<Schema & { h: Schema['held_events'] }, 'h'>, now: number) {
  return eb.exists(
    eb
      .selectFrom('invoices as i')
      .select('i.id')
      .whereRef('i.event_id', '=', 'h.event_id')
      .where('i.status', '=', 'pending')
      .where('i.expires_at', '>', now),
  );
}

function toHeldEvent(r: Selectable<HeldEventsTable>): HeldEvent {
  return { id: bufHex(r.event_id), pubkey: bufHex(r.pubkey), kind: r.kind, raw: r.raw, amountMsat: r.amount_msat, expiresAt: r.expires_at };
}

export type HeldStats = { events: number; bytes: number };

/**
 * The global bound: keeps the newest held events whose bytes add up to at most `maxTotalBytes`
 * and deletes the older ones, except those being paid for. One statement, safe to run from
 * every replica at once. Returns how many were deleted and what is held afterwards.
 */
export async function trimHeldEvents(db: Kysely<Schema>, maxTotalBytes: number, now: number): Promise<HeldStats & { deleted: number }> {
  checkInt(maxTotalBytes, 'maxTotalBytes');
  checkInt(now, 'now');
  const r = await sql<{ n: number }>`
    WITH ranked AS (
      SELECT event_id, sum(bytes) OVER (ORDER BY created_at DESC, event_id DESC) AS newer_bytes FROM held_events
    ), gone AS (
      DELETE FROM held_events d USING ranked r
      WHERE d.event_id = r.event_id AND r.newer_bytes > ${maxTotalBytes}
        AND NOT EXISTS (SELECT 1 FROM invoices i WHERE i.event_id = d.event_id AND i.status = 'pending' AND i.expires_at > ${now})
      RETURNING 1
    )
    SELECT count(*)::int8 AS n FROM gone`.execute(db);
  return { deleted: Number(r.rows[0]?.n ?? 0), ...(await heldEventStats(db)) };
}

/** How many events, and how many bytes of them, are held now. */
export async function heldEventStats(db: Kysely<Schema>): Promise<HeldStats> {
  const r = await db
    .selectFrom('held_events')
    .select((eb) => [
      eb.fn.countAll<number>().as('events'),
      eb.cast<number>(eb.fn.coalesce(eb.fn.sum<number>('bytes'), eb.lit(0)), 'int8').as('bytes'),
    ])
    .executeTakeFirstOrThrow();
  return { events: Number(r.events), bytes: Number(r.bytes) };
}

/** A held event that has not expired at `now`, or undefined. */
export async function getHeldEvent(db: Kysely<Schema>, eventId: string, now: number): Promise<HeldEvent | undefined> {
  if (!isHex64(eventId)) return undefined;
  checkInt(now, 'now');
  const r = await db
    .selectFrom('held_events')
    .selectAll()
    .where('event_id', '=', hexBuf(eventId))
    .where('expires_at', '>', now)
    .executeTakeFirst();
  return r && toHeldEvent(r);
}

/**
 * A pubkey's held events that nothing is paying for yet (no pending, unexpired invoice of their
 * own), oldest first: after a grant, the admission service publishes those the gate now accepts.
 */
export async function listHeldEvents(db: Kysely<Schema>, pubkey: string, now: number): Promise<HeldEvent[]> {
  checkHex64(pubkey, 'pubkey');
  checkInt(now, 'now');
  const rows = await db
    .selectFrom('held_events as h')
    .selectAll('h')
    .where('h.pubkey', '=', hexBuf(pubkey))
    .where('h.expires_at', '>', now)
    .where((eb) => eb.not(paymentPending(eb, now)))
    .orderBy('h.created_at')
    .execute();
  return rows.map(toHeldEvent);
}

/** Removes held events (published by other means). Returns how many were removed. */
export async function deleteHeldEvents(db: Kysely<Schema>, eventIds: string[]): Promise<number> {
  if (eventIds.length === 0) return 0;
  for (const id of eventIds) checkHex64(id, 'eventId');
  const r = await db.deleteFrom('held_events').where('event_id', 'in', eventIds.map(hexBuf)).executeTakeFirst();
  return Number(r.numDeletedRows);
}

/**
 * Deletes held events whose expiry is due (expires_at <= now), except those with a pending
 * invoice that has not expired (a payment may still arrive). Returns how many were deleted.
 * (A payment that arrives after its held event was purged is credited to the payer's balance.)
 */
export async function purgeHeldEvents(db: Kysely<Schema>, now: number): Promise<number> {
  checkInt(now, 'now');
  const r = await db
    .deleteFrom('held_events as h')
    .where('h.expires_at', '<=', now)
    .where((eb) => eb.not(paymentPending(eb, now)))
    .executeTakeFirst();
  return Number(r.numDeletedRows);
}
