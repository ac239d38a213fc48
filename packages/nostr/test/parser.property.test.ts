import fc from 'fast-check';
import { finalizeEvent } from 'nostr-tools';
import { describe, expect, it } from 'vitest';
import {
  checkEventShape,
  checkFilter,
  eventToJson,
  hasValidId,
  parseClientMessage,
  serializeEvent,
  type ClientMessage,
  type ParseLimits,
} from '../src/index.ts';

const LIMITS: ParseLimits = {
  maxTags: 50,
  maxContentLength: 2000,
  maxTagValueLength: 500,
  maxLimit: 500,
  defaultLimit: 100,
  maxFilterValues: 20,
  maxFilters: 4,
  maxSubIdLength: 64,
};

const KEYS = [new Uint8Array(32).fill(1), new Uint8Array(32).fill(2), new Uint8Array(32).fill(0xfe)];
const VERBS = ['EVENT', 'REQ', 'COUNT', 'CLOSE', 'AUTH'] as const;
const PREFIX = /^(invalid|duplicate|blocked|rate-limited|pow|restricted|auth-required|error|mute|unsupported): /;

function hasExactKeys(o: object, keys: string[]): boolean {
  const own = Object.keys(o).sort();
  return own.length === keys.length && [...keys].sort().every((k, i) => own[i] === k);
}

function isSubId(x: unknown): boolean {
  return typeof x === 'string' && x.length > 0 && [...x].length <= LIMITS.maxSubIdLength;
}

function isHex64(x: unknown): boolean {
  return typeof x === 'string' && /^[0-9a-f]{64}$/.test(x);
}

// Independent of checkEventShape so that a bug there cannot hide behind its own verdict.
function assertEventShape(ev: unknown): void {
  expect(typeof ev === 'object' && ev !== null && !Array.isArray(ev)).toBe(true);
  const e = ev as Record<string, unknown>;
  expect(hasExactKeys(e, ['id', 'pubkey', 'created_at', 'kind', 'tags', 'content', 'sig'])).toBe(true);
  expect(e.id).toMatch(/^[0-9a-f]{64}$/);
  expect(e.pubkey).toMatch(/^[0-9a-f]{64}$/);
  expect(e.sig).toMatch(/^[0-9a-f]{128}$/);
  expect(Number.isSafeInteger(e.created_at) && (e.created_at as number) >= 0).toBe(true);
  expect(Number.isInteger(e.kind) && (e.kind as number) >= 0 && (e.kind as number) <= 65535).toBe(true);
  expect(Array.isArray(e.tags) && e.tags.length <= LIMITS.maxTags).toBe(true);
  for (const t of e.tags as unknown[]) {
    expect(Array.isArray(t) && t.length > 0 && t.every((v) => typeof v === 'string' && [...v].length <= LIMITS.maxTagValueLength!)).toBe(
      true,
    );
  }
  expect(typeof e.content === 'string' && [...e.content].length <= LIMITS.maxContentLength).toBe(true);
}

const FILTER_KEY = /^(ids|authors|kinds|since|until|limit|#[a-zA-Z])$/;
function assertFilter(f: Record<string, unknown>): void {
  for (const [k, v] of Object.entries(f)) {
    expect(k).toMatch(FILTER_KEY);
    if (k === 'since' || k === 'until' || k === 'limit') expect(Number.isSafeInteger(v) && (v as number) >= 0).toBe(true);
    else {
      expect(Array.isArray(v) && v.length > 0 && v.length <= LIMITS.maxFilterValues!).toBe(true);
      for (const x of v as unknown[]) {
        if (k === 'kinds') expect(Number.isInteger(x) && (x as number) >= 0 && (x as number) <= 65535).toBe(true);
        else if (k === 'ids' || k === 'authors' || k === '#e' || k === '#p') expect(x).toMatch(/^[0-9a-f]{64}$/);
        else expect(typeof x).toBe('string');
      }
    }
  }
  expect(f.limit).toBeLessThanOrEqual(LIMITS.maxLimit);
}

/** Exactly one variant of the ClientMessage union, with every field meeting its contract. */
function assertClientMessage(m: ClientMessage): void {
  expect(typeof m).toBe('object');
  switch (m.type) {
    case 'EVENT':
    case 'AUTH':
      expect(hasExactKeys(m, ['type', 'event'])).toBe(true);
      assertEventShape(m.event);
      return;
    case 'EVENT_INVALID':
    case 'AUTH_INVALID':
      expect(hasExactKeys(m, m.id === undefined ? ['type', 'reason'] : ['type', 'id', 'reason'])).toBe(true);
      if (m.id !== undefined) expect(isHex64(m.id)).toBe(true);
      expect(m.reason).toMatch(PREFIX);
      return;
    case 'REQ':
    case 'COUNT':
      expect(hasExactKeys(m, ['type', 'subId', 'filters'])).toBe(true);
      expect(isSubId(m.subId)).toBe(true);
      expect(m.filters.length).toBeGreaterThanOrEqual(1);
      expect(m.filters.length).toBeLessThanOrEqual(LIMITS.maxFilters);
      for (const f of m.filters) {
        assertFilter(f);
        // Validation is idempotent: a parsed filter is its own normal form.
        expect(checkFilter(f, LIMITS)).toEqual({ ok: true, filter: f });
      }
      return;
    case 'SUB_INVALID':
      expect(hasExactKeys(m, ['type', 'verb', 'subId', 'reason'])).toBe(true);
      expect(['REQ', 'COUNT']).toContain(m.verb);
      expect(isSubId(m.subId)).toBe(true);
      expect(m.reason).toMatch(PREFIX);
      return;
    case 'CLOSE':
      expect(hasExactKeys(m, ['type', 'subId'])).toBe(true);
      expect(isSubId(m.subId)).toBe(true);
      return;
    case 'NOTICE':
      expect(hasExactKeys(m, ['type', 'reason'])).toBe(true);
      expect(m.reason).toMatch(PREFIX);
      return;
    default:
      throw new Error(`not a ClientMessage: ${JSON.stringify(m)}`);
  }
}

function check(text: string): ClientMessage {
  const m = parseClientMessage(text, LIMITS);
  assertClientMessage(m);
  return m;
}

// One code point or lone surrogate, biased toward characters that stress JSON escaping.
const nastyChar = fc.oneof(
  fc.string({ unit: 'binary', minLength: 1, maxLength: 1 }),
  fc.integer({ min: 0, max: 0x1f }).map((c) => String.fromCharCode(c)),
  fc.integer({ min: 0xd800, max: 0xdfff }).map((c) => String.fromCharCode(c)),
  fc.constantFrom('"', '\\', '/', '\u2028', '\u2029', '\u007f', '😀', 'é', '\ufeff'),
  fc.string({ unit: 'grapheme-ascii', minLength: 1, maxLength: 1 }),
);
const nastyString = (maxLength: number) => fc.string({ unit: nastyChar, maxLength });

const hex64 = fc.string({ unit: fc.constantFrom(...'0123456789abcdef'), minLength: 64, maxLength: 64 });
const filterish = fc.dictionary(
  fc.constantFrom('ids', 'authors', 'kinds', 'since', 'until', 'limit', '#e', '#p', '#t', '#Z', '#tt', 'search'),
  fc.oneof(
    fc.jsonValue({ maxDepth: 2 }),
    fc.array(hex64, { maxLength: 3 }),
    fc.array(fc.integer({ min: -2, max: 70000 }), { maxLength: 3 }),
    fc.integer({ min: -5, max: 2 ** 40 }),
    fc.array(nastyString(8), { maxLength: 3 }),
  ),
  { maxKeys: 5 },
);

const template = fc.record({
  kind: fc.integer({ min: 0, max: 65535 }),
  created_at: fc.oneof(fc.integer({ min: 0, max: 2 ** 31 }), fc.constantFrom(0, Number.MAX_SAFE_INTEGER)),
  content: nastyString(200),
  tags: fc.array(fc.array(nastyString(20), { minLength: 1, maxLength: 4 }), { maxLength: 8 }),
});

function sign(t: { kind: number; created_at: number; content: string; tags: string[][] }, key: number) {
  const ev = finalizeEvent({ ...t }, KEYS[key]);
  return { id: ev.id, pubkey: ev.pubkey, created_at: ev.created_at, kind: ev.kind, tags: ev.tags, content: ev.content, sig: ev.sig };
}

// Schnorr signing dominates run time, so mutation tests draw from a fixed pool of signed events.
const POOL = fc.sample(fc.tuple(template, fc.nat(KEYS.length - 1)), { numRuns: 24, seed: 20240601 }).map(([t, k]) => sign(t, k));
const pooled = fc.constantFrom(...POOL);

type Json = unknown;
type Slot = { parent: Record<string, Json> | Json[]; key: string | number };

function slots(root: Json, out: Slot[] = []): Slot[] {
  if (Array.isArray(root)) {
    root.forEach((v, i) => {
      out.push({ parent: root, key: i });
      slots(v, out);
    });
  } else if (typeof root === 'object' && root !== null) {
    for (const k of Object.keys(root)) {
      out.push({ parent: root as Record<string, Json>, key: k });
      slots((root as Record<string, Json>)[k], out);
    }
  }
  return out;
}

type Mutation = { at: number; op: 'replace' | 'delete' | 'insert' | 'string' | 'number'; value: Json; key: string; n: number };

const mutation: fc.Arbitrary<Mutation> = fc.record({
  at: fc.nat(),
  op: fc.constantFrom('replace', 'delete', 'insert', 'string', 'number'),
  value: fc.oneof(fc.jsonValue({ maxDepth: 2 }), nastyString(10), hex64, fc.constant(null), fc.constant([])),
  key: fc.oneof(fc.constantFrom('id', 'kind', 'tags', 'extra', '__proto__', '#e', 'limit'), fc.string({ maxLength: 4 })),
  n: fc.integer({ min: -3, max: 3 }),
});

function mutate(root: Json, muts: Mutation[]): Json {
  const copy = structuredClone(root);
  for (const m of muts) {
    const all = slots(copy);
    if (all.length === 0) break;
    const { parent, key } = all[m.at % all.length];
    const p = parent as Record<string | number, Json>;
    const cur = p[key];
    switch (m.op) {
      case 'replace':
        p[key] = structuredClone(m.value);
        break;
      case 'delete':
        if (Array.isArray(parent)) parent.splice(key as number, 1);
        else delete p[key];
        break;
      case 'insert':
        if (Array.isArray(parent)) parent.splice(key as number, 0, structuredClone(m.value));
        else
          Object.defineProperty(parent, m.key, { value: structuredClone(m.value), enumerable: true, writable: true, configurable: true });
        break;
      case 'string':
        // Small edits to strings: truncate, extend, change case, or flip one character.
        if (typeof cur === 'string') {
          p[key] =
            m.n < 0
              ? cur.slice(0, Math.max(0, cur.length + m.n))
              : m.n === 0
                ? cur.toUpperCase()
                : m.n === 1
                  ? cur + String(m.value).slice(0, 3)
                  : cur.slice(0, 1) + (cur[1] === '0' ? '1' : '0') + cur.slice(2);
        } else p[key] = String(cur);
        break;
      case 'number':
        p[key] = typeof cur === 'number' ? [cur + m.n, -cur, cur + 0.5, 2 ** 53, 65536][Math.abs(m.n) % 5] : m.n;
        break;
    }
  }
  return copy;
}

describe('parseClientMessage properties', () => {
  it('never throws on arbitrary strings', () => {
    fc.assert(
      fc.property(fc.oneof(fc.string({ maxLength: 200 }), nastyString(200), fc.string({ unit: 'binary', maxLength: 100 })), (s) => {
        check(s);
      }),
      { numRuns: 1000 },
    );
  });

  it('never throws on arbitrary JSON texts and values', () => {
    fc.assert(
      fc.property(
        fc.oneof(
          fc.json(),
          fc.jsonValue().map((v) => JSON.stringify(v) ?? 'null'),
        ),
        (s) => {
          check(s);
        },
      ),
      { numRuns: 500 },
    );
  });

  it('never throws on arrays starting with a known verb', () => {
    fc.assert(
      fc.property(
        fc.constantFrom(...VERBS),
        fc.array(fc.oneof(fc.jsonValue({ maxDepth: 3 }), filterish, nastyString(70), hex64), { maxLength: 7 }),
        (verb, rest) => {
          const m = check(JSON.stringify([verb, ...rest]));
          // The verb decides which family of answers is possible.
          const allowed: Record<(typeof VERBS)[number], string[]> = {
            EVENT: ['EVENT', 'EVENT_INVALID'],
            AUTH: ['AUTH', 'AUTH_INVALID'],
            REQ: ['REQ', 'SUB_INVALID', 'NOTICE'],
            COUNT: ['COUNT', 'SUB_INVALID', 'NOTICE'],
            CLOSE: ['CLOSE', 'NOTICE'],
          };
          expect(allowed[verb]).toContain(m.type);
          if (m.type === 'SUB_INVALID') expect(m.verb).toBe(verb);
        },
      ),
      { numRuns: 1000 },
    );
  });

  it('REQ/COUNT with a valid subscription id always answer REQ/COUNT or SUB_INVALID for that id', () => {
    fc.assert(
      fc.property(
        fc.constantFrom('REQ', 'COUNT'),
        fc.string({ minLength: 1, maxLength: 64 }),
        fc.array(filterish, { maxLength: 6 }),
        (verb, subId, filters) => {
          const m = check(JSON.stringify([verb, subId, ...filters]));
          expect(m.type === verb || m.type === 'SUB_INVALID').toBe(true);
          if (m.type === 'SUB_INVALID' || m.type === 'REQ' || m.type === 'COUNT') expect(m.subId).toBe(subId);
        },
      ),
      { numRuns: 500 },
    );
  });

  it('valid signed events always parse as EVENT (and AUTH) with the same id', () => {
    fc.assert(
      fc.property(template, fc.nat(KEYS.length - 1), (t, key) => {
        const ev = sign(t, key);
        for (const text of [JSON.stringify(['EVENT', ev]), `["EVENT",${eventToJson(ev)}]`]) {
          const m = check(text);
          expect(m.type).toBe('EVENT');
          if (m.type !== 'EVENT') return;
          expect(m.event.id).toBe(ev.id);
          expect(m.event).toEqual(ev);
          expect(hasValidId(m.event)).toBe(true);
          expect(eventToJson(m.event)).toBe(eventToJson(ev));
        }
        const a = check(JSON.stringify(['AUTH', ev]));
        expect(a.type === 'AUTH' && a.event.id).toBe(ev.id);
      }),
      { numRuns: 150 },
    );
  });

  it('deep mutations of a valid EVENT message never throw and keep the id when it is intact', () => {
    fc.assert(
      fc.property(pooled, fc.array(mutation, { minLength: 1, maxLength: 4 }), (ev, muts) => {
        const mutated = mutate(['EVENT', ev], muts);
        const m = check(JSON.stringify(mutated));
        const inner = Array.isArray(mutated) ? mutated[1] : undefined;
        const innerId = typeof inner === 'object' && inner !== null ? (inner as { id?: unknown }).id : undefined;
        if (m.type === 'EVENT') {
          expect(checkEventShape(m.event, LIMITS).ok).toBe(true);
          // Any change to a committed field, or to the id, must be caught by the id check.
          expect(hasValidId(m.event)).toBe(m.event.id === ev.id && serializeEvent(m.event) === serializeEvent(ev));
        } else if (m.type === 'EVENT_INVALID' && m.id !== undefined) {
          expect(m.id).toBe(innerId);
        }
      }),
      { numRuns: 500 },
    );
  });

  it('deep mutations of valid REQ messages never throw', () => {
    const base = [
      'REQ',
      'sub',
      { kinds: [1, 30023], authors: ['f'.repeat(64)], '#t': ['x'], since: 10, until: 20, limit: 5 },
      { ids: ['0'.repeat(64)] },
    ];
    fc.assert(
      fc.property(fc.array(mutation, { minLength: 1, maxLength: 5 }), (muts) => {
        check(JSON.stringify(mutate(base, muts)));
      }),
      { numRuns: 500 },
    );
  });

  it('textual corruption of valid messages never throws', () => {
    fc.assert(
      fc.property(pooled, fc.nat(), fc.nat(4), nastyString(3), (ev, pos, cut, ins) => {
        const text = JSON.stringify(['EVENT', ev]);
        const i = pos % (text.length + 1);
        check(text.slice(0, i) + ins + text.slice(i + cut));
      }),
      { numRuns: 1000 },
    );
  });
});
