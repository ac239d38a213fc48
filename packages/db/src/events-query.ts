/**
 * Reads of the event store: NIP-01 filters to SQL. Like the writes (events-write.ts), plain
 * Postgres SQL that behaves the same on PGlite and Postgres.
 */
import { sql, type Kysely, type RawBuilder } from 'kysely';
import { PREPARED } from './connect.ts';
import { hexBuf } from './hex.ts';
import type { Schema } from './schema.ts';
import type { Filter } from './types.ts';

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

/** The tag filters of a filter: `#x` keys with their values. */
function tagFilters(f: QueryFilter): [name: string, values: string[]][] {
  const out: [string, string[]][] = [];
  for (const key of Object.keys(f)) {
    if (key.charCodeAt(0) !== 35 /* '#' */) continue;
    const values = f[key as `#${string}`];
    if (values !== undefined) out.push([key.slice(1), values]);
  }
  return out;
}

const TAG_NAME = /^[A-Za-z]$/;

/** What the driving index scan of a query already checks, so the conditions leave it out. */
type Driven = { authors?: boolean; kinds?: boolean; tag?: string };

/**
 * SQL conditions (on `events e`) for one filter, or null when the filter cannot match anything
 * (an empty list, or a multi-letter tag filter, which is not indexed). Tags are semi-joins on
 * `event_tags`, whose rows carry kind and created_at so the tag index narrows by them first.
 */
function filterConditions(f: QueryFilter, now: number, driven: Driven = {}): RawBuilder<unknown>[] | null {
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
    if (!driven.authors) conds.push(sql`e.pubkey = ANY(${f.authors.map(hexBuf)}::bytea[])`);
  }
  if (f.notAuthors !== undefined && f.notAuthors.length > 0) {
    conds.push(sql`e.pubkey <> ALL(${f.notAuthors.map(hexBuf)}::bytea[])`);
  }
  if (f.kinds !== undefined) {
    if (f.kinds.length === 0) return null;
    if (!driven.kinds) conds.push(sql`e.kind = ANY(${f.kinds}::int4[])`);
  }
  if (f.since !== undefined) conds.push(sql`e.created_at >= ${f.since}`);
  if (f.until !== undefined) conds.push(sql`e.created_at <= ${f.until}`);
  for (const [name, values] of tagFilters(f)) {
    // Only single-letter tags are indexed (events-write.ts): any other name matches nothing.
    if (!TAG_NAME.test(name) || values.length === 0) return null;
    if (name === driven.tag) continue;
    const extra: RawBuilder<unknown>[] = [];
    if (f.kinds !== undefined) extra.push(sql` AND x.kind = ANY(${f.kinds}::int4[])`);
    if (f.since !== undefined) extra.push(sql` AND x.created_at >= ${f.since}`);
    if (f.until !== undefined) extra.push(sql` AND x.created_at <= ${f.until}`);
    conds.push(
      sql`e.id IN (SELECT x.event_id FROM event_tags x WHERE x.name = ${name} AND x.value = ANY(${values}::text[])${sql.join(extra, sql``)})`,
    );
  }
  return conds;
}

/** The smallest of 1, 2, 5, 10, 20, 50, ... that is at least `limit` (the usual limits are steps themselves). */
export function limitStep(limit: number): number {
  for (let step = 1; ; step *= 10) {
    for (const m of [1, 2, 5]) if (m * step >= limit) return m * step;
  }
}

/** Above this many (author, kind) pairs, one index scan per author (kinds then filter) instead. */
const MAX_SCANS_PER_FILTER = 256;

/**
 * One filter as a query of (id, created_at, raw), newest first (ties: lowest id first), at most
 * `limit` rows; null when it cannot match. Every shape is an index scan (or one per value) in
 * the order `created_at DESC, id` that stops at the limit, never a sort of every match:
 *
 * - `ids`: primary-key lookups (a handful of rows, sorted);
 * - a tag (the one with the fewest values): for each value, the (name, value, created_at DESC,
 *   event_id) index joined to the event, the other conditions checked on the way;
 * - `authors` (and `kinds`): one scan of (pubkey, kind, created_at DESC, id) per author and kind
 *   (or of (pubkey, created_at DESC, id) per author);
 * - `kinds`: one scan of (kind, created_at DESC, id) per kind;
 * - otherwise (created_at DESC, id).
 *
 * With several values, each scan stops at the limit (LATERAL ... LIMIT) and the outer query
 * keeps the newest `limit` of their union: an event in the overall top `limit` is in the top
 * `limit` of every value it matches.
 */
function filterQuery(f: QueryFilter, now: number, limit: RawBuilder<unknown>): RawBuilder<unknown> | null {
  const conditions = (driven: Driven) => {
    const c = filterConditions(f, now, driven);
    return c === null ? null : sql.join(c, sql` AND `);
  };
  const order = sql`ORDER BY e.created_at DESC, e.id`;
  // Per author (and kind) or per kind, the scans read the index only (expires_at is included in
  // it, and kind where it is not a key): the newest `limit` of their rows are then fetched, one
  // heap read each, rather than one for every row each scan returns.
  const merged = (values: RawBuilder<unknown>, inner: RawBuilder<unknown>) =>
    sql`SELECT e.id, e.created_at, e.raw FROM (SELECT x.id, x.created_at FROM ${values} CROSS JOIN LATERAL (${inner}) AS x
      ORDER BY x.created_at DESC, x.id${limit}) AS top JOIN events e ON e.id = top.id ${order}`;

  if (f.ids === undefined) {
    const tags = tagFilters(f);
    if (tags.length > 0) {
      const [name, values] = tags.reduce((a, b) => (b[1].length < a[1].length ? b : a));
      const where = conditions({ tag: name });
      if (where === null) return null;
      // The name in the text (a letter, checked above): a prepared plan is then made for that
      // tag's values (`e` ids are rare, `t` topics can be very common), not for all tags at once.
      const tagConds: RawBuilder<unknown>[] = [sql`t.name = ${sql.lit(name)}`];
      if (f.kinds !== undefined) tagConds.push(sql`t.kind = ANY(${f.kinds}::int4[])`);
      if (f.since !== undefined) tagConds.push(sql`t.created_at >= ${f.since}`);
      if (f.until !== undefined) tagConds.push(sql`t.created_at <= ${f.until}`);
      const scan = (value: RawBuilder<unknown>) => sql`SELECT e.id, e.created_at, e.raw FROM event_tags t JOIN events e ON e.id = t.event_id
        WHERE t.value = ${value} AND ${sql.join(tagConds, sql` AND `)} AND ${where} ORDER BY t.created_at DESC, t.event_id${limit}`;
      if (values.length === 1) return scan(sql`${values[0]}`);
      // An event with several of the values is found once per value: DISTINCT ON keeps one.
      return sql`SELECT DISTINCT ON (x.created_at, x.id) x.id, x.created_at, x.raw
        FROM unnest(${values}::text[]) AS v(value) CROSS JOIN LATERAL (${scan(sql`v.value`)}) AS x ORDER BY x.created_at DESC, x.id${limit}`;
    }
    if (f.authors !== undefined) {
      const perKind = f.kinds !== undefined && f.authors.length * f.kinds.length <= MAX_SCANS_PER_FILTER;
      const where = conditions({ authors: true, kinds: perKind });
      if (where === null) return null;
      const pubkeys = f.authors.map(hexBuf);
      if (perKind) {
        const kinds = f.kinds as number[];
        if (pubkeys.length === 1 && kinds.length === 1) {
          return sql`SELECT e.id, e.created_at, e.raw FROM events e WHERE e.pubkey = ${pubkeys[0]} AND e.kind = ${kinds[0]} AND ${where} ${order}${limit}`;
        }
        const pairs = sql`unnest(${pubkeys.flatMap((p) => kinds.map(() => p))}::bytea[], ${pubkeys.flatMap(() => kinds)}::int4[]) AS a(pubkey, kind)`;
        const inner = sql`SELECT e.id, e.created_at FROM events e WHERE e.pubkey = a.pubkey AND e.kind = a.kind AND ${where} ${order}${limit}`;
        return merged(pairs, inner);
      }
      if (pubkeys.length === 1)
        return sql`SELECT e.id, e.created_at, e.raw FROM events e WHERE e.pubkey = ${pubkeys[0]} AND ${where} ${order}${limit}`;
      const inner = sql`SELECT e.id, e.created_at FROM events e WHERE e.pubkey = a.pubkey AND ${where} ${order}${limit}`;
      return merged(sql`unnest(${pubkeys}::bytea[]) AS a(pubkey)`, inner);
    }
    if (f.kinds !== undefined && f.kinds.length > 1) {
      const where = conditions({ kinds: true });
      if (where === null) return null;
      const inner = sql`SELECT e.id, e.created_at FROM events e WHERE e.kind = k.kind AND ${where} ${order}${limit}`;
      return merged(sql`unnest(${f.kinds}::int4[]) AS k(kind)`, inner);
    }
  }
  const where = conditions({});
  return where === null ? null : sql`SELECT e.id, e.created_at, e.raw FROM events e WHERE ${where} ${order}${limit}`;
}

/**
 * The raw JSON of the events matching any of the filters, each filter limited by its own
 * `limit`, without duplicates, newest first (ties: lowest id first). Expired events are hidden.
 */
export async function queryEvents(db: Kysely<Schema>, filters: QueryFilter[], now: number): Promise<string[]> {
  const wanted = filters.filter((f) => f.limit === undefined || f.limit > 0);
  if (wanted.length === 1) {
    // One filter (most REQs): a prepared statement whose text has the limit rounded up to a
    // few steps, so Postgres can keep one plan per shape and step; the extra rows are cut here.
    const f = wanted[0];
    const limit = f.limit === undefined ? undefined : Math.floor(f.limit);
    const q = filterQuery(f, now, limit === undefined ? sql`` : sql` LIMIT ${sql.lit(limitStep(limit))}`);
    if (q === null) return [];
    // Only the JSON comes back (the order is the inner query's): no ids or timestamps to parse.
    const { rows } = await sql<{ raw: string }>`${sql.raw(PREPARED)}SELECT q.raw FROM (${q}) AS q ORDER BY q.created_at DESC, q.id`.execute(
      db,
    );
    return (limit === undefined || rows.length <= limit ? rows : rows.slice(0, limit)).map((r) => r.raw);
  }
  const parts: RawBuilder<unknown>[] = [];
  for (const f of wanted) {
    // A literal limit, as in the one-filter path: a generic plan (GENERIC_PLANS) must know it.
    const q = filterQuery(f, now, f.limit !== undefined ? sql` LIMIT ${sql.lit(Math.floor(f.limit))}` : sql``);
    if (q !== null) parts.push(q);
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
    const c = filterConditions(f, now);
    if (c !== null) ors.push(sql`(${sql.join(c, sql` AND `)})`);
  }
  if (ors.length === 0) return 0;
  const { rows } = await sql<{ n: number }>`SELECT count(*) AS n FROM events e WHERE ${sql.join(ors, sql` OR `)}`.execute(db);
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
