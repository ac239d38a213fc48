/**
 * What the recent-events cache's property tests share (recent-cache.test.ts, for author
 * filters; recent-cache-tags.test.ts, for tag filters): unsigned events with real ids, fresh
 * authors, and the check that every answer read through the cache is the store's.
 */
import { generateSecretKey, getEventHash, getPublicKey } from 'nostr-tools/pure';
import { expect } from 'vitest';
import { queryEvents, type Database, type QueryFilter } from '@paidrelay/db';
import type { NostrEvent } from '@paidrelay/nostr';
import type { RecentCache } from '../src/recent-cache.ts';

export const BASE = 1_700_000_000;
/** The reads' now: events expiring before it are hidden, later ones not yet. */
export const QNOW = BASE + 100;
const SIG = '0'.repeat(128);

/** An event with its real id and a dummy signature (the cache and the store never verify). */
export function event(pubkey: string, t: { kind: number; created_at: number; tags?: string[][]; content?: string }): NostrEvent {
  const base = { pubkey, kind: t.kind, created_at: t.created_at, tags: t.tags ?? [], content: t.content ?? '' };
  return { ...base, id: getEventHash(base), sig: SIG };
}

export const authorsOf = (n: number) => Array.from({ length: n }, () => getPublicKey(generateSecretKey()));

/**
 * Every filter set read three times through the cache (a second read loads windows, the third
 * can hit), each answer equal to queryEvents's on the store; returns how many the cache answered.
 */
export async function checkAnswers(db: Database, cache: RecentCache, sets: QueryFilter[][]): Promise<number> {
  let hits = 0;
  for (const filters of sets) {
    const expected = await queryEvents(db.kysely, filters, QNOW);
    for (let i = 0; i < 3; i++) {
      let fellBack = false;
      const got = await cache.read(filters, QNOW, () => {
        fellBack = true;
        return queryEvents(db.kysely, filters, QNOW);
      });
      expect(got, JSON.stringify(filters)).toEqual(expected);
      if (!fellBack) hits++;
    }
  }
  return hits;
}
