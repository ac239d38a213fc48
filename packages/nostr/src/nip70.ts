import type { NostrEvent } from './event.ts';

/** NIP-70: the tag must be exactly ["-"]; ["-", "x"] is some other tag. */
export function isProtected(ev: NostrEvent): boolean {
  const tags = ev.tags;
  for (let i = 0; i < tags.length; i++) {
    const t = tags[i];
    if (t.length === 1 && t[0] === '-') return true;
  }
  return false;
}
