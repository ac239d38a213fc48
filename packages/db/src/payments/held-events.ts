/** Held events: refused writes kept for a while so that they can be paid for and then published. */
import { createHash } from 'node:crypto';
import { sql, type ExpressionBuilder, type Kysely, type Selectable } from 'kysely';
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
 * the events it refuses, as it batches the ones it stores). Results are in input order.
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
  const todo = items.map((it, i) => ({ ...it, i })).filter((it) => results[it.i] !== 'too-large');
  if (todo.length === 0) return results;

  return atomically(db, async (trx) => {
    // Serialise holds of one pubkey, then of one address (each hashed to 2^32 keys), so the bounds
    // hold across replicas; every transaction takes its locks in the same order, so none deadlock.
    const perIp = opts.maxBytesPerIp !== undefined;
    await lockAll(
      trx,
      HOLD_LOCK_NAMESPACE,
      todo.map((t) => hexBuf(t.ev.pubkey).readInt32BE(0)),
    );
    if (perIp)
      await lockAll(
        trx,
        HOLD_IP_LOCK_NAMESPACE,
        todo.filter((t) => t.ip !== '').map((t) => addressLockKey(t.ip)),
      );
    for (const t of todo) results[t.i] = await holdOne(trx, t.ev, t.bytes, t.ip, opts);
    return results;
  });
}

/** Takes transaction-level advisory locks on `keys` in ascending order (duplicates once). */
async function lockAll(trx: Kysely<Schema>, namespace: number, keys: number[]): Promise<void> {
  const sorted = [...new Set(keys)].sort((a, b) => a - b);
  if (sorted.length === 0) return;
  await sql`SELECT count(pg_advisory_xact_lock(${namespace}::int4, k)) FROM (SELECT k FROM unnest(${sorted}::int4[]) k ORDER BY k) s`.execute(
    trx,
  );
}

function addressLockKey(ip: string): number {
  return createHash('sha256').update(ip).digest().readInt32BE(0);
}

async function holdOne(trx: Kysely<Schema>, ev: HoldItem, bytes: number, ip: string, opts: HoldOptions): Promise<HoldResult> {
  const { now } = opts;
  const expiresAt = now + opts.ttlSeconds;
  const id = hexBuf(ev.id);
  const pk = hexBuf(ev.pubkey);
  const refreshed = await trx
    .updateTable('held_events')
    .set((eb) => ({ expires_at: eb.fn('greatest', ['expires_at', eb.val(expiresAt)]) }))
    .where('event_id', '=', id)
    .executeTakeFirst();
  if (Number(refreshed.numUpdatedRows) > 0) return 'already-held';
  if (opts.maxPerPubkey === 0) return 'limit-reached';

  const rows = await trx
    .selectFrom('held_events as h')
    .select(['h.event_id', 'h.expires_at'])
    .select((eb) => beingPaid(eb, now))
    .where('h.pubkey', '=', pk)
    .orderBy('h.created_at')
    .orderBy('h.event_id')
    .execute();
  // Drop what has expired (unless being paid), then the oldest until there is room.
  const drop: Uint8Array[] = [];
  let live = rows.length;
  for (const r of rows) {
    if (!r.being_paid && r.expires_at <= now) {
      drop.push(r.event_id);
      live--;
    }
  }
  for (const r of rows) {
    if (live < opts.maxPerPubkey) break;
    if (!r.being_paid && r.expires_at > now) {
      drop.push(r.event_id);
      live--;
    }
  }
  if (live >= opts.maxPerPubkey) return 'limit-reached';
  if (ip !== '' && opts.maxBytesPerIp !== undefined) {
    const room = await makeRoomForAddress(trx, ip, bytes, opts.maxBytesPerIp, now, drop);
    if (!room) return 'limit-reached';
  }
  if (drop.length > 0) await trx.deleteFrom('held_events').where('event_id', 'in', drop).execute();
  await trx
    .insertInto('held_events')
    .values({
      event_id: id,
      pubkey: pk,
      kind: ev.kind,
      raw: ev.raw,
      amount_msat: ev.amountMsat,
      created_at: now,
      expires_at: expiresAt,
      ip,
      bytes,
    })
    .execute();
  return 'held';
}

/**
 * Per-address bound: fresh keys are free, so one address could otherwise hold
 * `maxPerPubkey × keys` events. Adds to `drop` the address's oldest held events (never one
 * being paid for) until `bytes` more fit under `maxBytes`; false when they cannot.
 */
async function makeRoomForAddress(
  trx: Kysely<Schema>,
  ip: string,
  bytes: number,
  maxBytes: number,
  now: number,
  drop: Uint8Array[],
): Promise<boolean> {
  if (bytes > maxBytes) return false;
  const rows = await trx
    .selectFrom('held_events as h')
    .select(['h.event_id', 'h.bytes'])
    .select((eb) => beingPaid(eb, now))
    .where('h.ip', '=', ip)
    .orderBy('h.created_at')
    .orderBy('h.event_id')
    .execute();
  const dropping = new Set(drop.map((d) => bufHex(d)));
  let used = 0;
  for (const r of rows) if (!dropping.has(bufHex(r.event_id))) used += r.bytes;
  for (const r of rows) {
    if (used + bytes <= maxBytes) break;
    if (r.being_paid || dropping.has(bufHex(r.event_id))) continue;
    drop.push(r.event_id);
    dropping.add(bufHex(r.event_id));
    used -= r.bytes;
  }
  return used + bytes <= maxBytes;
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

function beingPaid(eb: ExpressionBuilder<Schema & { h: Schema['held_events'] }, 'h'>, now: number) {
  return paymentPending(eb, now).as('being_paid');
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
