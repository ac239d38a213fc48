import { describe, expect, it, vi } from 'vitest';
import { matchFilters, type Filter, type NostrEvent } from '@paidrelay/nostr';
import fc from 'fast-check';
import { deliver, SubscriptionIndex } from '../src/fanout.ts';
import type { Connection, Subscription } from '../src/connection.ts';

const hex = (c: string) => c.repeat(64);
const ev = (p: Partial<NostrEvent>): NostrEvent => ({
  id: hex('1'),
  pubkey: hex('a'),
  created_at: 100,
  kind: 1,
  tags: [],
  content: '',
  sig: hex('0') + hex('0'),
  ...p,
});
const sub = (id: string, filters: Filter[]): Subscription => ({ conn: {} as Connection, id, filters, backlog: null });

describe('SubscriptionIndex', () => {
  it('finds subscriptions by ids, authors, tags, kinds and catch-all filters, each once', () => {
    const index = new SubscriptionIndex();
    const byId = sub('id', [{ ids: [hex('1')] }]);
    const byAuthor = sub('author', [{ authors: [hex('a')], kinds: [1] }]);
    const byTag = sub('tag', [{ '#t': ['x'] }]);
    const byKind = sub('kind', [{ kinds: [7] }, { kinds: [1], since: 50 }]);
    const any = sub('any', [{ since: 200 }]);
    const twoWays = sub('two', [{ authors: [hex('a')] }, { kinds: [1] }]);
    for (const s of [byId, byAuthor, byTag, byKind, any, twoWays]) index.add(s);
    const got = (e: NostrEvent) => [...index.matching(e)].map((s) => s.id).sort();
    expect(got(ev({}))).toEqual(['author', 'id', 'kind', 'two']);
    expect(got(ev({ id: hex('2'), kind: 7, tags: [['t', 'x']] }))).toEqual(['kind', 'tag', 'two']);
    expect(got(ev({ id: hex('2'), pubkey: hex('b'), kind: 9, created_at: 300 }))).toEqual(['any']);
    index.remove(twoWays);
    index.remove(byId);
    expect(got(ev({}))).toEqual(['author', 'kind']);
    expect(index.size).toBe(4);
  });

  it('agrees with matching every filter directly (property)', () => {
    const hexChar = fc.constantFrom('a', 'b', 'c');
    const filterArb = fc.record(
      {
        ids: fc.array(hexChar.map(hex), { minLength: 1, maxLength: 2 }),
        authors: fc.array(hexChar.map(hex), { minLength: 1, maxLength: 2 }),
        kinds: fc.array(fc.constantFrom(1, 2, 3), { minLength: 1, maxLength: 2 }),
        '#t': fc.array(fc.constantFrom('x', 'y'), { minLength: 1, maxLength: 2 }),
        since: fc.constantFrom(0, 50, 150),
      },
      { requiredKeys: [] },
    ) as fc.Arbitrary<Filter>;
    const eventArb = fc.record({
      id: hexChar.map(hex),
      pubkey: hexChar.map(hex),
      kind: fc.constantFrom(1, 2, 3),
      created_at: fc.constantFrom(10, 100, 200),
      tags: fc.array(fc.constantFrom<string[][]>(['t', 'x'], ['t', 'y'], ['p', 'z']), { maxLength: 2 }),
    });
    fc.assert(
      fc.property(fc.array(fc.array(filterArb, { minLength: 1, maxLength: 3 }), { maxLength: 6 }), eventArb, (subsFilters, e) => {
        const index = new SubscriptionIndex();
        const subs = subsFilters.map((fs, i) => sub(String(i), fs));
        subs.forEach((s) => index.add(s));
        const event = ev(e);
        const expected = subs
          .filter((s) => matchFilters(s.filters, event))
          .map((s) => s.id)
          .sort();
        expect([...index.matching(event)].map((s) => s.id).sort()).toEqual(expected);
      }),
      { numRuns: 300 },
    );
  });

  it('reads no tag of an event while no filter is filed under a tag, and only the filed tag names after', () => {
    const index = new SubscriptionIndex();
    index.add(sub('author', [{ authors: [hex('a')] }]));
    let tagReads = 0;
    const e = ev({
      tags: [
        ['p', hex('b')],
        ['t', 'x'],
      ],
    });
    const counted = Object.defineProperty({ ...e }, 'tags', {
      get: () => {
        tagReads++;
        return e.tags;
      },
    }) as NostrEvent;
    expect([...index.matching(counted)].map((s) => s.id)).toEqual(['author']);
    expect(tagReads).toBe(0);
    // Filed under #t: found through the event's t tag; two of them, one removed, the other still found.
    const t1 = sub('t1', [{ '#t': ['x'] }]);
    const t2 = sub('t2', [{ '#t': ['x', 'y'] }]);
    index.add(t1);
    index.add(t2);
    const both = ev({
      tags: [
        ['t', 'x'],
        ['t', 'y'],
      ],
    });
    expect([...index.matching(both)].map((s) => s.id).sort()).toEqual(['author', 't1', 't2']);
    index.remove(t1);
    expect([...index.matching(both)].map((s) => s.id).sort()).toEqual(['author', 't2']);
    index.remove(t2);
    tagReads = 0;
    index.matching(counted);
    expect(tagReads).toBe(0);
  });
});

describe('deliver', () => {
  /** A connection whose socket records the frames written to it (connection.ts corks and writes them a turn later). */
  const recordingConn = (frames: string[]) =>
    ({ closed: false, ws: { cork: (fn: () => void) => fn(), send: (m: string) => frames.push(m) } }) as unknown as Connection;

  it('builds the EVENT frame once per subscription id, and every subscription gets its own id', async () => {
    const index = new SubscriptionIndex();
    const frames: string[][] = [];
    const names = ['feed', 'feed', 'feed', 'feed', 'other', 'feed'];
    names.forEach((name) => {
      const got: string[] = [];
      frames.push(got);
      index.add({ conn: recordingConn(got), id: name, filters: [{ kinds: [1] }], backlog: null });
    });
    const e = ev({});
    const json = JSON.stringify(e);
    const stringify = vi.spyOn(JSON, 'stringify');
    let n: number;
    try {
      n = deliver(index, e, json);
    } finally {
      // The subscription ids are serialised as JSON strings: one per distinct id, not per subscription.
      expect(stringify).toHaveBeenCalledTimes(2);
      stringify.mockRestore();
    }
    expect(n).toBe(6);
    await new Promise((r) => setImmediate(r));
    expect(frames).toEqual(names.map((name) => [`["EVENT","${name}",${json}]`]));
  });
});
