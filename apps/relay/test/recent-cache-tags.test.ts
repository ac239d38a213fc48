import fc from 'fast-check';
import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openDatabase, queryEvents, storeEvents, type Database, type QueryFilter } from '@paidrelay/db';
import { eventToJson, type NostrEvent } from '@paidrelay/nostr';
import { RecentCache, tagKeysOf, type RecentCacheOptions, type TagValue } from '../src/recent-cache.ts';
import { freshDatabase } from './harness.ts';
import { authorsOf, BASE, checkAnswers, event, QNOW } from './recent-cache-fixture.ts';

/**
 * Tag windows of the recent-events cache against the store itself: random events of a few
 * authors carrying `#t`, `#p` and `#e` tags (regular, replaceable, addressable, deletions,
 * expiring ones, most at one of three created_at values) stored in Postgres and told to the
 * cache as the writer tells it; random one-tag filters (with authors, kinds, since, until,
 * limit, read-policy restrictions) read through the cache must equal queryEvents on Postgres,
 * before and after more writes. Windows are 4 events here, so partial windows decide most answers.
 */

/** `#e` values: ids of events that need not exist (the store indexes the value as it is). */
const REFS = ['a'.repeat(64), 'b'.repeat(64), 'c'.repeat(64)];
const TOPICS = ['x', 'y', 'z'];

type Op = {
  who: number;
  kind: number;
  at: number;
  expires: number | null;
  d: string;
  target: number;
  content: number;
  p: number | null;
  topics: string[];
  ref: number | null;
};

const op = fc.record({
  who: fc.nat(2),
  kind: fc.constantFrom(1, 1, 1, 1, 7, 7, 0, 3, 30023, 5),
  at: fc.constantFrom(BASE, BASE + 1, BASE + 1, BASE + 2),
  expires: fc.option(fc.constantFrom(QNOW - 10, QNOW, QNOW + 10), { freq: 4 }),
  d: fc.constantFrom('a', 'b'),
  target: fc.nat(40),
  content: fc.nat(1_000_000),
  p: fc.option(fc.nat(2)),
  topics: fc.subarray(TOPICS),
  ref: fc.option(fc.nat(2)),
});

/** One tag condition (`#t`, `#p` or `#e`, one to three values), with or without the rest. */
const filterOf = (authors: string[]) =>
  fc
    .tuple(
      fc.oneof(
        fc.record({ '#t': fc.subarray(TOPICS, { minLength: 1 }) }),
        fc.record({ '#p': fc.subarray(authors, { minLength: 1 }) }),
        fc.record({ '#e': fc.subarray(REFS, { minLength: 1 }) }),
      ),
      fc.record(
        {
          authors: fc.subarray(authors, { minLength: 1 }),
          kinds: fc.subarray([0, 1, 3, 5, 7, 30023], { minLength: 1 }),
          since: fc.constantFrom(BASE, BASE + 1, BASE + 2),
          until: fc.constantFrom(BASE, BASE + 1, BASE + 2),
          limit: fc.integer({ min: 1, max: 9 }),
          notAuthors: fc.subarray(authors, { minLength: 1, maxLength: 1 }),
          restrict: fc.constantFrom([{ kinds: [1, 7], readers: [] }], [{ kinds: [1], readers: [authors[1]] }], [{ readers: [authors[2]] }]),
        },
        { requiredKeys: ['limit'] },
      ),
    )
    .map(([tag, rest]) => ({ ...tag, ...rest }) as QueryFilter);

const byAuthor = (authors: string[]) =>
  fc.record({ authors: fc.subarray(authors, { minLength: 1 }), limit: fc.integer({ min: 1, max: 9 }) });

describe.skipIf(!process.env.TEST_DATABASE_URL)('recent-events cache: tag windows on Postgres', () => {
  let db: Database;
  let drop: () => Promise<void>;

  beforeAll(async () => {
    const fresh = await freshDatabase();
    drop = fresh.drop;
    db = await openDatabase({ databaseUrl: fresh.url, dataDir: '/tmp' });
    await db.migrate();
  });
  afterAll(async () => {
    await db?.close();
    await drop?.();
  });

  const loadTags = (tags: TagValue[], limit: number) =>
    queryEvents(
      db.kysely,
      tags.map((t) => ({ [`#${t.name}`]: [t.value], limit }) as QueryFilter),
      QNOW,
    );
  const newCache = (o: Partial<RecentCacheOptions> = {}) =>
    new RecentCache({
      maxBytes: 1e9,
      windowEvents: 4,
      load: (authors, limit) =>
        queryEvents(
          db.kysely,
          authors.map((a) => ({ authors: [a], limit })),
          QNOW,
        ),
      loadTags,
      healthy: () => true,
      ...o,
    });

  async function store(cache: RecentCache, ev: NostrEvent): Promise<void> {
    const raw = eventToJson(ev);
    const [outcome] = await storeEvents(db.kysely, [{ event: ev, raw }], BASE + 3);
    if (outcome.status === 'stored') cache.stored(ev, raw);
  }

  async function apply(cache: RecentCache, authors: string[], ops: Op[], written: NostrEvent[]): Promise<void> {
    for (const o of ops) {
      const tags: string[][] = [];
      if (o.expires !== null) tags.push(['expiration', String(o.expires)]);
      if (o.kind === 30023) tags.push(['d', o.d]);
      if (o.p !== null) tags.push(['p', authors[o.p]]);
      for (const t of o.topics) tags.push(['t', t]);
      if (o.ref !== null) tags.push(['e', REFS[o.ref]]);
      if (o.kind === 5) {
        // Mostly an event of the requester's own (the ones NIP-09 lets it delete).
        const own = written.filter((w) => w.pubkey === authors[o.who] || o.target % 4 === 0);
        const target = own[o.target % Math.max(1, own.length)];
        if (target) tags.push(['e', target.id]);
        tags.push(['a', `30023:${authors[o.who]}:${o.d}`]);
      }
      const ev = event(authors[o.who], { kind: o.kind, created_at: o.at, tags, content: String(o.content) });
      await store(cache, ev);
      written.push(ev);
    }
  }

  it('answers random one-tag filters (and author filters beside them) exactly as queryEvents does, before and after more writes', async () => {
    let hits = 0;
    let reads = 0;
    await fc.assert(
      fc.asyncProperty(
        fc.array(op, { minLength: 5, maxLength: 30 }),
        fc.array(op, { minLength: 1, maxLength: 15 }),
        fc.integer({ min: 1, max: 1_000_000 }),
        async (first, second, seed) => {
          const authors = authorsOf(3);
          const set = fc.array(fc.oneof({ weight: 4, arbitrary: filterOf(authors) }, { weight: 1, arbitrary: byAuthor(authors) }), {
            minLength: 1,
            maxLength: 2,
          });
          const filters = fc.sample(set, { numRuns: 8, seed }) as QueryFilter[][];
          const cache = newCache();
          const written: NostrEvent[] = [];
          try {
            await apply(cache, authors, first, written);
            hits += await checkAnswers(db, cache, filters);
            await apply(cache, authors, second, written);
            hits += await checkAnswers(db, cache, filters);
            reads += filters.length * 6;
          } finally {
            cache.close();
          }
        },
      ),
      { numRuns: 60, seed: 11 },
    );
    // About a third of the answers come from the windows: with 4 events per window, a tag window
    // rarely proves a filter narrowed by authors, kinds and restrictions; the rest is Postgres.
    expect(hits).toBeGreaterThan(reads / 4);
  }, 180_000);

  const notPostgres = () => Promise.reject(new Error('went to Postgres'));

  it("drops the tag windows holding an author's events when that author deletes or replaces, and only those", async () => {
    const [x, y] = authorsOf(2);
    let loads = 0;
    const cache = newCache({ count: (o, n = 1) => o === 'load' && (loads += n) });
    const topic = `drop-${x.slice(0, 8)}`;
    const other = `keep-${x.slice(0, 8)}`;
    const byX = event(x, { kind: 1, created_at: BASE, tags: [['t', topic]] });
    const byY = event(y, { kind: 1, created_at: BASE, tags: [['t', other]] });
    await store(cache, byX);
    await store(cache, byY);
    const fx = [{ '#t': [topic], limit: 10 }];
    const fy = [{ '#t': [other], limit: 10 }];
    for (const f of [fx, fy]) for (let i = 0; i < 2; i++) await cache.read(f, QNOW, () => queryEvents(db.kysely, f, QNOW));
    expect(await cache.read(fx, QNOW, notPostgres)).toEqual([eventToJson(byX)]);
    expect(cache.size.tags).toBe(2);

    // x deletes its event: the window of `topic` held it and goes; the other one stays.
    await store(cache, event(x, { kind: 5, created_at: BASE + 1, tags: [['e', byX.id]] }));
    expect(cache.size.tags).toBe(1);
    expect(await cache.read(fy, QNOW, notPostgres)).toEqual([eventToJson(byY)]);
    expect(await cache.read(fx, QNOW, () => queryEvents(db.kysely, fx, QNOW))).toEqual([]);

    // A replaceable event of x carrying `other` (whose window holds no event of x): in it, answered from memory.
    const list = event(x, { kind: 3, created_at: BASE + 2, tags: [['t', other]] });
    await store(cache, list);
    expect(await cache.read(fy, QNOW, notPostgres)).toEqual([eventToJson(list), eventToJson(byY)]);
    // Its replacement removes it: the window now holds x's event, and goes.
    const tagsBefore = cache.size.tags;
    await store(cache, event(x, { kind: 3, created_at: BASE + 3, tags: [] }));
    expect(cache.size.tags).toBe(tagsBefore - 1);
    // Read again (it was read before): loaded again from the store, not answered from the stale window.
    const loadsBefore = loads;
    expect(await cache.read(fy, QNOW, notPostgres)).toEqual([eventToJson(byY)]);
    expect(loads).toBe(loadsBefore + 1);
    cache.close();
  });

  it('answers several values of a tag from their windows, an event carrying two of them once', async () => {
    const [x, y] = authorsOf(2);
    const [t1, t2] = [`one-${x.slice(0, 8)}`, `two-${x.slice(0, 8)}`];
    const both = event(x, {
      kind: 1,
      created_at: BASE + 1,
      tags: [
        ['t', t1],
        ['t', t2],
      ],
    });
    const only1 = event(y, { kind: 1, created_at: BASE + 1, tags: [['t', t1]] });
    const only2 = event(y, { kind: 7, created_at: BASE, tags: [['t', t2]] });
    const cache = newCache();
    for (const ev of [both, only1, only2]) await store(cache, ev);
    const f = [{ '#t': [t1, t2, t1], limit: 10 }];
    const expected = await queryEvents(db.kysely, f, QNOW);
    expect(expected).toHaveLength(3);
    for (let i = 0; i < 2; i++) expect(await cache.read(f, QNOW, () => queryEvents(db.kysely, f, QNOW))).toEqual(expected);
    expect(await cache.read(f, QNOW, notPostgres)).toEqual(expected);
    const g = [{ '#t': [t1, t2], kinds: [7], limit: 10 }];
    expect(await cache.read(g, QNOW, notPostgres)).toEqual(await queryEvents(db.kysely, g, QNOW));
    cache.close();
  });

  it('voids a tag load that brings events of an author who deleted meanwhile', async () => {
    const [x] = authorsOf(1);
    const topic = `race-${x.slice(0, 8)}`;
    const old = event(x, { kind: 1, created_at: BASE, tags: [['t', topic]] });
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const cache = newCache({
      loadTags: async (tags, limit) => {
        const rows = await loadTags(tags, limit);
        await gate; // the snapshot is taken: the deletion below is not in it
        return rows;
      },
    });
    await store(cache, old);
    const f = [{ '#t': [topic], limit: 10 }];
    const fromStore = () => queryEvents(db.kysely, f, QNOW);
    await cache.read(f, QNOW, fromStore);
    const loading = cache.read(f, QNOW, fromStore);
    await new Promise((r) => setTimeout(r, 50));
    await store(cache, event(x, { kind: 5, created_at: BASE + 1, tags: [['e', old.id]] }));
    release();
    expect(await loading).toEqual([]);
    expect(cache.size.tags).toBe(0);
    cache.close();
  });

  it('indexes tags as the store does: single letters, first values, no values too long or with NUL', async () => {
    const [x] = authorsOf(1);
    const ev = event(x, {
      kind: 1,
      created_at: BASE,
      tags: [
        ['t', 'a', 'b'],
        ['t', 'a'],
        ['tt', 'c'],
        ['p'],
        ['1', 'digit'],
        ['r', 'u'.repeat(1025)],
        ['R', 'é'.repeat(300)],
        ['Z', 'é'.repeat(600)],
        ['q', 'nul\u0000'],
      ],
    });
    await storeEvents(db.kysely, [{ event: ev, raw: eventToJson(ev) }], BASE);
    const { rows } = await sql<{
      name: string;
      value: string;
    }>`SELECT name, value FROM event_tags WHERE event_id = ${Buffer.from(ev.id, 'hex')}`.execute(db.kysely);
    const stored = rows.map((r) => `#${r.name}${r.value}`).sort();
    expect(stored).toEqual(['#ta', `#R${'é'.repeat(300)}`].sort());
    expect(tagKeysOf(ev).sort()).toEqual(stored);
  });

  it('leaves to the store what tag windows cannot answer', async () => {
    const cache = newCache();
    const fallbackOnly = async (filters: QueryFilter[]) => {
      let fell = 0;
      for (let i = 0; i < 3; i++)
        await cache.read(filters, QNOW, async () => {
          fell++;
          return [];
        });
      return fell;
    };
    expect(await fallbackOnly([{ '#t': ['x'], '#p': [REFS[0]], limit: 5 }])).toBe(3); // two tags
    expect(await fallbackOnly([{ '#t': ['x'], ids: [REFS[0]], limit: 5 }])).toBe(3); // ids
    expect(await fallbackOnly([{ '#tt': ['x'], limit: 5 }] as QueryFilter[])).toBe(3); // not a letter
    expect(await fallbackOnly([{ '#r': ['u'.repeat(300)], limit: 5 }])).toBe(3); // a long value
    const noTags = new RecentCache({ maxBytes: 1e9, load: async () => [], healthy: () => true });
    let fell = 0;
    for (let i = 0; i < 3; i++)
      await noTags.read([{ '#t': ['x'], limit: 5 }], QNOW, async () => {
        fell++;
        return [];
      });
    expect(fell).toBe(3); // no loadTags: tag filters are not cached
    noTags.close();
    cache.close();
  });
});
