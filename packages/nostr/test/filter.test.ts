import { describe, expect, it } from 'vitest';
import { checkFilter, compileFilter, compileFilters, matchFilter, matchFilters, type Filter } from '../src/index.ts';
import { fake, HEX64_A, HEX64_B } from './helpers.ts';

const FL = { maxLimit: 500, defaultLimit: 100, maxFilterValues: 3 };
const HEX64_C = 'c'.repeat(64);
const UNSUPPORTED = { ok: false, reason: 'unsupported: filter contains unknown elements' };

describe('checkFilter', () => {
  it('accepts every known key and defaults the limit', () => {
    const input = {
      ids: [HEX64_A],
      authors: [HEX64_B, HEX64_C],
      kinds: [0, 65535],
      since: 0,
      until: 10,
      '#e': [HEX64_A],
      '#p': [HEX64_B],
      '#t': ['nostr', ''],
      '#Z': ['x'],
    };
    expect(checkFilter(input, FL)).toEqual({ ok: true, filter: { ...input, limit: 100 } });
  });

  it('defaults limit to defaultLimit, keeps smaller limits, clamps larger ones silently', () => {
    expect(checkFilter({}, FL)).toEqual({ ok: true, filter: { limit: 100 } });
    expect(checkFilter({ limit: 0 }, FL)).toEqual({ ok: true, filter: { limit: 0 } });
    expect(checkFilter({ limit: 42 }, FL)).toEqual({ ok: true, filter: { limit: 42 } });
    expect(checkFilter({ limit: 500 }, FL)).toEqual({ ok: true, filter: { limit: 500 } });
    expect(checkFilter({ limit: 501 }, FL)).toEqual({ ok: true, filter: { limit: 500 } });
    expect(checkFilter({ limit: 1e9 }, FL)).toEqual({ ok: true, filter: { limit: 500 } });
    expect(checkFilter({}, { maxLimit: 10, defaultLimit: 100 })).toEqual({ ok: true, filter: { limit: 10 } });
  });

  it('does not mutate the input', () => {
    const input = { kinds: [1], limit: 10_000 };
    const copy = structuredClone(input);
    const r = checkFilter(input, FL);
    expect(input).toEqual(copy);
    expect(r.ok && r.filter).not.toBe(input);
  });

  it('rejects unknown keys as unsupported', () => {
    for (const key of ['search', 'foo', '#', '#ab', '#1', '#é', 'e', '__proto__', 'ids ', 'Kinds', '#-']) {
      expect(checkFilter(JSON.parse(`{${JSON.stringify(key)}: ["x"]}`), FL)).toEqual(UNSUPPORTED);
    }
  });

  it('rejects non-objects', () => {
    for (const x of [null, 1, 'x', [], [{}], true]) {
      expect(checkFilter(x, FL)).toEqual({ ok: false, reason: 'invalid: filter must be a JSON object' });
    }
  });

  const invalid: [string, Record<string, unknown>, string][] = [
    ['ids not array', { ids: HEX64_A }, 'invalid: filter "ids" must be a non-empty array'],
    ['empty ids', { ids: [] }, 'invalid: filter "ids" must be a non-empty array'],
    ['short id prefix', { ids: ['aaaa'] }, 'invalid: filter "ids" values must be 64-character lowercase hex'],
    ['uppercase author', { authors: ['A'.repeat(64)] }, 'invalid: filter "authors" values must be 64-character lowercase hex'],
    ['number author', { authors: [1] }, 'invalid: filter "authors" values must be 64-character lowercase hex'],
    ['#e not hex', { '#e': ['note1xyz'] }, 'invalid: filter "#e" values must be 64-character lowercase hex'],
    ['#p not hex', { '#p': [HEX64_A, 'npub1'] }, 'invalid: filter "#p" values must be 64-character lowercase hex'],
    ['#t number', { '#t': [1] }, 'invalid: filter "#t" values must be strings'],
    ['#t empty', { '#t': [] }, 'invalid: filter "#t" must be a non-empty array'],
    ['#t string', { '#t': 'x' }, 'invalid: filter "#t" must be a non-empty array'],
    ['kinds string', { kinds: ['1'] }, 'invalid: filter "kinds" values must be integers between 0 and 65535'],
    ['kinds negative', { kinds: [-1] }, 'invalid: filter "kinds" values must be integers between 0 and 65535'],
    ['kinds too big', { kinds: [65536] }, 'invalid: filter "kinds" values must be integers between 0 and 65535'],
    ['kinds fractional', { kinds: [1.5] }, 'invalid: filter "kinds" values must be integers between 0 and 65535'],
    ['since negative', { since: -1 }, 'invalid: filter "since" must be a non-negative integer'],
    ['until string', { until: '5' }, 'invalid: filter "until" must be a non-negative integer'],
    ['until null', { until: null }, 'invalid: filter "until" must be a non-negative integer'],
    ['limit fractional', { limit: 1.5 }, 'invalid: filter "limit" must be a non-negative integer'],
    ['limit negative', { limit: -1 }, 'invalid: filter "limit" must be a non-negative integer'],
    ['too many values', { kinds: [1, 2, 3, 4] }, 'invalid: filter "kinds" has too many values (max 3)'],
    ['too many tag values', { '#t': ['a', 'b', 'c', 'd'] }, 'invalid: filter "#t" has too many values (max 3)'],
  ];
  it.each(invalid)('rejects %s', (_n, x, reason) => {
    expect(checkFilter(x, FL)).toEqual({ ok: false, reason });
  });

  it('#E and #P are free-form (only #e/#p are defined as hex)', () => {
    expect(checkFilter({ '#E': ['anything'], '#P': ['x'] }, FL).ok).toBe(true);
  });
});

describe('matchFilter', () => {
  const ev = fake({
    id: HEX64_A,
    pubkey: HEX64_B,
    kind: 7,
    created_at: 1000,
    tags: [['e', HEX64_C, 'wss://r'], ['t', 'nostr', 'zap'], ['t', 'relay'], ['p'], ['subject', 'hi']],
  });

  it('empty filter matches everything', () => {
    expect(matchFilter({}, ev)).toBe(true);
  });

  it('ids / authors / kinds', () => {
    expect(matchFilter({ ids: [HEX64_C, HEX64_A] }, ev)).toBe(true);
    expect(matchFilter({ ids: [HEX64_C] }, ev)).toBe(false);
    expect(matchFilter({ authors: [HEX64_B] }, ev)).toBe(true);
    expect(matchFilter({ authors: [HEX64_A] }, ev)).toBe(false);
    expect(matchFilter({ kinds: [1, 7] }, ev)).toBe(true);
    expect(matchFilter({ kinds: [1] }, ev)).toBe(false);
    expect(matchFilter({ ids: [] }, ev)).toBe(false);
  });

  it('since / until are inclusive', () => {
    expect(matchFilter({ since: 1000 }, ev)).toBe(true);
    expect(matchFilter({ since: 1001 }, ev)).toBe(false);
    expect(matchFilter({ until: 1000 }, ev)).toBe(true);
    expect(matchFilter({ until: 999 }, ev)).toBe(false);
    expect(matchFilter({ since: 1000, until: 1000 }, ev)).toBe(true);
    expect(matchFilter({ since: 0 }, ev)).toBe(true);
    expect(matchFilter({ until: 0 }, ev)).toBe(false);
  });

  it('tag filters look at the first value only', () => {
    expect(matchFilter({ '#e': [HEX64_C] }, ev)).toBe(true);
    expect(matchFilter({ '#t': ['relay'] }, ev)).toBe(true);
    expect(matchFilter({ '#t': ['x', 'nostr'] }, ev)).toBe(true);
    expect(matchFilter({ '#t': ['zap'] }, ev)).toBe(false);
    expect(matchFilter({ '#e': ['wss://r'] }, ev)).toBe(false);
    expect(matchFilter({ '#p': [''] }, ev)).toBe(false);
    expect(matchFilter({ '#T': ['nostr'] }, ev)).toBe(false);
    expect(matchFilter({ '#x': ['nostr'] }, ev)).toBe(false);
  });

  it('ignores multi-letter tag keys and limit', () => {
    expect(matchFilter({ '#subject': ['nope'] } as Filter, ev)).toBe(true);
    expect(matchFilter({ '#tt': ['nope'], limit: 0 } as Filter, ev)).toBe(true);
    expect(matchFilter({ '#t': undefined }, ev)).toBe(true);
  });

  it('all conditions must hold', () => {
    expect(matchFilter({ kinds: [7], authors: [HEX64_B], '#t': ['nostr'], '#e': [HEX64_C], since: 1, until: 2000 }, ev)).toBe(true);
    expect(matchFilter({ kinds: [7], authors: [HEX64_B], '#t': ['nostr'], '#e': [HEX64_A] }, ev)).toBe(false);
    expect(matchFilter({ kinds: [7], authors: [HEX64_A], '#t': ['nostr'] }, ev)).toBe(false);
  });

  it('matchFilters ORs filters', () => {
    expect(matchFilters([{ kinds: [1] }, { kinds: [7] }], ev)).toBe(true);
    expect(matchFilters([{ kinds: [1] }, { authors: [HEX64_A] }], ev)).toBe(false);
    expect(matchFilters([], ev)).toBe(false);
  });

  it('compileFilter agrees with matchFilter (small and large lists)', () => {
    const many = Array.from({ length: 40 }, (_, i) => i.toString(16).padStart(64, '0'));
    const filters: Filter[] = [
      {},
      { kinds: [7] },
      { kinds: [1] },
      { since: 1000, until: 1000 },
      { since: 1001 },
      { until: 999 },
      { ids: [...many, HEX64_A] },
      { ids: many },
      { authors: [...many, HEX64_B], '#t': [...many, 'relay'] },
      { '#t': many },
      { '#t': ['zap'] },
      { '#e': [HEX64_C], '#t': ['nostr'] },
      { '#subject': ['x'] } as Filter,
    ];
    for (const f of filters) expect(compileFilter(f)(ev), JSON.stringify(f)).toBe(matchFilter(f, ev));
    expect(compileFilters([{ kinds: [1] }, { kinds: [7] }])(ev)).toBe(true);
    expect(compileFilters([{ kinds: [1] }])(ev)).toBe(false);
  });
});
