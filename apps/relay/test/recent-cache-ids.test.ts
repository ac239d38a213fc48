import { describe, expect, it } from 'vitest';
import type { QueryFilter } from '@paidrelay/db';
import { eventToJson, type NostrEvent } from '@paidrelay/nostr';
import { RecentCache, type RecentCacheOptions } from '../src/recent-cache.ts';
import { authorsOf, BASE, event, QNOW } from './recent-cache-fixture.ts';

/**
 * The recent-events cache's index of the events its windows hold (what filters by `ids` are
 * answered from), kept by hand against a store in memory: an event pushed out of a window's
 * end, a window dropped by a deletion, evicted, emptied, loaded again, an event in an author's
 * and a tag's window taken out of one of them. What the cache holds shows in `size.ids` and in
 * which ids a read asks the store for.
 */

/** A store in memory: events by id, read as the primary's loads read them (each author's or tag's newest). */
function memoryStore() {
  const events = new Map<string, NostrEvent>();
  const newest = (match: (e: NostrEvent) => boolean, limit: number) =>
    [...events.values()]
      .filter(match)
      .sort((a, b) => b.created_at - a.created_at || (a.id < b.id ? -1 : 1))
      .slice(0, limit)
      .map(eventToJson);
  return {
    events,
    load: async (authors: string[], limit: number) => authors.flatMap((a) => newest((e) => e.pubkey === a, limit)),
    loadTags: async (tags: { name: string; value: string }[], limit: number) =>
      tags.flatMap((t) => newest((e) => e.tags.some((x) => x[0] === t.name && x[1] === t.value), limit)),
  };
}

type Store = ReturnType<typeof memoryStore>;

function setup(o: Partial<RecentCacheOptions> = {}) {
  const store = memoryStore();
  const cache = new RecentCache({ maxBytes: 1e9, windowEvents: 2, load: store.load, loadTags: store.loadTags, healthy: () => true, ...o });
  /** Stored, and told to the cache as the writer tells it. */
  const put = (ev: NostrEvent) => {
    store.events.set(ev.id, ev);
    cache.stored(ev, eventToJson(ev));
    return ev;
  };
  /** The author's deletion of these events: gone from the store, the deletion stored. */
  const remove = (author: string, ...gone: NostrEvent[]) => {
    for (const g of gone) store.events.delete(g.id);
    return put(event(author, { kind: 5, created_at: BASE + 50, tags: gone.map((g) => ['e', g.id]) }));
  };
  return { store, cache, put, remove };
}

/** Reads these filters twice (the second loads the windows). */
async function warm(cache: RecentCache, store: Store, ...filters: QueryFilter[]): Promise<void> {
  for (const f of filters) for (let i = 0; i < 2; i++) await cache.read([f], QNOW, async () => answerOf(store, [f]));
}

/** The store's answer for filters by ids alone (the only ones these tests ask it). */
function answerOf(store: Store, filters: { ids?: string[] }[]): string[] {
  const ids = new Set(filters.flatMap((f) => f.ids ?? []));
  return [...store.events.values()]
    .filter((e) => ids.has(e.id))
    .sort((a, b) => b.created_at - a.created_at || (a.id < b.id ? -1 : 1))
    .map(eventToJson);
}

/** Whether a read of `ids` asks the store (null: answered from the windows alone, else the ids asked), and its answer. */
async function asked(cache: RecentCache, store: Store, ids: string[]): Promise<{ asked: string[] | null; got: string[] }> {
  let fromStore: string[] | null = null;
  const got = await cache.read([{ ids }], QNOW, async () => {
    fromStore = ids;
    return answerOf(store, [{ ids }]);
  });
  return { asked: fromStore, got };
}

describe('recent-events cache: the events held, by id', () => {
  it("holds what its windows hold, and nothing pushed out of a window's end", async () => {
    const [a] = authorsOf(1);
    const counted: string[] = [];
    const { store, cache, put } = setup({ count: (o) => counted.push(o) });
    const e1 = put(event(a, { kind: 1, created_at: BASE + 1 }));
    const e2 = put(event(a, { kind: 1, created_at: BASE + 2 }));
    await warm(cache, store, { authors: [a], limit: 5 });
    expect(cache.size.ids).toBe(2);
    expect(await asked(cache, store, [e1.id, e2.id])).toEqual({ asked: null, got: [eventToJson(e2), eventToJson(e1)] });
    const e3 = put(event(a, { kind: 1, created_at: BASE + 3 }));
    // e1 is pushed out: still stored, but no longer held, so the store is asked.
    expect(cache.size.ids).toBe(2);
    expect(await asked(cache, store, [e1.id, e3.id])).toEqual({ asked: [e1.id, e3.id], got: [eventToJson(e3), eventToJson(e1)] });
    // Answered from the windows alone: a hit; by the store: a miss.
    expect(counted.slice(-2)).toEqual(['hit', 'miss']);
    cache.close();
  });

  it("forgets the events of a window its author's deletion drops, and does not take the old ones back when it is loaded again", async () => {
    const [a] = authorsOf(1);
    const { store, cache, put, remove } = setup();
    const e1 = put(event(a, { kind: 1, created_at: BASE + 1 }));
    const e2 = put(event(a, { kind: 1, created_at: BASE + 2 }));
    await warm(cache, store, { authors: [a], limit: 5 });
    put(event(a, { kind: 1, created_at: BASE + 3 })); // e1 pushed out
    remove(a, e1, e2);
    expect(cache.size).toMatchObject({ authors: 0, ids: 0 });
    await warm(cache, store, { authors: [a], limit: 5 }); // loaded again: the newest one and the deletion
    expect(cache.size.ids).toBe(2);
    // Neither deleted event is held: asked of the store, which has none.
    expect(await asked(cache, store, [e1.id, e2.id])).toEqual({ asked: [e1.id, e2.id], got: [] });
    cache.close();
  });

  it("keeps an event held in an author's and a tag's window until it is in neither", async () => {
    const [a, b] = authorsOf(2);
    const { store, cache, put } = setup();
    const topic = `t-${a.slice(0, 8)}`;
    const both = put(event(a, { kind: 1, created_at: BASE + 1, tags: [['t', topic]] }));
    await warm(cache, store, { authors: [a], limit: 5 }, { '#t': [topic], limit: 5 });
    expect(cache.size).toMatchObject({ authors: 1, tags: 1, events: 2, ids: 1 });
    // Pushed out of the tag's window by b's events; still in a's window: held.
    put(event(b, { kind: 1, created_at: BASE + 2, tags: [['t', topic]] }));
    put(event(b, { kind: 1, created_at: BASE + 3, tags: [['t', topic]] }));
    expect(await asked(cache, store, [both.id])).toEqual({ asked: null, got: [eventToJson(both)] });
    // Pushed out of a's window too: held nowhere.
    put(event(a, { kind: 1, created_at: BASE + 4 }));
    put(event(a, { kind: 1, created_at: BASE + 5 }));
    expect((await asked(cache, store, [both.id])).asked).toEqual([both.id]);
    cache.close();
  });

  it('forgets what eviction and clearing take, and a window stale with age', async () => {
    const [a, b] = authorsOf(2);
    let clock = 0;
    const { store, cache, put } = setup({ clock: () => clock, maxAgeMs: 1_000 });
    const ea = put(event(a, { kind: 1, created_at: BASE + 1, content: 'x'.repeat(100) }));
    const eb = put(event(b, { kind: 1, created_at: BASE + 1, content: 'x'.repeat(100) }));
    await warm(cache, store, { authors: [a], limit: 5 }, { authors: [b], limit: 5 });
    expect(cache.size.ids).toBe(2);
    expect((await asked(cache, store, [ea.id, eb.id])).asked).toBeNull();
    // A window older than the cache trusts: its events are asked of the store, though still indexed.
    clock = 1_001;
    expect((await asked(cache, store, [ea.id])).asked).toEqual([ea.id]);
    clock = 0;

    // A budget for one window: a's (least recently read) goes when b's window grows.
    const small = setup({ maxBytes: 800 });
    const sa = small.put(event(a, { kind: 1, created_at: BASE + 1, content: 'y'.repeat(100) }));
    const sb = small.put(event(b, { kind: 1, created_at: BASE + 1, content: 'y'.repeat(100) }));
    await warm(small.cache, small.store, { authors: [a], limit: 5 }, { authors: [b], limit: 5 });
    expect(small.cache.size).toMatchObject({ authors: 1, ids: 1 });
    expect((await asked(small.cache, small.store, [sa.id, sb.id])).asked).toEqual([sa.id, sb.id]);
    expect((await asked(small.cache, small.store, [sb.id])).asked).toBeNull();
    small.cache.close();

    cache.clear();
    expect(cache.size.ids).toBe(0);
    expect((await asked(cache, store, [ea.id])).asked).toEqual([ea.id]);
    cache.close();
  });
});
