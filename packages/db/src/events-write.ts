/**
 * Writes to the event store. Every function takes a `Kysely<Schema>` (a pool, a single connection
 * or a transaction) and issues plain Postgres SQL, so it behaves the same on PGlite and Postgres.
 *
 * Writes are batched ("group commit"): storeEvents() handles a whole batch in one transaction
 * with a fixed number of multi-row statements (unnest arrays), however large the batch, in four
 * phases (one function each below):
 *
 *   1. lockAuthors: advisory locks per pubkey bucket (shared for regular events, exclusive for
 *      pubkeys that write replaceable/addressable events or deletion requests in this batch);
 *   2. readTombstones, readCurrentVersions: the tombstones and the current versions of the
 *      batch's addresses;
 *   3. decide: every outcome in memory, in input order (so a batch behaves exactly as if its
 *      events had been stored one after the other);
 *   4. write: delete replaced versions, insert the survivors and their tags (ON CONFLICT DO
 *      NOTHING RETURNING tells the duplicates), apply deletion requests, write tombstones.
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
import { PREPARED } from './connect.ts';
import { hexBuf } from './hex.ts';
import { atomically } from './transaction.ts';
import type { NostrEvent, StoreItem, StoreOutcome } from './types.ts';

export const MESSAGE_DUPLICATE = 'already have this event';
export const MESSAGE_DELETED = 'this event was deleted';
export const MESSAGE_STALE = 'have a newer version';

// ---------------------------------------------------------------------------------------------
// The rows an event becomes

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

/** Event a is the newer version: later created_at, ties broken by the lowest id. */
function newer(a: { createdAt: number; idHex: string }, b: { createdAt: number; idHex: string }): boolean {
  return a.createdAt > b.createdAt || (a.createdAt === b.createdAt && a.idHex < b.idHex);
}

/** An event as the rows it is stored as (`events` and `event_tags`). */
export type EventRow = {
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

/** The rows of one event; the indexed tags are the single-letter ones, first value, once per name/value. */
export function eventRow(item: StoreItem): EventRow {
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
// storeEvents

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
  const rows = items.map(eventRow);
  return atomically(db, (trx) => storeInTransaction(trx, rows, now));
}

async function storeInTransaction(db: Kysely<Schema>, P: EventRow[], now: number): Promise<StoreOutcome[]> {
  await lockAuthors(db, P);
  const tombs = await readTombstones(db, P);
  const versions = await readCurrentVersions(db, P, now);
  const plan = decide(P, tombs, versions);
  await dropRows(db, plan.dropExisting);
  const inserted = await insertEvents(db, plan.toInsert);
  if (inserted.size !== plan.toInsert.size) {
    // Inserted meanwhile by another transaction (ON CONFLICT DO NOTHING): a duplicate after all.
    for (let i = 0; i < P.length; i++) {
      const p = P[i];
      if (plan.outcomes[i] === STORED && plan.toInsert.has(p) && !inserted.has(p.ev.id)) plan.outcomes[i] = DUPLICATE;
    }
  }
  await deleteRequested(db, plan);
  await writeTombstones(db, plan.tombstones);
  return plan.outcomes;
}

// 1. Locks ------------------------------------------------------------------------------------

/** One advisory lock per author bucket, exclusive for authors of replaceables and deletions. */
async function lockAuthors(db: Kysely<Schema>, P: EventRow[]): Promise<void> {
  const exclusive = new Map<number, boolean>();
  for (const p of P) {
    const bucket = p.pubkey[0] ?? 0;
    const x = p.cls !== 'regular' || p.ev.kind === KIND_DELETION;
    exclusive.set(bucket, x || (exclusive.get(bucket) ?? false));
  }
  const buckets = [...exclusive.keys()].sort((a, b) => a - b);
  const modes = buckets.map((b) => exclusive.get(b) === true);
  // A subquery with ORDER BY is not flattened, so the lock calls above it run in bucket order.
  await sql`${sql.raw(PREPARED)}SELECT CASE WHEN l.x THEN pg_advisory_xact_lock(${WRITE_LOCK_NAMESPACE}::int4, l.b)
                        ELSE pg_advisory_xact_lock_shared(${WRITE_LOCK_NAMESPACE}::int4, l.b) END AS locked
    FROM (SELECT b, x FROM unnest(${buckets}::int4[], ${modes}::bool[]) AS t(b, x) ORDER BY b) AS l`.execute(db);
}

// 2. Reads, under the locks (each statement sees everything committed before it started) ------

type Tombstones = {
  /** event id -> pubkeys whose deletion names it */
  ids: Map<string, Set<string>>;
  /** address -> deleted up to created_at */
  addresses: Map<string, number>;
};

function addIdTombstone(tombs: Tombstones, id: string, pubkey: string): void {
  let s = tombs.ids.get(id);
  if (!s) tombs.ids.set(id, (s = new Set()));
  s.add(pubkey);
}

function addAddressTombstone(tombs: Tombstones, address: string, createdAt: number): void {
  tombs.addresses.set(address, Math.max(createdAt, tombs.addresses.get(address) ?? -Infinity));
}

/** The tombstones naming the batch's ids and addresses. */
async function readTombstones(db: Kysely<Schema>, P: EventRow[]): Promise<Tombstones> {
  const tombs: Tombstones = { ids: new Map(), addresses: new Map() };
  const targets: string[] = [];
  for (const p of P) {
    if (p.ev.kind !== KIND_DELETION) targets.push(p.ev.id);
    if (p.address !== null) targets.push(p.address);
  }
  if (targets.length === 0) return tombs;
  const { rows } = await sql<{ target: string; pubkey: string; created_at: number }>`${sql.raw(PREPARED)}
    SELECT target, encode(pubkey, 'hex') AS pubkey, created_at FROM deletions
    WHERE target = ANY(${targets}::text[])`.execute(db);
  for (const r of rows) {
    // Address tombstones are only written by the address's own author.
    if (r.target.includes(':')) addAddressTombstone(tombs, r.target, r.created_at);
    else addIdTombstone(tombs, r.target, r.pubkey);
  }
  return tombs;
}

type Version = { idHex: string; id: Buffer; pubkeyHex: string; createdAt: number; fromDb: boolean; p?: EventRow };

type Versions = {
  /** address -> current version (null: none any more) */
  current: Map<string, Version | null>;
  /** id of a current version -> its address */
  addressOfId: Map<string, string>;
  /** stored rows to delete before inserting */
  dropExisting: Buffer[];
};

/** The stored versions of the batch's addresses; an expired one is to be dropped, as good as gone. */
async function readCurrentVersions(db: Kysely<Schema>, P: EventRow[], now: number): Promise<Versions> {
  const versions: Versions = { current: new Map(), addressOfId: new Map(), dropExisting: [] };
  const addressed: EventRow[] = [];
  const addressSeen = new Set<string>();
  for (const p of P) {
    if (p.address !== null && !addressSeen.has(p.address)) {
      addressSeen.add(p.address);
      addressed.push(p);
    }
  }
  if (addressed.length === 0) return versions;
  const { rows } = await sql<{
    id: string;
    pubkey: string;
    kind: number;
    d_tag: string;
    created_at: number;
    expires_at: number | null;
  }>`${sql.raw(PREPARED)}
    SELECT encode(e.id, 'hex') AS id, encode(e.pubkey, 'hex') AS pubkey, e.kind, e.d_tag, e.created_at, e.expires_at
    FROM events e
    WHERE e.d_tag IS NOT NULL AND (e.pubkey, e.kind, e.d_tag) IN (
      SELECT * FROM unnest(${addressed.map((p) => p.pubkey)}::bytea[], ${addressed.map((p) => p.ev.kind)}::int4[],
                           ${addressed.map((p) => p.dTag as string)}::text[]))`.execute(db);
  for (const r of rows) {
    if (r.expires_at !== null && r.expires_at <= now) {
      versions.dropExisting.push(hexBuf(r.id)); // expired: any version may take its place
      continue;
    }
    const address = `${r.kind}:${r.pubkey}:${r.d_tag}`;
    versions.current.set(address, { idHex: r.id, id: hexBuf(r.id), pubkeyHex: r.pubkey, createdAt: r.created_at, fromDb: true });
    versions.addressOfId.set(r.id, address);
  }
  return versions;
}

// 3. Decide, in input order -------------------------------------------------------------------

type Tombstone = { target: string; pubkey: Buffer; createdAt: number; deletionId: Buffer };

type Plan = {
  outcomes: StoreOutcome[];
  toInsert: Set<EventRow>;
  dropExisting: Buffer[];
  deleteById: { id: Buffer; pubkey: Buffer }[];
  deleteByAddress: { pubkey: Buffer; kind: number; d: string; until: number }[];
  /** `${target}|${pubkey}` -> the newest request's tombstone */
  tombstones: Map<string, Tombstone>;
};

/** Every outcome, as if the events had been stored one after the other; `tombs` and `versions` are updated. */
function decide(P: EventRow[], tombs: Tombstones, versions: Versions): Plan {
  const { current, addressOfId } = versions;
  const plan: Plan = {
    outcomes: new Array(P.length),
    toInsert: new Set(),
    dropExisting: versions.dropExisting,
    deleteById: [],
    deleteByAddress: [],
    tombstones: new Map(),
  };

  const removeVersion = (address: string, v: Version) => {
    if (v.fromDb) plan.dropExisting.push(v.id);
    else plan.toInsert.delete(v.p as EventRow);
    addressOfId.delete(v.idHex);
    current.set(address, null);
  };
  const addTombstone = (target: string, p: EventRow) => {
    const key = `${target}|${p.ev.pubkey}`;
    const old = plan.tombstones.get(key);
    if (!old || p.ev.created_at > old.createdAt) {
      plan.tombstones.set(key, { target, pubkey: p.pubkey, createdAt: p.ev.created_at, deletionId: p.id });
    }
  };
  const applyDeletion = (p: EventRow) => {
    const { ids, addresses } = deletionTargets(p.ev);
    for (const id of ids) {
      addTombstone(id, p);
      addIdTombstone(tombs, id, p.ev.pubkey);
      plan.deleteById.push({ id: hexBuf(id), pubkey: p.pubkey });
      // A current version of an address in this batch: take it out now, so that a later version
      // in the batch can take its place. (Regular events are removed by the DELETE after the insert.)
      const address = addressOfId.get(id);
      const v = address === undefined ? undefined : current.get(address);
      if (address !== undefined && v && v.pubkeyHex === p.ev.pubkey) removeVersion(address, v);
    }
    for (const a of addresses) {
      addTombstone(a.target, p);
      addAddressTombstone(tombs, a.target, p.ev.created_at);
      plan.deleteByAddress.push({ pubkey: p.pubkey, kind: a.kind, d: a.d, until: p.ev.created_at });
      const v = current.get(a.target);
      if (v && v.createdAt <= p.ev.created_at) removeVersion(a.target, v);
    }
  };

  const seen = new Set<string>();
  for (let i = 0; i < P.length; i++) {
    const p = P[i];
    const ev = p.ev;
    if (seen.has(ev.id)) {
      plan.outcomes[i] = DUPLICATE;
      continue;
    }
    seen.add(ev.id);
    // A deletion request of a deletion request has no effect.
    if (ev.kind !== KIND_DELETION && tombs.ids.get(ev.id)?.has(ev.pubkey)) {
      plan.outcomes[i] = DELETED;
      continue;
    }
    if (p.address !== null) {
      const until = tombs.addresses.get(p.address);
      if (until !== undefined && ev.created_at <= until) {
        plan.outcomes[i] = DELETED;
        continue;
      }
      const cur = current.get(p.address);
      if (cur) {
        if (cur.idHex === ev.id) {
          plan.outcomes[i] = DUPLICATE;
          continue;
        }
        if (!newer({ createdAt: ev.created_at, idHex: ev.id }, cur)) {
          plan.outcomes[i] = STALE;
          continue;
        }
        removeVersion(p.address, cur);
      }
      current.set(p.address, { idHex: ev.id, id: p.id, pubkeyHex: ev.pubkey, createdAt: ev.created_at, fromDb: false, p });
      addressOfId.set(ev.id, p.address);
    }
    plan.toInsert.add(p);
    plan.outcomes[i] = STORED;
    if (ev.kind === KIND_DELETION) applyDeletion(p);
  }
  return plan;
}

// 4. Writes -----------------------------------------------------------------------------------

/** Deletes stored rows (replaced or expired versions) and their tags. */
async function dropRows(db: Kysely<Schema>, ids: Buffer[]): Promise<void> {
  if (ids.length === 0) return;
  await sql`WITH t AS (DELETE FROM event_tags WHERE event_id = ANY(${ids}::bytea[]))
    DELETE FROM events WHERE id = ANY(${ids}::bytea[])`.execute(db);
}

/**
 * The JSON texts of the rows as one parameter. As a text[] every text would be escaped by the
 * driver (a regular expression over each quote and backslash) and unescaped again by Postgres,
 * character by character; the JSON the relay writes has no line break (JSON.stringify puts none
 * between tokens, and one inside a string is escaped), so the texts go out joined by one and
 * Postgres cuts them apart with string_to_array. A text that has one goes as an array.
 */
function rawColumn(rows: EventRow[]): RawBuilder<unknown> {
  let joined = '';
  for (let i = 0; i < rows.length; i++) {
    const raw = rows[i].raw;
    if (raw.includes('\n')) return sql`${rows.map((p) => p.raw)}::text[]`;
    joined = i === 0 ? raw : joined + '\n' + raw;
  }
  return sql`string_to_array(${joined}::text, E'\\n')`;
}

/** Inserts the events and their tags; returns the ids actually inserted (the others were already there). */
async function insertEvents(db: Kysely<Schema>, toInsert: Set<EventRow>): Promise<Set<string>> {
  if (toInsert.size === 0) return new Set();
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
  const { rows: inserted } = await sql<{ id: string }>`${sql.raw(PREPARED)}
    WITH ins AS (
      INSERT INTO events (id, pubkey, created_at, kind, d_tag, expires_at, raw)
      SELECT * FROM unnest(
        ${rows.map((p) => p.id)}::bytea[], ${rows.map((p) => p.pubkey)}::bytea[],
        ${rows.map((p) => p.ev.created_at)}::int8[], ${rows.map((p) => p.ev.kind)}::int4[],
        ${rows.map((p) => p.dTag)}::text[], ${rows.map((p) => p.expiresAt)}::int8[],
        ${rawColumn(rows)})
      ON CONFLICT DO NOTHING
      RETURNING id, created_at, kind
    ), tags AS (
      INSERT INTO event_tags (event_id, name, value, created_at, kind)
      SELECT t.event_id, t.name, t.value, ins.created_at, ins.kind
      FROM unnest(${tagIds}::bytea[], ${tagNames}::text[], ${tagValues}::text[]) AS t(event_id, name, value)
      JOIN ins ON ins.id = t.event_id
    )
    SELECT encode(id, 'hex') AS id FROM ins`.execute(db);
  return new Set(inserted.map((r) => r.id));
}

/** Applies the deletion requests: the named events of their authors, and address versions up to their created_at. */
async function deleteRequested(db: Kysely<Schema>, plan: Plan): Promise<void> {
  const { deleteById, deleteByAddress } = plan;
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
}

/** Writes the tombstones (in key order), keeping the newest request per (target, pubkey). */
async function writeTombstones(db: Kysely<Schema>, tombstones: Map<string, Tombstone>): Promise<void> {
  if (tombstones.size === 0) return;
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

// ---------------------------------------------------------------------------------------------
// Expiry

/** Deletes the events whose expiration is due (expires_at <= now) and their tags; returns how many. */
export async function purgeExpired(db: Kysely<Schema>, now: number): Promise<number> {
  const { rows } = await sql<{ n: number }>`
    WITH d AS (DELETE FROM events WHERE expires_at <= ${now} RETURNING id),
         t AS (DELETE FROM event_tags WHERE event_id IN (SELECT id FROM d))
    SELECT count(*) AS n FROM d`.execute(db);
  return Number(rows[0]?.n ?? 0);
}
