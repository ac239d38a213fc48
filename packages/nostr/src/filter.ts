import type { NostrEvent } from './event.ts';
import { isHex64 } from './hex.ts';
import { MAX_KIND } from './kinds.ts';

export type Filter = {
  ids?: string[];
  authors?: string[];
  kinds?: number[];
  since?: number;
  until?: number;
  limit?: number;
  [tag: `#${string}`]: string[] | undefined;
};

export type FilterLimits = { maxLimit: number; defaultLimit: number; maxFilterValues?: number };

export type FilterResult = { ok: true; filter: Filter } | { ok: false; reason: string };

const UNSUPPORTED: FilterResult = { ok: false, reason: 'unsupported: filter contains unknown elements' };

function isAsciiLetter(c: number): boolean {
  return (c >= 65 && c <= 90) || (c >= 97 && c <= 122);
}

/** `#x` with a single ASCII letter: the only tag filters NIP-01 defines. */
export function isTagFilterKey(key: string): boolean {
  return key.length === 2 && key.charCodeAt(0) === 35 && isAsciiLetter(key.charCodeAt(1));
}

function listProblem(key: string, v: unknown, maxValues: number): string | undefined {
  if (!Array.isArray(v) || v.length === 0) return `invalid: filter "${key}" must be a non-empty array`;
  if (v.length > maxValues) return `invalid: filter "${key}" has too many values (max ${maxValues})`;
  return undefined;
}

function checkHexList(key: string, v: unknown, maxValues: number): string | undefined {
  const p = listProblem(key, v, maxValues);
  if (p !== undefined) return p;
  const a = v as unknown[];
  for (let i = 0; i < a.length; i++) {
    if (!isHex64(a[i])) return `invalid: filter "${key}" values must be 64-character lowercase hex`;
  }
  return undefined;
}

function checkStringList(key: string, v: unknown, maxValues: number): string | undefined {
  const p = listProblem(key, v, maxValues);
  if (p !== undefined) return p;
  const a = v as unknown[];
  for (let i = 0; i < a.length; i++) {
    if (typeof a[i] !== 'string') return `invalid: filter "${key}" values must be strings`;
  }
  return undefined;
}

function checkKinds(v: unknown, maxValues: number): string | undefined {
  const p = listProblem('kinds', v, maxValues);
  if (p !== undefined) return p;
  const a = v as unknown[];
  for (let i = 0; i < a.length; i++) {
    const k = a[i];
    if (typeof k !== 'number' || !Number.isInteger(k) || k < 0 || k > MAX_KIND) {
      return `invalid: filter "kinds" values must be integers between 0 and ${MAX_KIND}`;
    }
  }
  return undefined;
}

function isNonNegativeInteger(v: unknown): v is number {
  return typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;
}

/**
 * Validates an untrusted filter. The result is a fresh object (the input is never mutated)
 * sharing the already-validated arrays, and always carries the effective limit.
 */
export function checkFilter(x: unknown, limits: FilterLimits): FilterResult {
  if (typeof x !== 'object' || x === null || Array.isArray(x)) {
    return { ok: false, reason: 'invalid: filter must be a JSON object' };
  }
  const o = x as Record<string, unknown>;
  const maxValues = limits.maxFilterValues ?? Number.POSITIVE_INFINITY;
  const out: Filter = {};
  let limit: number | undefined;
  for (const key in o) {
    const v = o[key];
    let problem: string | undefined;
    switch (key) {
      case 'ids':
      case 'authors':
        problem = checkHexList(key, v, maxValues);
        if (problem === undefined) out[key] = v as string[];
        break;
      case 'kinds':
        problem = checkKinds(v, maxValues);
        if (problem === undefined) out.kinds = v as number[];
        break;
      case 'since':
      case 'until':
      case 'limit':
        if (!isNonNegativeInteger(v)) problem = `invalid: filter "${key}" must be a non-negative integer`;
        else if (key === 'limit') limit = v;
        else out[key] = v;
        break;
      default: {
        if (!isTagFilterKey(key)) return UNSUPPORTED;
        const letter = key.charCodeAt(1);
        // NIP-01: #e and #p hold event ids / pubkeys and MUST be exact hex.
        problem = letter === 101 || letter === 112 ? checkHexList(key, v, maxValues) : checkStringList(key, v, maxValues);
        if (problem === undefined) out[key as `#${string}`] = v as string[];
      }
    }
    if (problem !== undefined) return { ok: false, reason: problem };
  }
  out.limit = Math.min(limit ?? limits.defaultLimit, limits.maxLimit);
  return { ok: true, filter: out };
}

function hasTagValue(tags: string[][], name: string, values: string[]): boolean {
  for (let i = 0; i < tags.length; i++) {
    const t = tags[i];
    // Only the first value of a tag is indexed (NIP-01).
    if (t.length > 1 && t[0] === name && values.includes(t[1])) return true;
  }
  return false;
}

/** NIP-01 filter semantics: all present conditions must hold; `limit` plays no part. */
export function matchFilter(f: Filter, ev: NostrEvent): boolean {
  if (f.ids !== undefined && !f.ids.includes(ev.id)) return false;
  if (f.kinds !== undefined && !f.kinds.includes(ev.kind)) return false;
  if (f.authors !== undefined && !f.authors.includes(ev.pubkey)) return false;
  if (f.since !== undefined && ev.created_at < f.since) return false;
  if (f.until !== undefined && ev.created_at > f.until) return false;
  for (const key in f) {
    if (!isTagFilterKey(key)) continue;
    const values = f[key as `#${string}`];
    if (values !== undefined && !hasTagValue(ev.tags, key[1], values)) return false;
  }
  return true;
}

/** Filters of one REQ are OR-ed. */
export function matchFilters(fs: Filter[], ev: NostrEvent): boolean {
  for (let i = 0; i < fs.length; i++) if (matchFilter(fs[i], ev)) return true;
  return false;
}

// Below this size a linear scan beats hashing; above it Sets keep fan-out O(1) per value.
const SET_THRESHOLD = 16;

type Lookup<T> = (v: T) => boolean;

function lookup<T>(values: T[]): Lookup<T> {
  if (values.length <= SET_THRESHOLD) return (v) => values.includes(v);
  const set = new Set(values);
  return (v) => set.has(v);
}

/**
 * Precompiled matcher with the same semantics as matchFilter, for live fan-out where one
 * subscription is tested against every incoming event. The filter must not be mutated afterwards.
 */
export function compileFilter(f: Filter): (ev: NostrEvent) => boolean {
  const ids = f.ids !== undefined ? lookup(f.ids) : undefined;
  const authors = f.authors !== undefined ? lookup(f.authors) : undefined;
  const kinds = f.kinds !== undefined ? lookup(f.kinds) : undefined;
  const since = f.since ?? Number.NEGATIVE_INFINITY;
  const until = f.until ?? Number.POSITIVE_INFINITY;
  const tagNames: string[] = [];
  const tagLookups: Lookup<string>[] = [];
  for (const key in f) {
    const values = f[key as `#${string}`];
    if (isTagFilterKey(key) && values !== undefined) {
      tagNames.push(key[1]);
      tagLookups.push(lookup(values));
    }
  }
  const nTags = tagNames.length;
  return (ev) => {
    if (ev.created_at < since || ev.created_at > until) return false;
    if (kinds !== undefined && !kinds(ev.kind)) return false;
    if (authors !== undefined && !authors(ev.pubkey)) return false;
    if (ids !== undefined && !ids(ev.id)) return false;
    for (let k = 0; k < nTags; k++) {
      const name = tagNames[k];
      const has = tagLookups[k];
      let found = false;
      const tags = ev.tags;
      for (let i = 0; i < tags.length; i++) {
        const t = tags[i];
        if (t.length > 1 && t[0] === name && has(t[1])) {
          found = true;
          break;
        }
      }
      if (!found) return false;
    }
    return true;
  };
}

export function compileFilters(fs: Filter[]): (ev: NostrEvent) => boolean {
  const matchers = fs.map(compileFilter);
  return (ev) => {
    for (let i = 0; i < matchers.length; i++) if (matchers[i](ev)) return true;
    return false;
  };
}
