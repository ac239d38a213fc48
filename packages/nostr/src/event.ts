import { createHash } from 'node:crypto';
import { exceedsCodePoints, isHex128, isHex64 } from './hex.ts';
import { kindClass, MAX_KIND } from './kinds.ts';

export type NostrEvent = {
  id: string;
  pubkey: string;
  created_at: number;
  kind: number;
  tags: string[][];
  content: string;
  sig: string;
};

export type UnsignedEventFields = Pick<NostrEvent, 'pubkey' | 'created_at' | 'kind' | 'tags' | 'content'>;

/**
 * NIP-01 commitment array. JSON.stringify is used deliberately: it emits exactly the NIP's
 * short escapes (\n \" \\ \r \t \b \f), \u00XX for the remaining C0 controls and for lone
 * surrogates, and everything else verbatim. That is what nostr-tools, go-nostr and rust-nostr
 * hash, so ids computed here agree with the ids clients actually sign (a raw control byte, as a
 * literal reading of "verbatim" would require, is not even valid JSON).
 */
export function serializeEvent(ev: UnsignedEventFields): string {
  return JSON.stringify([0, ev.pubkey, ev.created_at, ev.kind, ev.tags, ev.content]);
}

export function computeEventId(ev: UnsignedEventFields): string {
  return createHash('sha256').update(serializeEvent(ev), 'utf8').digest('hex');
}

export function hasValidId(ev: NostrEvent): boolean {
  return computeEventId(ev) === ev.id;
}

export type EventLimits = { maxTags: number; maxContentLength: number; maxTagValueLength?: number };

export type EventShapeResult = { ok: true; event: NostrEvent } | { ok: false; reason: string; id?: string };

function bad(reason: string, id: string | undefined): EventShapeResult {
  return id === undefined ? { ok: false, reason } : { ok: false, reason, id };
}

/**
 * Structural validation of an untrusted event (typically straight out of JSON.parse). The input
 * object itself is returned on success to avoid a copy; id and signature are NOT verified here.
 */
export function checkEventShape(x: unknown, limits: EventLimits): EventShapeResult {
  if (typeof x !== 'object' || x === null || Array.isArray(x)) {
    return bad('invalid: event must be a JSON object', undefined);
  }
  const o = x as Record<string, unknown>;
  // The id is checked first so every later failure can still be answered with OK false.
  if (!isHex64(o.id)) return bad('invalid: event id must be 64 lowercase hex characters', undefined);
  const id = o.id;

  for (const key in o) {
    switch (key) {
      case 'id':
      case 'pubkey':
      case 'created_at':
      case 'kind':
      case 'tags':
      case 'content':
      case 'sig':
        break;
      default:
        return bad(`invalid: unexpected event field ${JSON.stringify(key.slice(0, 64))}`, id);
    }
  }

  if (!isHex64(o.pubkey)) return bad('invalid: event pubkey must be 64 lowercase hex characters', id);

  const createdAt = o.created_at;
  if (typeof createdAt !== 'number' || !Number.isSafeInteger(createdAt) || createdAt < 0) {
    return bad('invalid: event created_at must be a non-negative integer', id);
  }

  const kind = o.kind;
  if (typeof kind !== 'number' || !Number.isInteger(kind) || kind < 0 || kind > MAX_KIND) {
    return bad(`invalid: event kind must be an integer between 0 and ${MAX_KIND}`, id);
  }

  const tags = o.tags;
  if (!Array.isArray(tags)) return bad('invalid: event tags must be an array', id);
  if (tags.length > limits.maxTags) return bad(`invalid: too many tags (max ${limits.maxTags})`, id);
  const maxValue = limits.maxTagValueLength;
  for (let i = 0; i < tags.length; i++) {
    const tag: unknown = tags[i];
    if (!Array.isArray(tag) || tag.length === 0) {
      return bad(`invalid: tag ${i} must be a non-empty array of strings`, id);
    }
    for (let j = 0; j < tag.length; j++) {
      const v: unknown = tag[j];
      if (typeof v !== 'string') return bad(`invalid: tag ${i} must be a non-empty array of strings`, id);
      if (maxValue !== undefined && exceedsCodePoints(v, maxValue)) {
        return bad(`invalid: tag ${i} has a value longer than ${maxValue} characters`, id);
      }
    }
  }

  const content = o.content;
  if (typeof content !== 'string') return bad('invalid: event content must be a string', id);
  if (exceedsCodePoints(content, limits.maxContentLength)) {
    return bad(`invalid: content is longer than ${limits.maxContentLength} characters`, id);
  }

  if (!isHex128(o.sig)) return bad('invalid: event sig must be 128 lowercase hex characters', id);

  return { ok: true, event: o as NostrEvent };
}

export function dTag(ev: NostrEvent): string {
  const tags = ev.tags;
  for (let i = 0; i < tags.length; i++) {
    const t = tags[i];
    if (t[0] === 'd') return t.length > 1 ? t[1] : '';
  }
  return '';
}

/** NIP-01 `a`-tag address, the identity under which replaceable/addressable events replace each other. */
export function addressOf(ev: NostrEvent): string | undefined {
  const cls = kindClass(ev.kind);
  if (cls === 'addressable') return `${ev.kind}:${ev.pubkey}:${dTag(ev)}`;
  if (cls === 'replaceable') return `${ev.kind}:${ev.pubkey}:`;
  return undefined;
}

/** Wire JSON in the canonical NIP-01 key order, suitable for storing and later sending verbatim. */
export function eventToJson(ev: NostrEvent): string {
  return JSON.stringify({
    id: ev.id,
    pubkey: ev.pubkey,
    created_at: ev.created_at,
    kind: ev.kind,
    tags: ev.tags,
    content: ev.content,
    sig: ev.sig,
  });
}

/** What the store's order and a cache's index read of a stored event, without parsing the rest. */
export type StoredHead = { id: string; pubkey: string; created_at: number; kind: number };

const HEAD_ID = '{"id":"';
const HEAD_PUBKEY = '","pubkey":"';
const HEAD_CREATED_AT = '","created_at":';
const HEAD_KIND = ',"kind":';
const HEAD_TAGS = ',"tags":';

/** A canonical decimal safe integer (no sign, no leading zero) starting at `at`, and where it ends. */
function decimalAt(s: string, at: number): [value: number, end: number] | undefined {
  let end = at;
  while (end < s.length && end - at <= 16) {
    const c = s.charCodeAt(end);
    if (c < 48 || c > 57) break;
    end++;
  }
  if (end === at || (s.charCodeAt(at) === 48 && end - at > 1)) return undefined;
  const value = Number(s.slice(at, end));
  return Number.isSafeInteger(value) ? [value, end] : undefined;
}

/**
 * The id, pubkey, created_at and kind of an event's JSON as `eventToJson` writes it (the stored
 * form), read at their places instead of parsing the whole text: `undefined` when the text does
 * not start that way (then parse it). A stored event's id and pubkey are lowercase hex, written
 * by us, so the 64 characters between the quotes are taken as they are.
 */
export function storedHead(raw: string): StoredHead | undefined {
  if (!raw.startsWith(HEAD_ID) || !raw.startsWith(HEAD_PUBKEY, 71) || !raw.startsWith(HEAD_CREATED_AT, 147)) return undefined;
  const created = decimalAt(raw, 162);
  if (created === undefined || !raw.startsWith(HEAD_KIND, created[1])) return undefined;
  const kind = decimalAt(raw, created[1] + HEAD_KIND.length);
  if (kind === undefined || !raw.startsWith(HEAD_TAGS, kind[1])) return undefined;
  return { id: raw.slice(7, 71), pubkey: raw.slice(83, 147), created_at: created[0], kind: kind[0] };
}
