/**
 * The newest events of recently read authors, in this process, so that most feed REQs (filters
 * by `authors`, with `kinds`, `since`, `until`, `limit`) are answered without Postgres (issue 10).
 *
 * Per author a window: that author's newest WINDOW_EVENTS stored events of every kind, in the
 * store's order (created_at DESC, then lowest id), or all of them (`complete`). A window is kept
 * exact by what the store and the bus say: an event stored here (the writer, before its OK) or
 * by another replica (the events channel) goes in; anything that can remove stored events of
 * an author (a deletion request, a replaceable or addressable event) drops that author's window,
 * and a moderation change or a bus outage drops them all. A dropped window is loaded again from
 * the primary on a later REQ. The answer is the store's (`queryEvents`) or none: when a window
 * cannot prove its answer exact, the REQ goes to Postgres as before.
 */
import type { QueryFilter } from '@paidrelay/db';
import { expirationOf, KIND_DELETION, kindClass, type NostrEvent } from '@paidrelay/nostr';

/**
 * Events per author window. One more is read on a load, to tell a complete window: 99 + 1 is one
 * of the store's limit steps (events-query.ts). Enough for a kind-filtered limit of 50 beside an
 * author's reactions and reposts; a bigger window costs every load and holds fewer authors.
 */
export const WINDOW_EVENTS = 99;
/**
 * A window older than this is read again. The bus can lose messages in ways this replica does not
 * see (another replica's outbox overflowing while Redis is away from it alone): this bounds how
 * long an answer can miss them.
 */
export const WINDOW_MAX_AGE_MS = 30_000;
/** Beyond the JSON text: the entry, its id string and the array slot (an estimate, for the budget). */
const ENTRY_OVERHEAD_BYTES = 200;
/** Authors loaded for one REQ at most (one query); a REQ with more missing goes to Postgres. */
const MAX_LOAD_AUTHORS = 32;
/**
 * Once the budget is used up, only a REQ missing this few authors waits for a load (each load
 * then evicts someone): a feed of many authors that do not fit would otherwise load for ever.
 */
const MAX_LOAD_AUTHORS_WHEN_FULL = 2;
/**
 * Loads in flight at most; a REQ that would need one more goes to Postgres. When the authors read
 * do not fit the budget, loads would follow evictions without end: this keeps that to a trickle
 * (what each such REQ costs is then its query, as without the cache).
 */
const MAX_LOADS_IN_FLIGHT = 2;
/** Authors missed once, remembered so that only an author read twice is loaded (a one-off read costs no load). */
const SEEN_MAX = 50_000;
/** How often the bus's health is looked at between REQs (an outage between two REQs still clears). */
const HEALTH_CHECK_MS = 500;

type Entry = { id: string; createdAt: number; kind: number; expiresAt: number | undefined; raw: string; bytes: number; pubkey: string };

type Window = { events: Entry[]; complete: boolean; bytes: number; loadedAt: number };

/** A load in flight for one author: what was stored meanwhile, or that it is void. */
type Pending = { extra: Entry[]; dropped: boolean; done: Promise<void> };

export type CacheOutcome = 'hit' | 'miss' | 'load' | 'eviction';

export type RecentCacheOptions = {
  maxBytes: number;
  /** Each author's newest `limit` events (raw JSON, any order), read on the primary. */
  load: (authors: string[], limit: number) => Promise<string[]>;
  /** Whether every message on the bus reaches this process now. */
  healthy: () => boolean;
  count?: (outcome: CacheOutcome, n?: number) => void;
  windowEvents?: number;
  maxAgeMs?: number;
  clock?: () => number;
};

/** The store's order: newest first, ties by the lowest id (hex compares as the bytes do). */
function before(a: Entry, b: Entry): number {
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

/** Events that take stored events of their author away (or replace one): the window goes. */
function removesStored(kind: number): boolean {
  return kind === KIND_DELETION || kindClass(kind) === 'replaceable' || kindClass(kind) === 'addressable';
}

const ANSWERABLE_KEYS = new Set(['authors', 'kinds', 'since', 'until', 'limit', 'restrict', 'notAuthors']);

function distinct<T>(xs: readonly T[]): boolean {
  return new Set(xs).size === xs.length;
}

/**
 * A filter the windows can answer: by authors, without ids, tags or anything else. Repeated
 * authors or kinds are left to the store, which returns such matches once per repetition.
 */
function answerable(f: QueryFilter): boolean {
  for (const key of Object.keys(f)) if (!ANSWERABLE_KEYS.has(key)) return false;
  return f.authors !== undefined && distinct(f.authors) && (f.kinds === undefined || distinct(f.kinds));
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

/** What the windows say of one filter: its matches, or that some authors have no window, or that they cannot be sure. */
type FilterAnswer = { entries: Entry[] } | { missing: string[] } | 'inexact';

export class RecentCache {
  /** In least recently used order (a read moves an author to the end). */
  private windows = new Map<string, Window>();
  private pending = new Map<string, Pending>();
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

  /** Events and bytes held now (for tests and metrics). */
  get size(): { authors: number; events: number; bytes: number } {
    let events = 0;
    for (const w of this.windows.values()) events += w.events.length;
    return { authors: this.windows.size, events, bytes: this.bytes };
  }

  /**
   * The stored events matching `filters` as `queryEvents` would return them at `now`: from the
   * windows when they answer exactly, else from `fallback` (Postgres). Authors read a second time
   * without a window are loaded first (one query for all of them), then answered from the windows.
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
      const again = missing.filter((a) => this.seen.has(a) || this.pending.has(a));
      for (const a of missing) this.remember(a);
      const joinOnly = missing.every((a) => this.pending.has(a));
      const room = this.bytes < this.opts.maxBytes * 0.9 ? MAX_LOAD_AUTHORS : MAX_LOAD_AUTHORS_WHEN_FULL;
      if (again.length === missing.length && missing.length <= room && (joinOnly || this.loads < MAX_LOADS_IN_FLIGHT)) {
        await this.loadWindows(missing);
        answer = this.usable() ? this.answer(filters, now) : 'inexact';
        if (Array.isArray(answer)) return this.hit(answer);
      }
    }
    this.opts.count?.('miss');
    return fallback();
  }

  /** An event stored, here or by another replica (ephemeral ones are ignored). */
  stored(ev: NostrEvent, raw: string): void {
    const cls = kindClass(ev.kind);
    if (cls === 'ephemeral') return;
    if (removesStored(ev.kind)) {
      this.dropAuthor(ev.pubkey);
      return;
    }
    const p = this.pending.get(ev.pubkey);
    const w = this.windows.get(ev.pubkey);
    if (!p && !w) return;
    const e = entryOf(ev, raw);
    p?.extra.push(e);
    if (w) {
      this.insert(w, e);
      this.evict();
    }
  }

  /** Stored events of this author may have gone: its window (and a load in flight) is void. */
  dropAuthor(pubkey: string): void {
    const w = this.windows.get(pubkey);
    if (w) this.remove(pubkey, w);
    const p = this.pending.get(pubkey);
    if (p) {
      p.dropped = true;
      this.pending.delete(pubkey);
    }
  }

  /** Anything may have gone (moderation, a bus outage): every window and load is void. */
  clear(): void {
    this.windows.clear();
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

  private remember(author: string): void {
    if (this.seen.has(author)) return;
    this.seen.add(author);
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
    if (parts.length === 1) return parts[0].map((e) => e.raw);
    const byId = new Map<string, Entry>();
    for (const part of parts) for (const e of part) byId.set(e.id, e);
    return [...byId.values()].sort(before).map((e) => e.raw);
  }

  /**
   * One filter. Each author's matches come from its window; the top `limit` of them all is the
   * store's answer when, for each author, nothing outside its window could be in it: the window
   * holds every event of the author, or its oldest is older than `since`, or the answer's last
   * event sorts no later than the window's oldest (everything outside sorts after that).
   */
  private answerFilter(f: QueryFilter, now: number): FilterAnswer {
    if (!answerable(f)) return 'inexact';
    const limit = f.limit === undefined ? Number.POSITIVE_INFINITY : Math.floor(f.limit);
    const authors = f.authors!;
    if (limit <= 0 || authors.length === 0 || f.kinds?.length === 0) return { entries: [] };
    if (f.restrict?.some((r) => r.readers.length === 0 && r.kinds === undefined)) return { entries: [] };
    const excluded = f.notAuthors !== undefined && f.notAuthors.length > 0 ? new Set(f.notAuthors) : undefined;
    const kinds = f.kinds === undefined ? undefined : new Set(f.kinds);
    const since = f.since ?? Number.NEGATIVE_INFINITY;
    const until = f.until ?? Number.POSITIVE_INFINITY;
    const missing: string[] = [];
    const unsure: Entry[] = [];
    let matches: Entry[] = [];
    const clock = this.clock();
    for (const author of authors) {
      if (excluded?.has(author)) continue;
      const w = this.windows.get(author);
      if (!w || clock - w.loadedAt > this.maxAgeMs) {
        if (w) this.remove(author, w);
        missing.push(author);
        continue;
      }
      // Touched: the most recently used go last.
      this.windows.delete(author);
      this.windows.set(author, w);
      if (missing.length > 0) continue;
      let n = 0;
      for (const e of w.events) {
        if (e.createdAt < since || n >= limit) break;
        if (e.createdAt > until || (kinds !== undefined && !kinds.has(e.kind))) continue;
        if (e.expiresAt !== undefined && e.expiresAt <= now) continue;
        if (f.restrict !== undefined && !passes(e, f)) continue;
        matches.push(e);
        n++;
      }
      const oldest = w.events[w.events.length - 1];
      if (!w.complete && !(oldest.createdAt < since) && n < limit) unsure.push(oldest);
    }
    if (missing.length > 0) return { missing };
    if (authors.length > 1) matches.sort(before);
    if (matches.length > limit) matches = matches.slice(0, limit);
    if (unsure.length > 0) {
      const last = matches.length === limit ? matches[limit - 1] : undefined;
      if (last === undefined || unsure.some((oldest) => before(last, oldest) > 0)) return 'inexact';
    }
    return { entries: matches };
  }

  /** Loads the windows of these authors (joining loads already in flight), on the primary. */
  private async loadWindows(authors: string[]): Promise<void> {
    const waits: Promise<void>[] = [];
    const fresh: string[] = [];
    for (const a of authors) {
      const p = this.pending.get(a);
      if (p) waits.push(p.done);
      else fresh.push(a);
    }
    if (fresh.length > 0) {
      let finish!: () => void;
      const done = new Promise<void>((r) => (finish = r));
      const mine = new Map<string, Pending>(fresh.map((a) => [a, { extra: [], dropped: false, done }]));
      for (const [a, p] of mine) this.pending.set(a, p);
      waits.push(done);
      this.loads++;
      try {
        const raws = await this.opts.load(fresh, this.windowEvents + 1);
        this.opts.count?.('load', fresh.length);
        this.fill(mine, raws);
      } catch {
        // The REQ goes to Postgres, which says what is wrong; the next read tries again.
        for (const p of mine.values()) p.dropped = true;
      } finally {
        for (const [a, p] of mine) if (this.pending.get(a) === p) this.pending.delete(a);
        this.loads--;
        finish();
      }
    }
    await Promise.all(waits);
  }

  /** The loaded rows as windows, with what was stored during the load, for the loads not made void meanwhile. */
  private fill(loads: Map<string, Pending>, raws: string[]): void {
    const rows = new Map<string, Entry[]>();
    for (const raw of raws) {
      const e = entryOf(JSON.parse(raw) as NostrEvent, raw);
      const list = rows.get(e.pubkey);
      if (list) list.push(e);
      else rows.set(e.pubkey, [e]);
    }
    for (const [author, p] of loads) {
      if (p.dropped || this.pending.get(author) !== p) continue;
      const events = (rows.get(author) ?? []).sort(before);
      const complete = events.length <= this.windowEvents;
      if (!complete) events.length = this.windowEvents;
      const w: Window = { events, complete, bytes: 0, loadedAt: this.clock() };
      for (const e of events) w.bytes += e.bytes;
      const old = this.windows.get(author);
      if (old) this.remove(author, old);
      this.windows.set(author, w);
      this.bytes += w.bytes;
      for (const e of p.extra) this.insert(w, e);
    }
    this.evict();
  }

  /** Into its place in the window, unless it is there already or sorts after a window that is not complete. */
  private insert(w: Window, e: Entry): void {
    const list = w.events;
    let lo = 0;
    let hi = list.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (before(list[mid], e) < 0) lo = mid + 1;
      else hi = mid;
    }
    if (lo < list.length && list[lo].id === e.id) return;
    if (lo === list.length && !w.complete) return;
    list.splice(lo, 0, e);
    w.bytes += e.bytes;
    this.bytes += e.bytes;
    if (list.length > this.windowEvents) {
      const out = list.pop()!;
      w.bytes -= out.bytes;
      this.bytes -= out.bytes;
      w.complete = false;
    }
  }

  private remove(author: string, w: Window): void {
    this.windows.delete(author);
    this.bytes -= w.bytes;
  }

  /** The least recently used windows go until the budget holds. */
  private evict(): void {
    let n = 0;
    for (const [author, w] of this.windows) {
      if (this.bytes <= this.opts.maxBytes) break;
      this.remove(author, w);
      n++;
    }
    if (n > 0) this.opts.count?.('eviction', n);
  }
}
