import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { sql } from 'kysely';
import {
  countEvents,
  getEventById,
  purgeExpired,
  queryEvents,
  storeEvents,
  type Database,
  type Filter,
  type StoreItem,
} from '../src/index.ts';
import { author, backends, ids, mk, tiePair, truncateAll, type Opened } from './backends.ts';

const NOW = 1_700_000_000;

const stored = { status: 'stored' };
const duplicate = { status: 'duplicate', message: 'already have this event' };
const deleted = { status: 'deleted', message: 'this event was deleted' };
const stale = { status: 'stale', message: 'have a newer version' };

describe.each(backends)('event store on $name', (backend) => {
  let opened: Opened;
  let db: Database;

  beforeAll(async () => {
    opened = await backend.open();
    db = opened.db;
    await db.migrate();
  });

  afterAll(async () => {
    await opened?.cleanup();
  });

  beforeEach(async () => {
    await truncateAll(db);
  });

  const store = (items: StoreItem[], now = NOW) => storeEvents(db.kysely, items, now);
  const query = (filters: Filter[], now = NOW) => queryEvents(db.kysely, filters, now);
  const count = (filters: Filter[], now = NOW) => countEvents(db.kysely, filters, now);
  const tagRows = async () => Number((await sql<{ n: number }>`SELECT count(*) AS n FROM event_tags`.execute(db.kysely)).rows[0].n);

  describe('store', () => {
    it('stores events and returns the raw JSON unchanged', async () => {
      const a = author();
      const e = mk(a, { tags: [['t', 'x']], content: 'hello "quoted" \\ \u00e9 \u{1f600}' });
      expect(await store([e])).toEqual([stored]);
      expect(await getEventById(db.kysely, e.event.id)).toBe(e.raw);
      expect(await query([{ ids: [e.event.id], limit: 10 }])).toEqual([e.raw]);
    });

    it('reports a duplicate of a stored event and of an event earlier in the same batch', async () => {
      const a = author();
      const e1 = mk(a);
      const e2 = mk(a);
      const e3 = mk(a);
      expect(await store([e1])).toEqual([stored]);
      expect(await store([e2, e1, e3, e2])).toEqual([stored, duplicate, stored, duplicate]);
      expect(await query([{ authors: [a.pubkey], limit: 10 }])).toHaveLength(3);
      expect(await tagRows()).toBe(0);
    });

    it('joins a transaction of the caller, and is rolled back with it', async () => {
      const a = author();
      const e = mk(a, { tags: [['t', 'tx']] });
      await expect(
        db.kysely.transaction().execute(async (trx) => {
          expect(await storeEvents(trx, [e], NOW)).toEqual([stored]);
          throw new Error('abort');
        }),
      ).rejects.toThrow('abort');
      expect(await getEventById(db.kysely, e.event.id)).toBeUndefined();
      expect(await tagRows()).toBe(0);
      await db.kysely.transaction().execute(async (trx) => {
        expect(await storeEvents(trx, [e], NOW)).toEqual([stored]);
      });
      expect(await query([{ '#t': ['tx'], limit: 5 }])).toEqual([e.raw]);
    });

    it('handles an empty batch', async () => {
      expect(await store([])).toEqual([]);
    });

    it('indexes single-letter tags (first value, once per name/value) and skips unindexable values', async () => {
      const a = author();
      const e = mk(a, {
        tags: [
          ['t', 'x', 'extra'],
          ['t', 'x'],
          ['t', 'y'],
          ['T', 'upper'],
          ['client', 'not-single-letter'],
          ['p'],
          ['r', 'z'.repeat(5000)],
          ['r', 'nul\u0000byte'],
        ],
      });
      expect(await store([e])).toEqual([stored]);
      expect(await tagRows()).toBe(3);
      expect(await query([{ '#T': ['upper'], limit: 5 }])).toEqual([e.raw]);
    });

    it('stores a batch of 200 kind-1 events with 3 tags each', async () => {
      const authors = [author(), author(), author(), author()];
      const items = Array.from({ length: 200 }, (_, i) =>
        mk(authors[i % 4], {
          created_at: 10_000 + i,
          tags: [
            ['e', 'ab'.repeat(32)],
            ['p', authors[(i + 1) % 4].pubkey],
            ['t', `topic${i % 10}`],
          ],
        }),
      );
      const t0 = performance.now();
      const out = await store(items);
      const ms = performance.now() - t0;
      expect(out.every((o) => o.status === 'stored')).toBe(true);
      expect(await tagRows()).toBe(600);
      expect(await count([{ kinds: [1] }])).toBe(200);
      expect(await query([{ '#t': ['topic3'], limit: 100 }])).toHaveLength(20);
      // Generous bound (tests may run in parallel); the bench measures it properly.
      expect(ms).toBeLessThan(2_000);
    });
  });

  describe('filters', () => {
    let A: ReturnType<typeof author>;
    let B: ReturnType<typeof author>;
    let ev: Record<string, StoreItem>;

    beforeEach(async () => {
      A = author();
      B = author();
      ev = {
        a1: mk(A, {
          kind: 1,
          created_at: 100,
          tags: [
            ['t', 'cats'],
            ['p', B.pubkey],
          ],
        }),
        a2: mk(A, { kind: 7, created_at: 200, tags: [['t', 'dogs']] }),
        a3: mk(A, {
          kind: 1,
          created_at: 300,
          tags: [
            ['t', 'cats'],
            ['t', 'dogs'],
          ],
        }),
        b1: mk(B, {
          kind: 1,
          created_at: 150,
          tags: [
            ['e', 'cd'.repeat(32)],
            ['p', A.pubkey],
          ],
        }),
        b2: mk(B, { kind: 42, created_at: 250, tags: [['t', 'birds']] }),
      };
      expect((await store(Object.values(ev))).every((o) => o.status === 'stored')).toBe(true);
    });

    const raws = (...names: string[]) => names.map((n) => ev[n].raw);

    it('ids', async () => {
      expect(await query([{ ids: [ev.a1.event.id, ev.b2.event.id], limit: 10 }])).toEqual(raws('b2', 'a1'));
      expect(await query([{ ids: ['00'.repeat(32)], limit: 10 }])).toEqual([]);
    });

    it('authors', async () => {
      expect(await query([{ authors: [A.pubkey], limit: 10 }])).toEqual(raws('a3', 'a2', 'a1'));
      expect(await query([{ authors: [A.pubkey, B.pubkey], limit: 10 }])).toEqual(raws('a3', 'b2', 'a2', 'b1', 'a1'));
    });

    it('kinds', async () => {
      expect(await query([{ kinds: [1], limit: 10 }])).toEqual(raws('a3', 'b1', 'a1'));
      expect(await query([{ kinds: [7, 42], limit: 10 }])).toEqual(raws('b2', 'a2'));
      expect(await query([{ kinds: [1], authors: [B.pubkey], limit: 10 }])).toEqual(raws('b1'));
    });

    it('since and until (inclusive)', async () => {
      expect(await query([{ since: 200, limit: 10 }])).toEqual(raws('a3', 'b2', 'a2'));
      expect(await query([{ until: 150, limit: 10 }])).toEqual(raws('b1', 'a1'));
      expect(await query([{ since: 150, until: 250, limit: 10 }])).toEqual(raws('b2', 'a2', 'b1'));
      expect(await query([{ since: 301, limit: 10 }])).toEqual([]);
    });

    it('tags: any of the values, all of the tag names, combined with other fields', async () => {
      expect(await query([{ '#t': ['cats'], limit: 10 }])).toEqual(raws('a3', 'a1'));
      expect(await query([{ '#t': ['cats', 'dogs'], limit: 10 }])).toEqual(raws('a3', 'a2', 'a1'));
      expect(await query([{ '#t': ['dogs'], '#p': [B.pubkey], limit: 10 }])).toEqual([]);
      expect(await query([{ '#t': ['cats'], '#p': [B.pubkey], limit: 10 }])).toEqual(raws('a1'));
      expect(await query([{ '#p': [A.pubkey], limit: 10 }])).toEqual(raws('b1'));
      expect(await query([{ '#e': ['cd'.repeat(32)], limit: 10 }])).toEqual(raws('b1'));
      expect(await query([{ '#t': ['cats', 'dogs'], kinds: [1], limit: 10 }])).toEqual(raws('a3', 'a1'));
      expect(await query([{ '#t': ['cats', 'dogs'], since: 150, until: 250, limit: 10 }])).toEqual(raws('a2'));
      expect(await query([{ '#t': ['cats'], authors: [B.pubkey], limit: 10 }])).toEqual([]);
      expect(await query([{ '#t': ['fish'], limit: 10 }])).toEqual([]);
    });

    it('limit, and empty lists or limit 0 match nothing', async () => {
      expect(await query([{ limit: 2 }])).toEqual(raws('a3', 'b2'));
      expect(await query([{ kinds: [1], limit: 1 }])).toEqual(raws('a3'));
      expect(await query([{ limit: 0 }])).toEqual([]);
      expect(await query([{ ids: [], limit: 10 }])).toEqual([]);
      expect(await query([{ '#t': [], limit: 10 }])).toEqual([]);
      expect(await query([])).toEqual([]);
    });

    it('several filters are OR-ed without duplicates, each with its own limit', async () => {
      expect(
        await query([
          { kinds: [1], limit: 10 },
          { authors: [A.pubkey], limit: 10 },
        ]),
      ).toEqual(raws('a3', 'a2', 'b1', 'a1'));
      // Per-filter limits: 1 newest kind-1 (a3) + 2 newest of B (b2, b1).
      expect(
        await query([
          { kinds: [1], limit: 1 },
          { authors: [B.pubkey], limit: 2 },
        ]),
      ).toEqual(raws('a3', 'b2', 'b1'));
      // The same event matched by three filters is returned once.
      expect(
        await query([
          { ids: [ev.a1.event.id], limit: 5 },
          { '#p': [B.pubkey], limit: 5 },
          { until: 100, limit: 5 },
        ]),
      ).toEqual(raws('a1'));
    });

    it('count: distinct events over all filters, limits ignored', async () => {
      expect(await count([{ kinds: [1], limit: 1 }])).toBe(3);
      expect(await count([{ kinds: [1] }, { authors: [A.pubkey] }])).toBe(4);
      expect(await count([{ '#t': ['cats', 'dogs'] }, { '#p': [A.pubkey] }])).toBe(4);
      expect(await count([{ ids: [] }])).toBe(0);
      expect(await count([])).toBe(0);
      expect(typeof (await count([{}]))).toBe('number');
      expect(await count([{}])).toBe(5);
    });
  });

  it('orders newest first, ties by lowest id first', async () => {
    const a = author();
    const tags = [['t', 'ordered']];
    const [lo, hi] = tiePair(a, { kind: 1, created_at: 500, tags });
    const older = mk(a, { created_at: 400, tags });
    const newest = mk(a, { created_at: 600, tags });
    await store([hi, older, newest, lo]);
    expect(await query([{ authors: [a.pubkey], limit: 10 }])).toEqual([newest.raw, lo.raw, hi.raw, older.raw]);
    // The tie-break decides which one a limit keeps.
    expect(await query([{ authors: [a.pubkey], until: 500, limit: 1 }])).toEqual([lo.raw]);
    // Same through the tag index (single value: join) and the tag semi-join (several values).
    expect(await query([{ '#t': ['ordered'], limit: 10 }])).toEqual([newest.raw, lo.raw, hi.raw, older.raw]);
    expect(await query([{ '#t': ['ordered'], until: 500, limit: 1 }])).toEqual([lo.raw]);
    expect(await query([{ '#t': ['ordered', 'other'], until: 500, limit: 2 }])).toEqual([lo.raw, hi.raw]);
    // And it holds across several filters too.
    expect(
      await query([
        { ids: [hi.event.id], limit: 1 },
        { ids: [lo.event.id, older.event.id], limit: 5 },
      ]),
    ).toEqual([lo.raw, hi.raw, older.raw]);
  });

  describe('replaceable events', () => {
    it('keeps only the newest per (pubkey, kind) and refuses an older one as stale', async () => {
      const a = author();
      const v1 = mk(a, { kind: 0, created_at: 100, content: '{"name":"v1"}' });
      const v2 = mk(a, { kind: 0, created_at: 200, content: '{"name":"v2"}' });
      expect(await store([v1])).toEqual([stored]);
      expect(await store([v2])).toEqual([stored]);
      expect(await store([v1])).toEqual([stale]);
      expect(await query([{ kinds: [0], authors: [a.pubkey], limit: 10 }])).toEqual([v2.raw]);
      expect(await getEventById(db.kysely, v1.event.id)).toBeUndefined();
      // Other kinds and other authors are separate keys.
      const contacts = mk(a, { kind: 3, created_at: 50 });
      const other = mk(author(), { kind: 0, created_at: 50 });
      const list = mk(a, { kind: 10002, created_at: 50 });
      expect(await store([contacts, other, list])).toEqual([stored, stored, stored]);
      expect(await count([{ authors: [a.pubkey] }])).toBe(3);
    });

    it('newer-then-older in one batch, and older-then-newer in one batch', async () => {
      const a = author();
      const v1 = mk(a, { kind: 10002, created_at: 100, tags: [['r', 'wss://one']] });
      const v2 = mk(a, { kind: 10002, created_at: 200, tags: [['r', 'wss://two']] });
      expect(await store([v2, v1])).toEqual([stored, stale]);
      expect(await query([{ kinds: [10002], limit: 5 }])).toEqual([v2.raw]);

      await truncateAll(db);
      expect(await store([v1, v2])).toEqual([stored, stored]);
      expect(await query([{ kinds: [10002], limit: 5 }])).toEqual([v2.raw]);
      // The replaced version's tags are gone too.
      expect(await query([{ '#r': ['wss://one'], limit: 5 }])).toEqual([]);
      expect(await query([{ '#r': ['wss://two'], limit: 5 }])).toEqual([v2.raw]);
      expect(await tagRows()).toBe(1);
    });

    it('same created_at: the lowest id wins whatever the arrival order', async () => {
      const a = author();
      const [lo, hi] = tiePair(a, { kind: 0, created_at: 300 });
      // lowest first, separate batches
      expect(await store([lo])).toEqual([stored]);
      expect(await store([hi])).toEqual([stale]);
      expect(await query([{ kinds: [0], authors: [a.pubkey], limit: 5 }])).toEqual([lo.raw]);

      // highest first, separate batches
      await truncateAll(db);
      expect(await store([hi])).toEqual([stored]);
      expect(await store([lo])).toEqual([stored]);
      expect(await query([{ kinds: [0], authors: [a.pubkey], limit: 5 }])).toEqual([lo.raw]);

      // both orders within one batch
      await truncateAll(db);
      expect(await store([hi, lo])).toEqual([stored, stored]);
      expect(await query([{ kinds: [0], authors: [a.pubkey], limit: 5 }])).toEqual([lo.raw]);
      await truncateAll(db);
      expect(await store([lo, hi])).toEqual([stored, stale]);
      expect(await query([{ kinds: [0], authors: [a.pubkey], limit: 5 }])).toEqual([lo.raw]);
    });

    it('re-sending the current version is a duplicate', async () => {
      const a = author();
      const v = mk(a, { kind: 0, created_at: 100 });
      await store([v]);
      expect(await store([v])).toEqual([duplicate]);
    });

    it('an expired current version can be replaced by any version', async () => {
      const a = author();
      const v2 = mk(a, { kind: 0, created_at: 200, tags: [['expiration', String(NOW)]] });
      const v1 = mk(a, { kind: 0, created_at: 100 });
      expect(await store([v2], NOW - 10)).toEqual([stored]);
      expect(await store([v1], NOW - 10)).toEqual([stale]);
      expect(await store([v1], NOW)).toEqual([stored]);
      expect(await query([{ kinds: [0], authors: [a.pubkey], limit: 5 }])).toEqual([v1.raw]);
    });
  });

  describe('addressable events', () => {
    it('are keyed by kind, pubkey and the first d tag', async () => {
      const a = author();
      const x1 = mk(a, {
        kind: 30023,
        created_at: 100,
        tags: [
          ['d', 'x'],
          ['d', 'ignored'],
        ],
      });
      const y1 = mk(a, { kind: 30023, created_at: 100, tags: [['d', 'y']] });
      const none = mk(a, { kind: 30023, created_at: 100, tags: [] });
      const empty = mk(a, { kind: 30023, created_at: 200, tags: [['d', '']] });
      const x2 = mk(a, { kind: 30023, created_at: 150, tags: [['d', 'x']] });
      const x0 = mk(a, { kind: 30023, created_at: 50, tags: [['d', 'x']] });
      const otherKind = mk(a, { kind: 30024, created_at: 100, tags: [['d', 'x']] });
      const otherAuthor = mk(author(), { kind: 30023, created_at: 10, tags: [['d', 'x']] });
      expect(await store([x1, y1, none])).toEqual([stored, stored, stored]);
      // No d tag and an empty d tag are the same address.
      expect(await store([empty, x2, x0, otherKind, otherAuthor])).toEqual([stored, stored, stale, stored, stored]);
      expect(await query([{ kinds: [30023], authors: [a.pubkey], limit: 10 }])).toEqual([empty.raw, x2.raw, y1.raw]);
      expect(await query([{ '#d': ['x'], limit: 10 }])).toEqual([x2.raw, otherKind.raw, otherAuthor.raw]);
      expect(await query([{ '#d': ['ignored'], limit: 10 }])).toEqual([]);
    });

    it('a d identifier too long to index still keeps one row per address', async () => {
      const a = author();
      const d = 'long-'.repeat(1000);
      const v1 = mk(a, { kind: 30000, created_at: 100, tags: [['d', d]] });
      const v2 = mk(a, { kind: 30000, created_at: 200, tags: [['d', d]] });
      const other = mk(a, { kind: 30000, created_at: 100, tags: [['d', d + 'x']] });
      expect(await store([v1, v2, other])).toEqual([stored, stored, stored]);
      expect(await store([v1])).toEqual([stale]);
      expect(await count([{ authors: [a.pubkey] }])).toBe(2);
      const del = mk(a, { kind: 5, created_at: 300, tags: [['a', `30000:${a.pubkey}:${d}`]] });
      expect(await store([del])).toEqual([stored]);
      expect(await query([{ authors: [a.pubkey], kinds: [30000], limit: 5 }])).toEqual([other.raw]);
    });
  });

  describe('NIP-09 deletion', () => {
    it('by e tag: deletes the author’s events only and refuses them afterwards', async () => {
      const alice = author();
      const bob = author();
      const a1 = mk(alice, { created_at: 100, tags: [['t', 'x']] });
      const a2 = mk(alice, { created_at: 110 });
      const b1 = mk(bob, { created_at: 120 });
      await store([a1, a2, b1]);

      const del = mk(alice, {
        kind: 5,
        created_at: 200,
        tags: [
          ['e', a1.event.id],
          ['e', b1.event.id],
          ['k', '1'],
        ],
      });
      expect(await store([del])).toEqual([stored]);
      // The deletion request itself is kept and served.
      expect(await query([{ kinds: [5], limit: 5 }])).toEqual([del.raw]);
      expect(await getEventById(db.kysely, a1.event.id)).toBeUndefined();
      expect(await getEventById(db.kysely, a2.event.id)).toBe(a2.raw);
      // Bob's event is untouched: alice cannot delete it.
      expect(await getEventById(db.kysely, b1.event.id)).toBe(b1.raw);
      expect(await query([{ '#t': ['x'], limit: 5 }])).toEqual([]);
      // Re-sending the deleted event is refused; bob's is still a plain duplicate.
      expect(await store([a1, b1])).toEqual([deleted, duplicate]);
      expect(await getEventById(db.kysely, a1.event.id)).toBeUndefined();
    });

    it('a deletion that arrives before its target still refuses it, for the author only', async () => {
      const alice = author();
      const mallory = author();
      const a1 = mk(alice, { created_at: 100 });
      const a2 = mk(alice, { created_at: 100 });
      const own = mk(alice, { kind: 5, created_at: 200, tags: [['e', a1.event.id]] });
      const foreign = mk(mallory, { kind: 5, created_at: 200, tags: [['e', a2.event.id]] });
      expect(await store([own, foreign])).toEqual([stored, stored]);
      expect(await store([a1, a2])).toEqual([deleted, stored]);
      expect(await getEventById(db.kysely, a2.event.id)).toBe(a2.raw);
    });

    it('within one batch, in both orders', async () => {
      const a = author();
      const e1 = mk(a, { created_at: 100, tags: [['t', 'gone']] });
      const d1 = mk(a, { kind: 5, created_at: 200, tags: [['e', e1.event.id]] });
      expect(await store([e1, d1])).toEqual([stored, stored]);
      expect(await getEventById(db.kysely, e1.event.id)).toBeUndefined();
      expect(await tagRows()).toBe(1); // only the deletion request's e tag

      await truncateAll(db);
      expect(await store([d1, e1])).toEqual([stored, deleted]);
      expect(await getEventById(db.kysely, e1.event.id)).toBeUndefined();
      expect(await query([{ '#t': ['gone'], limit: 5 }])).toEqual([]);
    });

    it('deleting a deletion request has no effect', async () => {
      const a = author();
      const target = mk(a, { created_at: 100 });
      const d1 = mk(a, { kind: 5, created_at: 200, tags: [['e', target.event.id]] });
      const d2 = mk(a, { kind: 5, created_at: 300, tags: [['e', d1.event.id]] });
      expect(await store([target, d1, d2])).toEqual([stored, stored, stored]);
      expect(await getEventById(db.kysely, d1.event.id)).toBe(d1.raw);
      // d2 names d3 before it exists; d3 is still accepted.
      const d3 = mk(a, { kind: 5, created_at: 400, tags: [] });
      const d4 = mk(a, { kind: 5, created_at: 500, tags: [['e', d3.event.id]] });
      expect(await store([d4, d3])).toEqual([stored, stored]);
      expect(await count([{ kinds: [5] }])).toBe(4);
    });

    it('by e tag on a replaceable event lets an older version back in', async () => {
      const a = author();
      const v1 = mk(a, { kind: 0, created_at: 100 });
      const v2 = mk(a, { kind: 0, created_at: 200 });
      await store([v2]);
      const del = mk(a, { kind: 5, created_at: 300, tags: [['e', v2.event.id]] });
      expect(await store([del, v1, v2])).toEqual([stored, stored, deleted]);
      expect(await query([{ kinds: [0], authors: [a.pubkey], limit: 5 }])).toEqual([v1.raw]);
    });

    it('by a tag: deletes versions up to the request’s created_at; newer ones are accepted', async () => {
      const alice = author();
      const bob = author();
      const v1 = mk(alice, { kind: 30023, created_at: 100, tags: [['d', 'post']] });
      const v2 = mk(alice, { kind: 30023, created_at: 200, tags: [['d', 'post']] });
      const other = mk(alice, { kind: 30023, created_at: 100, tags: [['d', 'other']] });
      const bobs = mk(bob, { kind: 30023, created_at: 100, tags: [['d', 'post']] });
      expect(await store([v1, other, bobs])).toEqual([stored, stored, stored]);

      const del = mk(alice, {
        kind: 5,
        created_at: 150,
        tags: [
          ['a', `30023:${alice.pubkey}:post`],
          ['a', `30023:${bob.pubkey}:post`], // not alice's: ignored
        ],
      });
      expect(await store([del])).toEqual([stored]);
      expect(await getEventById(db.kysely, v1.event.id)).toBeUndefined();
      expect(await getEventById(db.kysely, other.event.id)).toBe(other.raw);
      expect(await getEventById(db.kysely, bobs.event.id)).toBe(bobs.raw);
      // Versions at or before the request are refused, a later one is accepted.
      const at = mk(alice, { kind: 30023, created_at: 150, tags: [['d', 'post']] });
      expect(await store([v1, at, v2])).toEqual([deleted, deleted, stored]);
      expect(await query([{ '#d': ['post'], authors: [alice.pubkey], limit: 5 }])).toEqual([v2.raw]);
      // Bob can still write his own address.
      const bobs2 = mk(bob, { kind: 30023, created_at: 120, tags: [['d', 'post']] });
      expect(await store([bobs2])).toEqual([stored]);
    });

    it('by a tag on a replaceable kind, and a later request moves the bound forward', async () => {
      const a = author();
      const v1 = mk(a, { kind: 3, created_at: 100 });
      await store([v1]);
      const d1 = mk(a, { kind: 5, created_at: 150, tags: [['a', `3:${a.pubkey}:`]] });
      const v2 = mk(a, { kind: 3, created_at: 200 });
      const d2 = mk(a, { kind: 5, created_at: 250, tags: [['a', `3:${a.pubkey}:`]] });
      const v3 = mk(a, { kind: 3, created_at: 240 });
      const v4 = mk(a, { kind: 3, created_at: 260 });
      // d1 deletes v1; v2 is accepted then deleted by d2 in the same batch; v3 is refused.
      expect(await store([d1, v2, d2, v3])).toEqual([stored, stored, stored, deleted]);
      expect(await count([{ kinds: [3], authors: [a.pubkey] }])).toBe(0);
      // An older request does not lower the bound.
      const d0 = mk(a, { kind: 5, created_at: 120, tags: [['a', `3:${a.pubkey}:`]] });
      expect(await store([d0, v3, v4])).toEqual([stored, deleted, stored]);
      expect(await query([{ kinds: [3], authors: [a.pubkey], limit: 5 }])).toEqual([v4.raw]);
    });
  });

  describe('NIP-40 expiration', () => {
    it('hides due events from queries and counts, and purgeExpired deletes them with their tags', async () => {
      const a = author();
      const soon = mk(a, {
        created_at: 100,
        tags: [
          ['expiration', String(NOW + 10)],
          ['t', 'exp'],
        ],
      });
      const later = mk(a, {
        created_at: 110,
        tags: [
          ['expiration', String(NOW + 1000)],
          ['t', 'exp'],
        ],
      });
      const never = mk(a, { created_at: 120, tags: [['t', 'exp']] });
      const malformed = mk(a, {
        created_at: 130,
        tags: [
          ['expiration', 'soon'],
          ['t', 'exp'],
        ],
      });
      expect(await store([soon, later, never, malformed])).toEqual([stored, stored, stored, stored]);

      expect(ids(await query([{ '#t': ['exp'], limit: 10 }], NOW))).toHaveLength(4);
      expect(await query([{ '#t': ['exp'], limit: 10 }], NOW + 10)).toEqual([malformed.raw, never.raw, later.raw]);
      expect(await count([{ authors: [a.pubkey] }], NOW + 10)).toBe(3);
      expect(await getEventById(db.kysely, soon.event.id, NOW + 10)).toBeUndefined();
      expect(await getEventById(db.kysely, soon.event.id)).toBe(soon.raw);

      expect(await purgeExpired(db.kysely, NOW + 9)).toBe(0);
      expect(await purgeExpired(db.kysely, NOW + 10)).toBe(1);
      expect(await getEventById(db.kysely, soon.event.id)).toBeUndefined();
      expect(await tagRows()).toBe(3);
      expect(await purgeExpired(db.kysely, NOW + 5000)).toBe(1);
      expect(await tagRows()).toBe(2);
      expect(await query([{ authors: [a.pubkey], limit: 10 }], NOW + 5000)).toEqual([malformed.raw, never.raw]);
    });
  });

  describe('concurrency', () => {
    it('concurrent batches with the same events store each once', async () => {
      const a = author();
      const items = Array.from({ length: 30 }, (_, i) => mk(a, { created_at: 100 + i }));
      const reversed = [...items].reverse();
      const results = await Promise.all([store(items), store(reversed), store(items.slice(10)), store(items.slice(0, 20))]);
      const storedCount = new Map<string, number>();
      const batches = [items, reversed, items.slice(10), items.slice(0, 20)];
      results.forEach((out, b) =>
        out.forEach((o, i) => {
          expect(['stored', 'duplicate']).toContain(o.status);
          if (o.status === 'stored') {
            const id = batches[b][i].event.id;
            storedCount.set(id, (storedCount.get(id) ?? 0) + 1);
          }
        }),
      );
      expect(storedCount.size).toBe(30);
      expect([...storedCount.values()].every((n) => n === 1)).toBe(true);
      expect(await count([{ authors: [a.pubkey] }])).toBe(30);
    });

    it('a deletion racing with its target never leaves the target stored', async () => {
      for (let round = 0; round < 5; round++) {
        const a = author();
        const target = mk(a, { created_at: 100 });
        const del = mk(a, { kind: 5, created_at: 200, tags: [['e', target.event.id]] });
        const [t, d] = await Promise.all([store([target]), store([del])]);
        expect(d).toEqual([stored]);
        expect(['stored', 'deleted']).toContain(t[0].status);
        expect(await getEventById(db.kysely, target.event.id)).toBeUndefined();
      }
    });

    it('concurrent versions of one address keep exactly the newest', async () => {
      const a = author();
      const versions = Array.from({ length: 8 }, (_, i) => mk(a, { kind: 0, created_at: 100 + i }));
      await Promise.all(versions.map((v) => store([v])));
      expect(await query([{ kinds: [0], authors: [a.pubkey], limit: 10 }])).toEqual([versions[7].raw]);
    });
  });
});
