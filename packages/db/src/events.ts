/**
 * The event store. Every function takes a `Kysely<Schema>` (a pool, a single connection or a
 * transaction) and issues plain Postgres SQL, so it behaves the same on PGlite and Postgres.
 *
 * Writes are batched ("group commit"): storeEvents() handles a whole batch in one transaction
 * with a fixed number of multi-row statements (unnest arrays), however large the batch:
 *
 *   1. advisory locks per pubkey bucket (shared for regular events, exclusive for pubkeys that
 *      write replaceable/addressable events or deletion requests in this batch);
 *   2. read the tombstones and the current versions of the batch's addresses;
 *   3. decide every outcome in memory, in input order (so a batch behaves exactly as if its
 *      events had been stored one after the other);
 *   4. delete replaced versions, insert the survivors and their tags (ON CONFLICT DO NOTHING
 *      RETURNING tells the duplicates), apply deletion requests, write tombstones.
 *
 * Why the locks: under READ COMMITTED two concurrent transactions cannot see each other's
 * uncommitted rows, so without them a deletion request and the event it deletes, arriving at
 * the same moment on two replicas, could both commit and the deleted event would stay; and two
 * versions of one address could race. Deletion and replacement only ever concern events of the
 * same author, so a lock per author is enough. Authors are hashed into 256 buckets (the first
 * byte of the pubkey) to bound the number of locks a transaction holds. Locks are taken in
 * bucket order, and rows are written in key order, so concurrent batches do not deadlock; a
 * deadlock or serialization failure (should one happen anyway) retries the batch.
 */
import { createHash } from 'node:crypto';
import { sql, type Kysely, type RawBuilder } from 'kysely';
import type { Schema } from './schema.ts';
import {
  deletionTargets as requestedDeletions,
  dTag as firstD,
  expirationOf,
  KIND_DELETION,
  kindClass,
  parseAddress,
  type KindClass,
} from '@paidrelay/nostr';
import { atomically } from './transaction.ts';
import type { Filter, NostrEvent, StoreItem, StoreOutcome } from './types.ts';

export const MESSAGE_DUPLICATE = 'already have this event';
export const MESSAGE_DELETED = 'this event was deleted';
export const MESSAGE_STALE = 'have a newer version';

// ---------------------------------------------------------------------------------------------
// Small helpers

/** Tag values (and d identifiers) longer than this are not indexed: a btree entry is limited to
 * about 2.7 kB. Filters never match an unindexed value. */
const MAX_INDEXED_BYTES = 1024;

function indexable(value: string): boolean {
  if (value.includes('\u0000')) return false; // Postgres text cannot hold NUL
  return value.length <= MAX_INDEXED_BYTES / 4 || Buffer.byteLength(value, 'utf8') <= MAX_INDEXED_BYTES;
}

/**
 * The stored form of a d identifier. A value Postgres cannot index (too long, or containing NUL)
 * is replaced by a hash with a control-character prefix that real identifiers do not use, so the
 * address stays unique per author; such identifiers cannot be queried with `#d`.
 */
function addressD(d: string): string {
  if (indexable(d)) return d;
  return `\u0001sha256:${createHash('sha256').update(d, 'utf8').digest('hex')}`;
}

function hexBuf(hex: string): Buffer {
  return Buffer.from(hex, 'hex');
}

/** Event a is the newer version: later created_at, ties broken by the lowest id. */
function newer(a: { createdAt: number; idHex: string }, b: { createdAt: number; idHex: string }): boolean {
  return a.createdAt > b.createdAt || (a.createdAt === b.createdAt && a.idHex < b.idHex);
}

type Prepared = {
  ev: NostrEvent;
  raw: string;
  id: Buffer;
  pubkey: Buffer;
  cls: KindClass;
  /** NULL for regular events, '' for replaceable, the (stored form of the) d value for addressable. */
  dTag: string | null;
  /** `${kind}:${pubkey}:${dTag}` for replaceable/addressable events, else null. */
  address: string | null;
  expiresAt: number | null;
  tagNames: string[];
  tagValues: string[];
};

function prepare(item: StoreItem): Prepared {
  const ev = item.event;
  const cls = kindClass(ev.kind);
  const dTag = cls === 'addressable' ? addressD(firstD(ev)) : cls === 'replaceable' ? '' : null;
  const tagNames: string[] = [];
  const tagValues: string[] = [];
  const seen = new Set<string>();
  for (const t of ev.tags) {
    const name = t[0];
    const value = t[1];
    if (typeof name !== 'string' || name.length !== 1 || typeof value !== 'string') continue;
    const c = name.charCodeAt(0);
    if (!((c >= 97 && c <= 122) || (c >= 65 && c <= 90))) continue;
    if (!indexable(value)) continue;
    const key = name + value; // name is one character, so this is unambiguous
    if (seen.has(key)) continue;
    seen.add(key);
    tagNames.push(name);
    tagValues.push(value);
  }
  return {
    ev,
    raw: item.raw,
    id: hexBuf(ev.id),
    pubkey: hexBuf(ev.pubkey),
    cls,
    dTag,
    address: dTag === null ? null : `${ev.kind}:${ev.pubkey}:${dTag}`,
    expiresAt: expirationOf(ev) ?? null,
    tagNames,
    tagValues,
  };
}

type AddressTarget = { target: string; kind: number; d: string };

/**
 * What a kind-5 request asks to delete (the protocol core's reading of NIP-09: `e` ids, and
 * `a` addresses of the requester's own replaceable or addressable events), with each address
 * in its stored form. Ids cannot be checked here, so their tombstones carry the requester's
 * pubkey and only ever match that author's events.
 */
function deletionTargets(ev: NostrEvent): { ids: string[]; addresses: AddressTarget[] } {
  const { ids, addresses } = requestedDeletions(ev);
  return {
    ids,
    addresses: addresses.map((a) => {
      const { kind, pubkey, d } = parseAddress(a)!;
      const stored = kindClass(kind) === 'addressable' ? addressD(d) : '';
      return { target: `${kind}:${pubkey}:${stored}`, kind, d: stored };
    }),
  };
}

// ---------------------------------------------------------------------------------------------
// Writes

/** Namespace (first key) of the two-key advisory locks that guard an author's writes. */
const WRITE_LOCK_NAMESPACE = 0x4e535452;

const STORED: StoreOutcome = Object.freeze({ status: 'stored' });
const DUPLICATE: StoreOutcome = Object.freeze({ status: 'duplicate', message: MESSAGE_DUPLICATE });
const DELETED: StoreOutcome = Object.freeze({ status: 'deleted', message: MESSAGE_DELETED });
const STALE: StoreOutcome = Object.freeze({ status: 'stale', message: MESSAGE_STALE });

/**
 * Stores a batch of events in one transaction and returns one outcome per item, in input order.
 * Ephemeral events must not be passed (they would be stored as regular ones), nor events that are
 * already expired (NIP-40 says to drop them on publish; that is the relay's policy to apply).
 * `now` (unix seconds) lets an expired current version of an address be replaced by any version.
 *
 * `db` may be a Kysely transaction: the batch then joins it (for example to debit balances in
 * the same commit), and the caller owns commit, rollback and retries. Otherwise the function
 * opens its own transaction and retries it a few times on deadlock/serialization failures.
 */
export async function storeEvents(db: Kysely<Schema>, items: StoreItem[], now: number): Promise<StoreOutcome[]> {
  if (items.length === 0) return [];
  const prepared = items.map(prepare);
  return atomically(db, (trx) => storeInTransaction(trx, prepared, now));
}

type Version = { idHex: string; id: Buffer; pubkeyHex: string; createdAt: number; fromDb: boolean; p?: Prepared };

type Tombstone = { target: string; pubkey: Buffer; createdAt: number; deletionId: Buffer };

async function storeInTransaction(db: Kysely<Schema>, P: Prepared[], now: number): Promise<StoreOutcome[]> {
  // 1. Author locks.
  const exclusive = new Map<number, boolean>();
  for (const p of P) {
    const bucket = p.pubkey[0] ?? 0;
    const x = p.cls !== 'regular' || p.ev.kind === KIND_DELETION;
    exclusive.set(bucket, x || (exclusive.get(bucket) ?? false));
  }
  const buckets = [...exclusive.keys()].sort((a, b) => a - b);
  const modes = buckets.map((b) => exclusive.get(b) === true);
  // A subquery with ORDER BY is not flattened, so the lock calls above it run in bucket order.
  await sql`SELECT CASE WHEN l.x THEN pg_advisory_xact_lock(${WRITE_LOCK_NAMESPACE}::int4, l.b)
                        ELSE pg_advisory_xact_lock_shared(${WRITE_LOCK_NAMESPACE}::int4, l.b) END AS locked
    FROM (SELECT b, x FROM unnest(${buckets}::int4[], ${modes}::bool[]) AS t(b, x) ORDER BY b) AS l`.execute(db);

  // 2. Reads, under the locks (each statement sees everything committed before it started).
  const targets: string[] = [];
  const addressed: Prepared[] = [];
  const addressSeen = new Set<string>();
  for (const p of P) {
    if (p.ev.kind !== KIND_DELETION) targets.push(p.ev.id);
    if (p.address !== null) {
      targets.push(p.address);
      if (!addressSeen.has(p.address)) {
        addressSeen.add(p.address);
        addressed.push(p);
      }
    }
  }
  const tombIds = new Map<string, Set<string>>(); // event id -> pubkeys whose deletion names it
  const tombAddresses = new Map<string, number>(); // address -> deleted up to created_at
  if (targets.length > 0) {
    const { rows } = await sql<{ target: string; pubkey: string; created_at: number }>`
      SELECT target, encode(pubkey, 'hex') AS pubkey, created_at FROM deletions
      WHERE target = ANY(${targets}::text[])`.execute(db);
    for (const r of rows) {
      if (r.target.includes(':')) {
        // Address tombstones are only written by the address's own author.
        tombAddresses.set(r.target, Math.max(r.created_at, tombAddresses.get(r.target) ?? -Infinity));
      } else {
        let s = tombIds.get(r.target);
        if (!s) tombIds.set(r.target, (s = new Set()));
        s.add(r.pubkey);
      }
    }
  }

  const current = new Map<string, Version | null>(); // address -> current version
  const addressOfId = new Map<string, string>(); // id of a current version -> its address
  const dropExisting: Buffer[] = []; // stored rows to delete before inserting
  if (addressed.length > 0) {
    const { rows } = await sql<{
      id: string;
      pubkey: string;
      kind: number;
      d_tag: string;
      created_at: number;
      expires_at: number | null;
    }>`
      SELECT encode(e.id, 'hex') AS id, encode(e.pubkey, 'hex') AS pubkey, e.kind, e.d_tag, e.created_at, e.expires_at
      FROM events e
      WHERE e.d_tag IS NOT NULL AND (e.pubkey, e.kind, e.d_tag) IN (
        SELECT * FROM unnest(${addressed.map((p) => p.pubkey)}::bytea[], ${addressed.map((p) => p.ev.kind)}::int4[],
                             ${addressed.map((p) => p.dTag as string)}::text[]))`.execute(db);
    for (const r of rows) {
      if (r.expires_at !== null && r.expires_at <= now) {
        dropExisting.push(hexBuf(r.id)); // expired: as good as gone, any version may take its place
        continue;
      }
      const address = `${r.kind}:${r.pubkey}:${r.d_tag}`;
      current.set(address, { idHex: r.id, id: hexBuf(r.id), pubkeyHex: r.pubkey, createdAt: r.created_at, fromDb: true });
      addressOfId.set(r.id, address);
    }
  }

  // 3. Decide, in input order.
  const outcomes: StoreOutcome[] = new Array(P.length);
  const seen = new Set<string>();
  const toInsert = new Set<Prepared>();
  const deleteById: { id: Buffer; pubkey: Buffer }[] = [];
  const deleteByAddress: { pubkey: Buffer; kind: number; d: string; until: number }[] = [];
  const tombstones = new Map<string, Tombstone>();

  const removeVersion = (address: string, v: Version) => {
    if (v.fromDb) dropExisting.push(v.id);
    else toInsert.delete(v.p as Prepared);
    addressOfId.delete(v.idHex);
    current.set(address, null);
  };
  const addTombstone = (target: string, p: Prepared) => {
    const key = `${target}|${p.ev.pubkey}`;
    const old = tombstones.get(key);
    if (!old || p.ev.created_at > old.createdAt) {
      tombstones.set(key, { target, pubkey: p.pubkey, createdAt: p.ev.created_at, deletionId: p.id });
    }
  };
  const applyDeletion = (p: Prepared) => {
    const { ids, addresses } = deletionTargets(p.ev);
    for (const id of ids) {
      addTombstone(id, p);
      let s = tombIds.get(id);
      if (!s) tombIds.set(id, (s = new Set()));
      s.add(p.ev.pubkey);
      deleteById.push({ id: hexBuf(id), pubkey: p.pubkey });
      // A current version of an address in this batch: take it out now, so that a later version
      // in the batch can take its place. (Regular events are removed by the DELETE after the insert.)
      const address = addressOfId.get(id);
      const v = address === undefined ? undefined : current.get(address);
      if (address !== undefined && v && v.pubkeyHex === p.ev.pubkey) removeVersion(address, v);
    }
    for (const a of addresses) {
      addTombstone(a.target, p);
      tombAddresses.set(a.target, Math.max(p.ev.created_at, tombAddresses.get(a.target) ?? -Infinity));
      deleteByAddress.push({ pubkey: p.pubkey, kind: a.kind, d: a.d, until: p.ev.created_at });
      const v = current.get(a.target);
      if (v && v.createdAt <= p.ev.created_at) removeVersion(a.target, v);
    }
  };

  for (let i = 0; i < P.length; i++) {
    const p = P[i];
    const ev = p.ev;
    if (seen.has(ev.id)) {
      outcomes[i] = DUPLICATE;
      continue;
    }
    seen.add(ev.id);
    // A deletion request of a deletion request has no effect.
    if (ev.kind !== KIND_DELETION && tombIds.get(ev.id)?.has(ev.pubkey)) {
      outcomes[i] = DELETED;
      continue;
    }
    if (p.address !== null) {
      const until = tombAddresses.get(p.address);
      if (until !== undefined && ev.created_at <= until) {
        outcomes[i] = DELETED;
        continue;
      }
      const cur = current.get(p.address);
      if (cur) {
        if (cur.idHex === ev.id) {
          outcomes[i] = DUPLICATE;
          continue;
        }
        if (!newer({ createdAt: ev.created_at, idHex: ev.id }, cur)) {
          outcomes[i] = STALE;
          continue;
        }
        removeVersion(p.address, cur);
      }
      current.set(p.address, { idHex: ev.id, id: p.id, pubkeyHex: ev.pubkey, createdAt: ev.created_at, fromDb: false, p });
      addressOfId.set(ev.id, p.address);
    }
    toInsert.add(p);
    outcomes[i] = STORED;
    if (ev.kind === KIND_DELETION) applyDeletion(p);
  }

  // 4. Writes.
  if (dropExisting.length > 0) {
    await sql`WITH t AS (DELETE FROM event_tags WHERE event_id = ANY(${dropExisting}::bytea[]))
      DELETE FROM events WHERE id = ANY(${dropExisting}::bytea[])`.execute(db);
  }

  if (toInsert.size > 0) {
    // Key order, so that concurrent batches with common events wait on each other, not deadlock.
    const rows = [...toInsert].sort((a, b) => (a.ev.id < b.ev.id ? -1 : a.ev.id > b.ev.id ? 1 : 0));
    const tagIds: Buffer[] = [];
    const tagNames: string[] = [];
    const tagValues: string[] = [];
    for (const p of rows) {
      for (let j = 0; j < p.tagNames.length; j++) {
        tagIds.push(p.id);
        tagNames.push(p.tagNames[j]);
        tagValues.push(p.tagValues[j]);
      }
    }
    const { rows: inserted } = await sql<{ id: string }>`
      WITH ins AS (
        INSERT INTO events (id, pubkey, created_at, kind, d_tag, expires_at, raw)
        SELECT * FROM unnest(
          ${rows.map((p) => p.id)}::bytea[], ${rows.map((p) => p.pubkey)}::bytea[],
          ${rows.map((p) => p.ev.created_at)}::int8[], ${rows.map((p) => p.ev.kind)}::int4[],
          ${rows.map((p) => p.dTag)}::text[], ${rows.map((p) => p.expiresAt)}::int8[],
          ${rows.map((p) => p.raw)}::text[])
        ON CONFLICT DO NOTHING
        RETURNING id, created_at, kind
      ), tags AS (
        INSERT INTO event_tags (event_id, name, value, created_at, kind)
        SELECT t.event_id, t.name, t.value, ins.created_at, ins.kind
        FROM unnest(${tagIds}::bytea[], ${tagNames}::text[], ${tagValues}::text[]) AS t(event_id, name, value)
        JOIN ins ON ins.id = t.event_id
      )
      SELECT encode(id, 'hex') AS id FROM ins`.execute(db);
    if (inserted.length !== rows.length) {
      const done = new Set(inserted.map((r) => r.id));
      for (let i = 0; i < P.length; i++) {
        const p = P[i];
        if (outcomes[i] === STORED && toInsert.has(p) && !done.has(p.ev.id)) outcomes[i] = DUPLICATE;
      }
    }
  }

  if (deleteById.length > 0) {
    await sql`WITH d AS (
        DELETE FROM events e
        USING unnest(${deleteById.map((x) => x.id)}::bytea[], ${deleteById.map((x) => x.pubkey)}::bytea[]) AS t(id, pubkey)
        WHERE e.id = t.id AND e.pubkey = t.pubkey AND e.kind <> ${KIND_DELETION}
        RETURNING e.id
      )
      DELETE FROM event_tags WHERE event_id IN (SELECT id FROM d)`.execute(db);
  }

  if (deleteByAddress.length > 0) {
    await sql`WITH d AS (
        DELETE FROM events e
        USING unnest(${deleteByAddress.map((x) => x.pubkey)}::bytea[], ${deleteByAddress.map((x) => x.kind)}::int4[],
                     ${deleteByAddress.map((x) => x.d)}::text[], ${deleteByAddress.map((x) => x.until)}::int8[])
              AS t(pubkey, kind, d_tag, until)
        WHERE e.d_tag IS NOT NULL AND e.pubkey = t.pubkey AND e.kind = t.kind AND e.d_tag = t.d_tag
          AND e.created_at <= t.until
        RETURNING e.id
      )
      DELETE FROM event_tags WHERE event_id IN (SELECT id FROM d)`.execute(db);
  }

  if (tombstones.size > 0) {
    const ts = [...tombstones.values()].sort((a, b) =>
      a.target < b.target ? -1 : a.target > b.target ? 1 : Buffer.compare(a.pubkey, b.pubkey),
    );
    await sql`
      INSERT INTO deletions (target, pubkey, created_at, deletion_id)
      SELECT * FROM unnest(${ts.map((t) => t.target)}::text[], ${ts.map((t) => t.pubkey)}::bytea[],
                           ${ts.map((t) => t.createdAt)}::int8[], ${ts.map((t) => t.deletionId)}::bytea[])
      ON CONFLICT (target, pubkey) DO UPDATE
        SET created_at = excluded.created_at, deletion_id = excluded.deletion_id
        WHERE excluded.created_at > deletions.created_at`.execute(db);
  }

  return outcomes;
}

// ---------------------------------------------------------------------------------------------
// Reads

/**
 * Events of `kinds` (every kind when absent) only when authored by, or `p`-tagged to, one of
 * `readers`; none of them when `readers` is empty. The relay's read policies add these to a
 * client's filter (an internal field, never parsed from a client) for rules a NIP-01 filter
 * cannot say, such as "kind 4 only to its author and recipients".
 */
export type KindRestriction = { kinds?: number[]; readers: string[] };

/**
 * A NIP-01 filter, possibly narrowed by read policies. `notAuthors` (internal, like `restrict`)
 * leaves out the events of these pubkeys (NIP-86 banned pubkeys).
 */
export type QueryFilter = Filter & { restrict?: KindRestriction[]; notAuthors?: string[] };

function restrictionCondition(r: KindRestriction): RawBuilder<unknown> | null {
  const other = r.kinds === undefined ? null : sql`e.kind <> ALL(${r.kinds}::int4[])`;
  if (r.readers.length === 0) return other;
  const readers = sql`e.pubkey = ANY(${r.readers.map(hexBuf)}::bytea[])
    OR EXISTS (SELECT 1 FROM event_tags y WHERE y.event_id = e.id AND y.name = 'p' AND y.value = ANY(${r.readers}::text[]))`;
  return other === null ? sql`(${readers})` : sql`(${other} OR ${readers})`;
}

/**
 * SQL conditions (on `events e`) for one filter, or null when the filter cannot match anything
 * (an empty list, or a multi-letter tag filter, which is not indexed).
 *
 * With `joinTag`, the first tag condition with a single value becomes a join on `event_tags t`
 * (the caller adds `event_tags t` to FROM and orders by t.created_at, t.event_id) instead of a
 * semi-join: the tag rows repeat the event's created_at, so Postgres can walk the
 * (name, value, created_at DESC) index newest first and stop at the LIMIT, rather than
 * collecting every event with a popular tag (`#p` of a well-known key) and sorting them all.
 * (Equating t.created_at = e.created_at instead would make the planner misjudge the join size.)
 * There is one row per (event, name, value), so the join cannot produce duplicates.
 */
function filterConditions(f: QueryFilter, now: number, joinTag: boolean): { conds: RawBuilder<unknown>[]; joined: boolean } | null {
  const conds: RawBuilder<unknown>[] = [sql`(e.expires_at IS NULL OR e.expires_at > ${now})`];
  for (const r of f.restrict ?? []) {
    const c = restrictionCondition(r);
    if (c === null) return null;
    conds.push(c);
  }
  if (f.ids !== undefined) {
    if (f.ids.length === 0) return null;
    conds.push(sql`e.id = ANY(${f.ids.map(hexBuf)}::bytea[])`);
  }
  if (f.authors !== undefined) {
    if (f.authors.length === 0) return null;
    conds.push(sql`e.pubkey = ANY(${f.authors.map(hexBuf)}::bytea[])`);
  }
  if (f.notAuthors !== undefined && f.notAuthors.length > 0) {
    conds.push(sql`e.pubkey <> ALL(${f.notAuthors.map(hexBuf)}::bytea[])`);
  }
  if (f.kinds !== undefined) {
    if (f.kinds.length === 0) return null;
    conds.push(sql`e.kind = ANY(${f.kinds}::int4[])`);
  }
  if (f.since !== undefined) conds.push(sql`e.created_at >= ${f.since}`);
  if (f.until !== undefined) conds.push(sql`e.created_at <= ${f.until}`);
  let joined = false;
  for (const key of Object.keys(f)) {
    if (key.charCodeAt(0) !== 35 /* '#' */) continue;
    const values = f[key as `#${string}`];
    if (values === undefined) continue;
    if (key.length !== 2 || values.length === 0) return null;
    const name = key[1];
    if (joinTag && !joined && values.length === 1) {
      joined = true;
      conds.push(sql`t.event_id = e.id AND t.name = ${name} AND t.value = ${values[0]}`);
      if (f.kinds !== undefined) conds.push(sql`t.kind = ANY(${f.kinds}::int4[])`);
      if (f.since !== undefined) conds.push(sql`t.created_at >= ${f.since}`);
      if (f.until !== undefined) conds.push(sql`t.created_at <= ${f.until}`);
      continue;
    }
    // The tag rows carry kind and created_at, so the tag index narrows by them before the join.
    const extra: RawBuilder<unknown>[] = [];
    if (f.kinds !== undefined) extra.push(sql` AND x.kind = ANY(${f.kinds}::int4[])`);
    if (f.since !== undefined) extra.push(sql` AND x.created_at >= ${f.since}`);
    if (f.until !== undefined) extra.push(sql` AND x.created_at <= ${f.until}`);
    conds.push(
      sql`e.id IN (SELECT x.event_id FROM event_tags x WHERE x.name = ${name} AND x.value = ANY(${values}::text[])${sql.join(extra, sql``)})`,
    );
  }
  return { conds, joined };
}

/**
 * The raw JSON of the events matching any of the filters, each filter limited by its own
 * `limit`, without duplicates, newest first (ties: lowest id first). Expired events are hidden.
 */
export async function queryEvents(db: Kysely<Schema>, filters: QueryFilter[], now: number): Promise<string[]> {
  const parts: RawBuilder<unknown>[] = [];
  for (const f of filters) {
    if (f.limit !== undefined && f.limit <= 0) continue;
    const c = filterConditions(f, now, true);
    if (c === null) continue;
    const limit = f.limit !== undefined ? sql` LIMIT ${Math.floor(f.limit)}` : sql``;
    const where = sql.join(c.conds, sql` AND `);
    parts.push(
      c.joined
        ? sql`SELECT t.event_id AS id, t.created_at, e.raw FROM events e, event_tags t WHERE ${where} ORDER BY t.created_at DESC, t.event_id ASC${limit}`
        : sql`SELECT e.id, e.created_at, e.raw FROM events e WHERE ${where} ORDER BY e.created_at DESC, e.id ASC${limit}`,
    );
  }
  if (parts.length === 0) return [];
  if (parts.length === 1) {
    const { rows } = await sql<{ raw: string }>`${parts[0]}`.execute(db);
    return rows.map((r) => r.raw);
  }
  const union = sql.join(
    parts.map((p) => sql`(${p})`),
    sql` UNION ALL `,
  );
  const { rows } = await sql<{ raw: string }>`SELECT u.raw FROM (${union}) AS u ORDER BY u.created_at DESC, u.id ASC`.execute(db);
  // An event matched by several filters appears in adjacent rows (same created_at and id).
  const out: string[] = [];
  let prev: string | undefined;
  for (const r of rows) {
    if (r.raw !== prev) out.push(r.raw);
    prev = r.raw;
  }
  return out;
}

/** How many distinct unexpired events match any of the filters (limits are ignored). */
export async function countEvents(db: Kysely<Schema>, filters: QueryFilter[], now: number): Promise<number> {
  const ors: RawBuilder<unknown>[] = [];
  for (const f of filters) {
    const c = filterConditions(f, now, false);
    if (c !== null) ors.push(sql`(${sql.join(c.conds, sql` AND `)})`);
  }
  if (ors.length === 0) return 0;
  const { rows } = await sql<{ n: number }>`SELECT count(*) AS n FROM events e WHERE ${sql.join(ors, sql` OR `)}`.execute(db);
  return Number(rows[0]?.n ?? 0);
}

/** Deletes the events whose expiration is due (expires_at <= now) and their tags; returns how many. */
export async function purgeExpired(db: Kysely<Schema>, now: number): Promise<number> {
  const { rows } = await sql<{ n: number }>`
    WITH d AS (DELETE FROM events WHERE expires_at <= ${now} RETURNING id),
         t AS (DELETE FROM event_tags WHERE event_id IN (SELECT id FROM d))
    SELECT count(*) AS n FROM d`.execute(db);
  return Number(rows[0]?.n ?? 0);
}

/**
 * The raw JSON of a stored event, or undefined. Expired events are returned unless `now` is given.
 */
export async function getEventById(db: Kysely<Schema>, id: string, now?: number): Promise<string | undefined> {
  const expiry = now === undefined ? sql`` : sql` AND (expires_at IS NULL OR expires_at > ${now})`;
  const { rows } = await sql<{ raw: string }>`SELECT raw FROM events WHERE id = ${hexBuf(id)}${expiry}`.execute(db);
  return rows[0]?.raw;
}
