import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { matchFilter } from '@paidrelay/nostr';
import { queryEvents, storeEvents, type Database, type Filter, type StoreItem } from '../src/index.ts';
import { author, backends, mk, truncateAll, type Author, type Opened } from './backends.ts';

/**
 * Every query shape (ids, one or several tag values, authors with and without kinds, kinds,
 * everything; several filters) against a reference: the protocol core's matchFilter over all
 * stored events, ordered created_at DESC then id, each filter cut at its limit. The store has
 * only three distinct created_at values, so nearly every limit falls inside a tie.
 */

const NOW = 1_700_000_000;

const newestFirst = (a: StoreItem, b: StoreItem) =>
  b.event.created_at - a.event.created_at || (a.event.id < b.event.id ? -1 : a.event.id > b.event.id ? 1 : 0);

function reference(items: StoreItem[], filters: Filter[]): string[] {
  const picked = new Set<StoreItem>();
  for (const f of filters) {
    const matches = items.filter((it) => matchFilter(f, it.event)).sort(newestFirst);
    for (const it of f.limit === undefined ? matches : matches.slice(0, f.limit)) picked.add(it);
  }
  return [...picked].sort(newestFirst).map((it) => it.raw);
}

describe.each(backends)('query shapes under created_at ties on $name', (backend) => {
  let opened: Opened;
  let db: Database;
  const authors: Author[] = [author(), author(), author(), author()];
  const topics = ['cats', 'dogs', 'birds'];
  const items: StoreItem[] = [];

  beforeAll(async () => {
    opened = await backend.open();
    db = opened.db;
    await db.migrate();
    await truncateAll(db);
    const shape = fc.record({
      who: fc.constantFrom(...authors),
      kind: fc.constantFrom(1, 1, 7, 30),
      created_at: fc.constantFrom(100, 200, 200, 300),
      topics: fc.array(fc.constantFrom(...topics), { minLength: 1, maxLength: 2 }), // two: found twice by #t scans
      p: fc.option(fc.constantFrom(...authors)),
    });
    for (const e of fc.sample(shape, { seed: 7, numRuns: 90 })) {
      const tags = e.topics.map((t) => ['t', t]);
      if (e.p) tags.push(['p', e.p.pubkey]);
      items.push(mk(e.who, { kind: e.kind, created_at: e.created_at, tags }));
    }
    const outcomes = await storeEvents(db.kysely, items, NOW);
    expect(outcomes.every((o) => o.status === 'stored')).toBe(true);
  });

  afterAll(async () => {
    await opened?.cleanup();
  });

  const [A, B, C] = authors;
  const shapes: [string, () => Filter[]][] = [
    ['ids', () => [{ ids: items.slice(0, 12).map((it) => it.event.id), limit: 5 }]],
    ['one tag value', () => [{ '#t': ['cats'], limit: 7 }]],
    ['several tag values (events with both found once)', () => [{ '#t': ['cats', 'dogs'], limit: 9 }]],
    ['tag values and kinds', () => [{ '#t': ['cats', 'birds'], kinds: [1, 30], limit: 6 }]],
    ['tag values, an author and since/until', () => [{ '#t': topics, authors: [A.pubkey], since: 150, until: 250, limit: 4 }]],
    ['two tags (the one with fewer values drives)', () => [{ '#t': topics, '#p': [B.pubkey], limit: 5 }]],
    ['one author', () => [{ authors: [A.pubkey], limit: 6 }]],
    ['one author, one kind', () => [{ authors: [B.pubkey], kinds: [1], limit: 3 }]],
    ['several authors and kinds', () => [{ authors: [A.pubkey, B.pubkey, C.pubkey], kinds: [1, 7], limit: 8 }]],
    ['several authors, no kinds', () => [{ authors: [A.pubkey, C.pubkey], limit: 10 }]],
    ['several authors, until', () => [{ authors: [A.pubkey, B.pubkey], until: 200, limit: 5 }]],
    ['several kinds', () => [{ kinds: [7, 30], limit: 7 }]],
    ['one kind', () => [{ kinds: [1], limit: 11 }]],
    ['everything', () => [{ limit: 13 }]],
    ['everything, no limit', () => [{}]],
    [
      'several filters, overlapping',
      () => [
        { authors: [A.pubkey, B.pubkey], kinds: [1], limit: 4 },
        { '#t': ['cats', 'dogs'], limit: 5 },
        { kinds: [1, 7], limit: 3 },
        { ids: items.slice(5, 9).map((it) => it.event.id), limit: 2 },
      ],
    ],
  ];

  it.each(shapes)('%s', async (_name, filters) => {
    const fs = filters();
    const expected = reference(items, fs);
    expect(expected.length).toBeGreaterThan(0);
    expect(await queryEvents(db.kysely, fs, NOW)).toEqual(expected);
    // As REQs read: generic plans on Postgres (GENERIC_PLANS), the same answers; twice, so a
    // statement prepared on the first read runs its kept plan on the second.
    for (let i = 0; i < 2; i++) expect(await db.read((k) => queryEvents(k, fs, NOW), { generic: true })).toEqual(expected);
  });

  it('a tag name that is not a letter matches nothing (only letters are indexed, and names go into the SQL text)', async () => {
    for (const key of ["#'", '#1', '#;']) {
      expect(await queryEvents(db.kysely, [{ [key]: ['x'], limit: 5 } as Filter], NOW)).toEqual([]);
      expect(await queryEvents(db.kysely, [{ '#t': ['cats'], [key]: ['x'], limit: 5 } as Filter], NOW)).toEqual([]);
    }
  });

  it('many (author, kind) pairs: one scan per author with the kinds as a filter', async () => {
    const kinds = Array.from({ length: 100 }, (_, i) => i);
    const fs: Filter[] = [{ authors: authors.map((a) => a.pubkey), kinds, limit: 9 }];
    expect(await queryEvents(db.kysely, fs, NOW)).toEqual(reference(items, fs));
  });
});
