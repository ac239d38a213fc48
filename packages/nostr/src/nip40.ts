import type { NostrEvent } from './event.ts';
import { parseDecimal } from './hex.ts';

/** Expiration from the first `expiration` tag; a malformed value counts as no expiration. */
export function expirationOf(ev: NostrEvent): number | undefined {
  const tags = ev.tags;
  for (let i = 0; i < tags.length; i++) {
    const t = tags[i];
    if (t[0] === 'expiration') return t.length > 1 ? parseDecimal(t[1]) : undefined;
  }
  return undefined;
}

/** The expiration timestamp is the moment the event stops being served, hence `<=`. */
export function isExpired(ev: NostrEvent, now: number): boolean {
  const exp = expirationOf(ev);
  return exp !== undefined && exp <= now;
}
