/**
 * The newest events of recently read authors and tags, in this process, so that most feed REQs
 * (filters by `authors`, with `kinds`, `since`, `until`, `limit`) and most thread, mention and
 * topic REQs (one `#e`, `#p`, `#t`, ... condition, possibly with `authors` and the rest) are
 * answered without Postgres (issue 10).
 *
 * Per author a window: that author's newest WINDOW_EVENTS stored events of every kind, in the
 * store's order (created_at DESC, then lowest id), or all of them (`complete`). Per tag (a letter
 * and a value, as the store indexes them) a window likewise: the newest stored events carrying
 * it, of any author and kind. A window is kept exact by what the store and the bus say: an event
 * stored here (the writer, before its OK) or by another replica (the events channel) goes into
 * its author's window and its tags' windows; anything that can remove stored events of an author
 * (a deletion request, a replaceable or addressable event) can remove only that author's events
 * (NIP-09, replacement), so it drops that author's window and every tag window holding one of
 * the author's events; a moderation change, a bus outage or a message the bus may have lost
 * (`onLoss`) drops them all. A dropped window is
 * loaded again from the primary on a later REQ. The answer is the store's (`queryEvents`) or
 * none: when a window cannot prove its answer exact, the REQ goes to Postgres as before.
 *
 * So every event a window holds is stored: a filter by `ids` (with the other conditions but
 * tags) whose every id some window holds is answered from them (`byId`). An id no window holds
 * is never taken for absent: the REQ goes to Postgres. (Asking Postgres for only the ids not held
 * and merging measured slower than asking it for all: its rows must then be parsed to be merged,
 * and a query costs Postgres about the same for 10 ids as for 20.)
 */
import type { QueryFilter } from '@paidrelay/db';
import { expirationOf, KIND_DELETION, kindClass, storedHead, type NostrEvent } from '@paidrelay/nostr';

/**
 * Events per author window. One more is read on a load, to tell a complete window: 99 + 1 is one
 * of the store's limit steps (events-query.ts). Enough for a kind-filtered limit of 50 beside an
 * author's reactions and reposts; a bigger window costs every load and holds fewer authors.
 */
export const WINDOW_EVENTS = 99;
/**
 * A window older than this is read again. A message the bus loses in a way it can see (a gap
 * in a sender's numbering, a stream trimmed past a reader: `Bus.onLoss`) clears every window at
 * once; this bounds the one loss it cannot see: a sender whose last messages on the events channel
 * were dropped from its outbox (Redis away from it alone for 50,000 messages) and that then
 * publishes nothing more there, or dies.
 */
export const WINDOW_MAX_AGE_MS = 300_000;
/** Beyond the JSON text: the entry, its id string and the array slot (an estimate, for the budget). */
const ENTRY_OVERHEAD_BYTES = 200;
/** Windows (authors and tags) loaded for one REQ at most (one query each); a REQ with more missing goes to Postgres. */
const MAX_LOAD_WINDOWS = 32;
/**
 * Once the budget is used up, only a REQ missing this few windows waits for a load (each load
 * then evicts someone): a feed of many authors that do not fit would otherwise load for ever.
 */
const MAX_LOAD_WINDOWS_WHEN_FULL = 2;
/**
 * Loads in flight at most; a REQ that would need one more goes to Postgres. When the authors read
 * do not fit the budget, loads would follow evictions without end: this keeps that to a trickle
 * (what each such REQ costs is then its query, as without the cache).
 */
const MAX_LOADS_IN_FLIGHT = 2;
/** Authors and tags missed once, remembered so that only one read twice is loaded (a one-off read costs no load). */
const SEEN_MAX = 50_000;
/** How often the bus's health is looked at between REQs (an outage between two REQs still clears). */
const HEALTH_CHECK_MS = 500;

type Entry = { id: string; createdAt: number; kind: number; expiresAt: number | undefined; raw: string; bytes: number; pubkey: string };

/**
 * `authors`: for a tag window, every author it has held an event of (a superset: events pushed
 * out at the end stay counted), so that its entries in `RecentCache.holders` can be taken out.
 */
type Window = { events: Entry[]; complete: boolean; bytes: number; loadedAt: number; authors?: Set<string> };

/** An event held in windows: the windows' keys (an author's, its tags'), to tell it is held in one still fresh. */
type Held = { entry: Entry; keys: string[] };

/**
 * A load in flight for one window: what was stored meanwhile, or that it is void. `removedBy`
 * (tag windows): authors whose events may have gone meanwhile; rows of theirs make the load void.
 */
type Pending = { extra: Entry[]; dropped: boolean; done: Promise<void>; removedBy?: Set<string> };

/** A tag window's key: `#`, the letter, the value (one letter, so unambiguous; pubkeys, the authors' keys, are hex). */
function tagKey(name: string, value: string): string {
  return `#${name}${value}`;
}

const isTagKey = (key: string) => key.charCodeAt(0) === 35; /* '#' */

/** A single ASCII letter, the tag names the store indexes. */
function isTagLetter(name: string): boolean {
  if (name.length !== 1) return false;
  const c = name.charCodeAt(0);
  return (c >= 97 && c <= 122) || (c >= 65 && c <= 90);
}

/** Longer tag values are not indexed by the store (events-write.ts, MAX_INDEXED_BYTES): no filter matches them. */
const MAX_INDEXED_BYTES = 1024;

/** A tag value the store indexes, so that a filter can match it (the same rule as events-write.ts's `indexable`). */
function indexedValue(value: string): boolean {
  if (value.includes('\u0000')) return false;
  return value.length <= MAX_INDEXED_BYTES / 4 || Buffer.byteLength(value, 'utf8') <= MAX_INDEXED_BYTES;
}

/**
 * Longer filter values go to Postgres: such tags (long URLs, identifiers) are rarely read twice,
 * and each one read is remembered (SEEN_MAX of them) as a key this long.
 */
const MAX_CACHED_VALUE_LENGTH = 256;

/**
 * The tag windows an event belongs in: its tags as the store indexes them (eventRow in
 * events-write.ts): a single-letter name, the first value, an indexable value, once each.
 */
export function tagKeysOf(ev: NostrEvent): string[] {
  const keys = new Set<string>();
  for (const t of ev.tags) {
    const name = t[0];
    const value = t[1];
    if (typeof name !== 'string' || typeof value !== 'string' || !isTagLetter(name) || !indexedValue(value)) continue;
    keys.add(tagKey(name, value));
  }
  return [...keys];
}

export type CacheOutcome = 'hit' | 'miss' | 'load' | 'eviction';

/** A tag as a window holds it: its letter and one value. */
export type TagValue = { name: string; value: string };

export type RecentCacheOptions = {
  maxBytes: number;
  /** Each author's newest `limit` events (raw JSON, any order), read on the primary. */
  load: (authors: string[], limit: number) => Promise<string[]>;
  /**
   * For each tag, the newest `limit` stored events carrying it (raw JSON, any order, an event
   * carrying several of them once or more), read on the primary. Without it, tag filters go to Postgres.
   */
  loadTags?: (tags: TagValue[], limit: number) => Promise<string[]>;
  /** Whether every message on the bus reaches this process now. */
  healthy: () => boolean;
  count?: (outcome: CacheOutcome, n?: number) => void;
  windowEvents?: number;
  maxAgeMs?: number;
  clock?: () => number;
};

/** The store's order: newest first, ties by the lowest id (hex compares as the bytes do). */
function before(a: Ordered, b: Ordered): number {
  if (a.createdAt !== b.createdAt) return b.createdAt - a.createdAt;
  return a.id < b.id ? -1 : a.id > b.id ? 1 : 0;
}

function entryOf(ev: NostrEvent, raw: string): Entry {
  return {
    id: ev.id,
    createdAt: ev.created_at,
    kind: ev.kind,
    expiresAt: expirationOf(ev),
    raw,
    bytes: raw.length + ENTRY_OVERHEAD_BYTES,
    pubkey: ev.pubkey,
  };
}

/**
 * An author window's row as an entry, its head read in place (`storedHead`) rather than the whole
 * text parsed: a load of 20 authors is 2,000 rows. Only a row that may carry an `expiration` tag
 * is parsed (JSON.stringify, which writes every stored text, never escapes those letters). The
 * id is a slice of the text (no copy) and the pubkey the window's own key string.
 */
function entryOfStored(raw: string, pubkeys: Map<string, string>): Entry {
  const head = raw.includes('"expiration"') ? undefined : storedHead(raw);
  if (head === undefined) return entryOf(JSON.parse(raw) as NostrEvent, raw);
  return {
    id: head.id,
    createdAt: head.created_at,
    kind: head.kind,
    expiresAt: undefined,
    raw,
    bytes: raw.length + ENTRY_OVERHEAD_BYTES,
    pubkey: pubkeys.get(head.pubkey) ?? head.pubkey,
  };
}

/** Events that take stored events of their author away (or replace one): the window goes. */
function removesStored(kind: number): boolean {
  return kind === KIND_DELETION || kindClass(kind) === 'replaceable' || kindClass(kind) === 'addressable';
}

const ANSWERABLE_KEYS = new Set(['authors', 'kinds', 'since', 'until', 'limit', 'restrict', 'notAuthors']);
const ANSWERABLE_BY_IDS = new Set([...ANSWERABLE_KEYS, 'ids']);

function distinct<T>(xs: readonly T[]): boolean {
  return new Set(xs).size === xs.length;
}

/**
 * What the windows can answer of a filter: by its authors' windows (`authors`, without ids, tags
 * or anything else; repeated authors or kinds are left to the store, which returns such matches
 * once per repetition), by its tag's windows (exactly one `#<letter>` condition, its values
 * indexable; the store scans that tag's index and checks the rest, repetitions included, as
 * conditions), by the events held (`ids`, without tags: the store looks the ids up and checks
 * the rest as conditions, so repetitions of any of them change nothing), or not at all.
 */
function answerable(f: QueryFilter): { authors: string[] } | { tag: string; values: string[] } | { ids: string[] } | undefined {
  if (f.ids !== undefined) return Object.keys(f).every((k) => ANSWERABLE_BY_IDS.has(k)) ? { ids: [...new Set(f.ids)] } : undefined;
  let tag: string | undefined;
  for (const key of Object.keys(f)) {
    if (ANSWERABLE_KEYS.has(key)) continue;
    if (tag !== undefined || !isTagLetter(key.slice(1)) || !key.startsWith('#')) return undefined;
    tag = key.slice(1);
  }
  if (tag !== undefined) {
    const values = f[`#${tag}`];
    if (values === undefined || !values.every((v) => indexedValue(v) && v.length <= MAX_CACHED_VALUE_LENGTH)) return undefined;
    return { tag, values: [...new Set(values)] };
  }
  if (f.authors === undefined || !distinct(f.authors) || (f.kinds !== undefined && !distinct(f.kinds))) return undefined;
  return f.authors.some(isTagKey) ? undefined : { authors: f.authors };
}

/** The store's restriction condition (events-query.ts) on a cached entry; tags are read only when they decide. */
function passes(e: Entry, f: QueryFilter): boolean {
  for (const r of f.restrict ?? []) {
    if (r.kinds !== undefined && !r.kinds.includes(e.kind)) continue;
    if (r.readers.length === 0) return false;
    if (r.readers.includes(e.pubkey)) continue;
    const tags = (JSON.parse(e.raw) as NostrEvent).tags;
    if (!tags.some((t) => t.length > 1 && t[0] === 'p' && r.readers.includes(t[1]))) return false;
  }
  return true;
}

/** The store's conditions of a filter by ids, but the ids, on a held entry. */
function matchesBesidesIds(e: Entry, f: QueryFilter, now: number): boolean {
  if (e.expiresAt !== undefined && e.expiresAt <= now) return false;
  if (f.since !== undefined && e.createdAt < f.since) return false;
  if (f.until !== undefined && e.createdAt > f.until) return false;
  if (f.kinds !== undefined && !f.kinds.includes(e.kind)) return false;
  if (f.authors !== undefined && !f.authors.includes(e.pubkey)) return false;
  if (f.notAuthors?.includes(e.pubkey)) return false;
  return f.restrict === undefined || passes(e, f);
}

/** What the windows say of one filter: its matches, or that some authors have no window, or that they cannot be sure. */
type FilterAnswer = { entries: Entry[] } | { missing: string[] } | 'inexact';

export class RecentCache {
  /** Author windows (keyed by pubkey) and tag windows (by tagKey), in least recently used order (a read moves one to the end). */
  private windows = new Map<string, Window>();
  private pending = new Map<string, Pending>();
  /** Per author, the tag windows that may hold one of its events: what its deletions and replacements drop. */
  private holders = new Map<string, Set<string>>();
  /** Every event the windows hold, by id. */
  private byId = new Map<string, Held>();
  private loads = 0;
  private seen = new Set<string>();
  private bytes = 0;
  private wasHealthy = true;
  private readonly timer: NodeJS.Timeout;
  private readonly windowEvents: number;
  private readonly maxAgeMs: number;
  private readonly clock: () => number;

  constructor(private readonly opts: RecentCacheOptions) {
    this.windowEvents = opts.windowEvents ?? WINDOW_EVENTS;
    this.maxAgeMs = opts.maxAgeMs ?? WINDOW_MAX_AGE_MS;
    this.clock = opts.clock ?? Date.now;
    this.timer = setInterval(() => this.usable(), HEALTH_CHECK_MS);
    this.timer.unref();
  }

  close(): void {
    clearInterval(this.timer);
    this.clear();
  }

  /** Windows, events and bytes held now (for tests and metrics); an event in several windows counts in each, but once in `ids`. */
  get size(): { authors: number; tags: number; events: number; ids: number; bytes: number } {
    let events = 0;
    let tags = 0;
    for (const [key, w] of this.windows) {
      events += w.events.length;
      if (isTagKey(key)) tags++;
    }
    return { authors: this.windows.size - tags, tags, events, ids: this.byId.size, bytes: this.bytes };
  }

  /**
   * The stored events matching `filters` as `queryEvents` would return them at `now`: from the
   * windows when they answer exactly, else from `fallback` (Postgres). Authors and tags read a
   * second time without a window are loaded first (one query for the authors, one for the tags),
   * then answered from the windows.
   */
  async read(filters: QueryFilter[], now: number, fallback: () => Promise<string[]>): Promise<string[]> {
    if (!this.usable()) {
      this.opts.count?.('miss');
      return fallback();
    }
    let answer = this.answer(filters, now);
    if (Array.isArray(answer)) return this.hit(answer);
    if (answer !== 'inexact') {
      const { missing } = answer;
      const again = missing.filter((k) => this.seen.has(k) || this.pending.has(k));
      for (const k of missing) this.remember(k);
      const joinOnly = missing.every((k) => this.pending.has(k));
      const room = this.bytes < this.opts.maxBytes * 0.9 ? MAX_LOAD_WINDOWS : MAX_LOAD_WINDOWS_WHEN_FULL;
      if (again.length === missing.length && missing.length <= room && (joinOnly || this.loads < MAX_LOADS_IN_FLIGHT)) {
        await this.loadWindows(missing);
        answer = this.usable() ? this.answer(filters, now) : 'inexact';
        if (Array.isArray(answer)) return this.hit(answer);
      }
    }
    this.opts.count?.('miss');
    return fallback();
  }

  /** An event stored, here or by another replica (ephemeral ones are ignored): into its author's and its tags' windows. */
  stored(ev: NostrEvent, raw: string): void {
    const cls = kindClass(ev.kind);
    if (cls === 'ephemeral') return;
    let e: Entry | undefined;
    const entry = () => (e ??= entryOf(ev, raw));
    if (removesStored(ev.kind)) {
      // Only this author's events can have gone: tag windows holding none of them stay exact,
      // and the event itself (stored) goes into them.
      this.dropAuthor(ev.pubkey);
    } else {
      const p = this.pending.get(ev.pubkey);
      p?.extra.push(entry());
      const w = this.windows.get(ev.pubkey);
      if (w) this.insert(ev.pubkey, w, entry());
    }
    for (const key of this.windows.size > 0 || this.pending.size > 0 ? tagKeysOf(ev) : []) {
      this.pending.get(key)?.extra.push(entry());
      const w = this.windows.get(key);
      if (w) this.insertTagged(key, w, entry());
    }
    if (e !== undefined) this.evict();
  }

  /**
   * Stored events of this author may have gone: its window, every tag window that may hold one
   * of its events, and its own load in flight are void; tag loads in flight are void if they bring one of its events.
   */
  dropAuthor(pubkey: string): void {
    const w = this.windows.get(pubkey);
    if (w) this.remove(pubkey, w);
    const p = this.pending.get(pubkey);
    if (p) {
      p.dropped = true;
      this.pending.delete(pubkey);
    }
    for (const key of this.holders.get(pubkey) ?? []) {
      const tw = this.windows.get(key);
      if (tw) this.remove(key, tw);
    }
    for (const [key, tp] of this.pending) if (isTagKey(key)) (tp.removedBy ??= new Set()).add(pubkey);
  }

  /** Anything may have gone (moderation, a bus outage): every window and load is void. */
  clear(): void {
    this.windows.clear();
    this.holders.clear();
    this.byId.clear();
    this.bytes = 0;
    for (const p of this.pending.values()) p.dropped = true;
    this.pending.clear();
  }

  /** The cache is used only while the bus delivers; the moment it does not, what it holds is dropped. */
  private usable(): boolean {
    const ok = this.opts.healthy();
    if (!ok && (this.wasHealthy || this.windows.size > 0 || this.pending.size > 0)) this.clear();
    this.wasHealthy = ok;
    return ok;
  }

  private hit(entries: string[]): string[] {
    this.opts.count?.('hit');
    return entries;
  }

  private remember(key: string): void {
    if (this.seen.has(key)) return;
    this.seen.add(key);
    if (this.seen.size > SEEN_MAX) this.seen.delete(this.seen.values().next().value!);
  }

  /** The answer to every filter, merged as queryEvents merges (once each, in the store's order). */
  private answer(filters: QueryFilter[], now: number): string[] | Exclude<FilterAnswer, { entries: Entry[] }> {
    const parts: Entry[][] = [];
    const missing = new Set<string>();
    let inexact = false;
    for (const f of filters) {
      const a = this.answerFilter(f, now);
      if (a === 'inexact') inexact = true;
      else if ('missing' in a) for (const m of a.missing) missing.add(m);
      else parts.push(a.entries);
    }
    // A filter the windows cannot answer sends the REQ to Postgres, whatever loads would bring.
    if (inexact) return 'inexact';
    if (missing.size > 0) return { missing: [...missing] };
    return mergeSorted(parts, Number.POSITIVE_INFINITY).map((e) => e.raw);
  }

  /**
   * One filter, from its authors' windows or its tag values' windows. The matches of each window
   * are merged; the top `limit` of them all is the store's answer when, for each window, nothing
   * outside it could be in it: the window holds every event it stands for, or its oldest is
   * older than `since`, or the answer's last event sorts no later than the window's oldest
   * (everything outside sorts after that).
   */
  private answerFilter(f: QueryFilter, now: number): FilterAnswer {
    const by = answerable(f);
    if (by === undefined || ('tag' in by && this.opts.loadTags === undefined)) return 'inexact';
    if ('ids' in by) return this.answerIds(f, by.ids, now);
    const limit = f.limit === undefined ? Number.POSITIVE_INFINITY : Math.floor(f.limit);
    const keys = 'tag' in by ? by.values.map((v) => tagKey(by.tag, v)) : by.authors;
    if (limit <= 0 || keys.length === 0 || f.authors?.length === 0 || f.kinds?.length === 0) return { entries: [] };
    if (f.restrict?.some((r) => r.readers.length === 0 && r.kinds === undefined)) return { entries: [] };
    const excluded = f.notAuthors !== undefined && f.notAuthors.length > 0 ? new Set(f.notAuthors) : undefined;
    // By authors, an excluded author's window is not even needed; by tag, its events are skipped.
    const authors = 'tag' in by && f.authors !== undefined ? new Set(f.authors) : undefined;
    const kinds = f.kinds === undefined ? undefined : new Set(f.kinds);
    const since = f.since ?? Number.NEGATIVE_INFINITY;
    const until = f.until ?? Number.POSITIVE_INFINITY;
    const missing: string[] = [];
    const unsure: Entry[] = [];
    const parts: Entry[][] = [];
    const clock = this.clock();
    for (const key of keys) {
      if (!('tag' in by) && excluded?.has(key)) continue;
      const w = this.windows.get(key);
      if (!w || clock - w.loadedAt > this.maxAgeMs) {
        if (w) this.remove(key, w);
        missing.push(key);
        continue;
      }
      // Touched: the most recently used go last.
      this.windows.delete(key);
      this.windows.set(key, w);
      if (missing.length > 0) continue;
      const matches: Entry[] = [];
      for (const e of w.events) {
        if (e.createdAt < since || matches.length >= limit) break;
        if (e.createdAt > until || (kinds !== undefined && !kinds.has(e.kind))) continue;
        if (authors !== undefined && !authors.has(e.pubkey)) continue;
        if (excluded?.has(e.pubkey)) continue;
        if (e.expiresAt !== undefined && e.expiresAt <= now) continue;
        if (f.restrict !== undefined && !passes(e, f)) continue;
        matches.push(e);
      }
      parts.push(matches);
      const oldest = w.events[w.events.length - 1];
      if (!w.complete && !(oldest.createdAt < since) && matches.length < limit) unsure.push(oldest);
    }
    if (missing.length > 0) return { missing };
    const matches = mergeSorted(parts, limit);
    if (unsure.length > 0) {
      const last = matches.length === limit ? matches[limit - 1] : undefined;
      if (last === undefined || unsure.some((oldest) => before(last, oldest) > 0)) return 'inexact';
    }
    return { entries: matches };
  }

  /** A filter by ids (these, once each) from the events held in windows still fresh, when every id is held. */
  private answerIds(f: QueryFilter, ids: string[], now: number): FilterAnswer {
    const limit = f.limit === undefined ? Number.POSITIVE_INFINITY : Math.floor(f.limit);
    if (limit <= 0) return { entries: [] };
    const clock = this.clock();
    const fresh = (key: string) => {
      const w = this.windows.get(key);
      return w !== undefined && clock - w.loadedAt <= this.maxAgeMs;
    };
    const found: Entry[] = [];
    for (const id of ids) {
      const held = this.byId.get(id);
      if (held === undefined || !held.keys.some(fresh)) return 'inexact';
      if (matchesBesidesIds(held.entry, f, now)) found.push(held.entry);
    }
    found.sort(before);
    return { entries: found.length > limit ? found.slice(0, limit) : found };
  }

  /** Loads these windows (joining loads already in flight), on the primary: one query for the authors, one for the tags. */
  private async loadWindows(keys: string[]): Promise<void> {
    const waits: Promise<void>[] = [];
    const fresh: string[] = [];
    for (const k of keys) {
      const p = this.pending.get(k);
      if (p) waits.push(p.done);
      else fresh.push(k);
    }
    if (fresh.length > 0) {
      let finish!: () => void;
      const done = new Promise<void>((r) => (finish = r));
      const mine = new Map<string, Pending>(fresh.map((k) => [k, { extra: [], dropped: false, done }]));
      for (const [k, p] of mine) this.pending.set(k, p);
      waits.push(done);
      this.loads++;
      try {
        const authors = fresh.filter((k) => !isTagKey(k));
        const tags = fresh.filter(isTagKey).map((k) => ({ name: k[1], value: k.slice(2) }));
        const limit = this.windowEvents + 1;
        const [authorRows, tagRows] = await Promise.all([
          authors.length > 0 ? this.opts.load(authors, limit) : [],
          tags.length > 0 ? this.opts.loadTags!(tags, limit) : [],
        ]);
        this.opts.count?.('load', fresh.length);
        this.fill(mine, authorRows, tagRows);
      } catch {
        // The REQ goes to Postgres, which says what is wrong; the next read tries again.
        for (const p of mine.values()) p.dropped = true;
      } finally {
        for (const [k, p] of mine) if (this.pending.get(k) === p) this.pending.delete(k);
        this.loads--;
        finish();
      }
    }
    await Promise.all(waits);
  }

  /** The loaded rows as windows, with what was stored during the load, for the loads not made void meanwhile. */
  private fill(loads: Map<string, Pending>, authorRows: string[], tagRows: string[]): void {
    const rows = new Map<string, Map<string, Entry>>();
    const add = (key: string, e: Entry) => {
      const list = rows.get(key);
      if (list) list.set(e.id, e);
      else if (loads.has(key)) rows.set(key, new Map([[e.id, e]]));
    };
    const pubkeys = new Map<string, string>();
    for (const key of loads.keys()) if (!isTagKey(key)) pubkeys.set(key, key);
    for (const raw of authorRows) {
      const e = entryOfStored(raw, pubkeys);
      add(e.pubkey, e);
    }
    for (const raw of tagRows) {
      const ev = JSON.parse(raw) as NostrEvent;
      const e = entryOf(ev, raw);
      // An event is in every loaded window of its tags: one brought by another tag is older than
      // this tag's own rows when it is not among them, so it falls beyond the cut below.
      for (const key of tagKeysOf(ev)) add(key, e);
    }
    for (const [key, p] of loads) {
      if (p.dropped || this.pending.get(key) !== p) continue;
      const events = [...(rows.get(key)?.values() ?? [])].sort(before);
      if (p.removedBy !== undefined && events.some((e) => p.removedBy!.has(e.pubkey))) continue;
      const complete = events.length <= this.windowEvents;
      if (!complete) events.length = this.windowEvents;
      const w: Window = { events, complete, bytes: 0, loadedAt: this.clock() };
      for (const e of events) w.bytes += e.bytes;
      const old = this.windows.get(key);
      if (old) this.remove(key, old);
      this.windows.set(key, w);
      for (const e of events) this.index(key, e);
      this.bytes += w.bytes;
      if (isTagKey(key)) {
        w.authors = new Set();
        for (const e of events) this.hold(key, w, e.pubkey);
        for (const e of p.extra) this.insertTagged(key, w, e);
      } else for (const e of p.extra) this.insert(key, w, e);
    }
    this.evict();
  }

  /** Into a tag window, its author then counted among the window's holders. */
  private insertTagged(key: string, w: Window, e: Entry): void {
    if (this.insert(key, w, e)) this.hold(key, w, e.pubkey);
  }

  private hold(key: string, w: Window, pubkey: string): void {
    w.authors!.add(pubkey);
    const keys = this.holders.get(pubkey);
    if (keys) keys.add(key);
    else this.holders.set(pubkey, new Set([key]));
  }

  /**
   * Into its place in the window, unless it is there already or sorts after a window that is not
   * complete; whether it went in.
   */
  private insert(key: string, w: Window, e: Entry): boolean {
    const list = w.events;
    let lo = 0;
    let hi = list.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (before(list[mid], e) < 0) lo = mid + 1;
      else hi = mid;
    }
    if (lo < list.length && list[lo].id === e.id) return false;
    if (lo === list.length && !w.complete) return false;
    list.splice(lo, 0, e);
    w.bytes += e.bytes;
    this.bytes += e.bytes;
    this.index(key, e);
    if (list.length > this.windowEvents) {
      const out = list.pop()!;
      w.bytes -= out.bytes;
      this.bytes -= out.bytes;
      this.unindex(key, out);
      w.complete = false;
    }
    return true;
  }

  /** An event now in the window `key`. */
  private index(key: string, e: Entry): void {
    const held = this.byId.get(e.id);
    if (held) held.keys.push(key);
    else this.byId.set(e.id, { entry: e, keys: [key] });
  }

  /** An event no longer in the window `key`: no longer held once in none. */
  private unindex(key: string, e: Entry): void {
    const held = this.byId.get(e.id);
    const at = held?.keys.indexOf(key) ?? -1;
    if (at < 0) return;
    held!.keys.splice(at, 1);
    if (held!.keys.length === 0) this.byId.delete(e.id);
  }

  private remove(key: string, w: Window): void {
    this.windows.delete(key);
    this.bytes -= w.bytes;
    for (const e of w.events) this.unindex(key, e);
    for (const pubkey of w.authors ?? []) {
      const keys = this.holders.get(pubkey);
      keys?.delete(key);
      if (keys?.size === 0) this.holders.delete(pubkey);
    }
  }

  /** The least recently used windows go until the budget holds. */
  private evict(): void {
    let n = 0;
    for (const [key, w] of this.windows) {
      if (this.bytes <= this.opts.maxBytes) break;
      this.remove(key, w);
      n++;
    }
    if (n > 0) this.opts.count?.('eviction', n);
  }
}

/** What the store's order reads of an event. */
export type Ordered = { id: string; createdAt: number };

/**
 * Lists each in the store's order (each event once in a list) as one list in that order, each
 * event once, at most `limit` long: a k-way merge that reads only the heads it puts out. A binary
 * heap of the lists' heads rather than a scan of them for each event put out: a feed's authors
 * (a follow list) can be hundreds of windows, and a filter without a limit puts out all of them.
 * The same event in two lists has the same place in the order, so its copies come out one after
 * the other and only the first is kept.
 */
export function mergeSorted<E extends Ordered>(parts: E[][], limit: number): E[] {
  // One list (one window, or one filter's answer): itself, cut.
  if (parts.length === 1) return parts[0].length <= limit ? parts[0] : parts[0].slice(0, limit);
  const heads = parts.filter((p) => p.length > 0).map((list) => ({ list, at: 0 }));
  const first = (i: number, j: number) => before(heads[i].list[heads[i].at], heads[j].list[heads[j].at]) < 0;
  const sink = (i: number) => {
    for (;;) {
      const l = 2 * i + 1;
      let m = i;
      if (l < heads.length && first(l, m)) m = l;
      if (l + 1 < heads.length && first(l + 1, m)) m = l + 1;
      if (m === i) return;
      [heads[i], heads[m]] = [heads[m], heads[i]];
      i = m;
    }
  };
  for (let i = (heads.length >>> 1) - 1; i >= 0; i--) sink(i);
  const out: E[] = [];
  while (heads.length > 0 && out.length < limit) {
    const top = heads[0];
    const e = top.list[top.at++];
    if (out.length === 0 || out[out.length - 1].id !== e.id) out.push(e);
    if (top.at === top.list.length) {
      const last = heads.pop()!;
      if (heads.length > 0) heads[0] = last;
    }
    sink(0);
  }
  return out;
}
