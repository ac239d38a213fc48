import { finalizeEvent, getPublicKey } from 'nostr-tools';
import type { NostrEvent, ParseLimits } from '../src/index.ts';

export const SK = new Uint8Array(32).fill(7);
export const SK2 = new Uint8Array(32).fill(9);
export const PK = getPublicKey(SK);
export const PK2 = getPublicKey(SK2);

export const LIMITS: ParseLimits = {
  maxTags: 100,
  maxContentLength: 1000,
  maxTagValueLength: 200,
  maxLimit: 500,
  defaultLimit: 100,
  maxFilterValues: 50,
  maxFilters: 5,
  maxSubIdLength: 64,
};

export const HEX64_A = 'a'.repeat(64);
export const HEX64_B = 'b'.repeat(64);
export const HEX128 = 'c'.repeat(128);

export function signed(
  t: { kind?: number; created_at?: number; tags?: string[][]; content?: string } = {},
  sk: Uint8Array = SK,
): NostrEvent {
  const ev = finalizeEvent(
    { kind: t.kind ?? 1, created_at: t.created_at ?? 1_700_000_000, tags: t.tags ?? [], content: t.content ?? 'hello' },
    sk,
  );
  // Strip nostr-tools' verified symbol so the object is exactly what JSON.parse would produce.
  return { id: ev.id, pubkey: ev.pubkey, created_at: ev.created_at, kind: ev.kind, tags: ev.tags, content: ev.content, sig: ev.sig };
}

/** An event that only has the right shape (id/sig are not meaningful). */
export function fake(over: Partial<NostrEvent> = {}): NostrEvent {
  return {
    id: HEX64_A,
    pubkey: HEX64_B,
    created_at: 1000,
    kind: 1,
    tags: [],
    content: '',
    sig: HEX128,
    ...over,
  };
}
