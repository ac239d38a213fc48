import type { NostrEvent } from './event.ts';
import { parseDecimal } from './hex.ts';

function nibble(c: number): number {
  if (c >= 48 && c <= 57) return c - 48;
  if (c >= 97 && c <= 102) return c - 87;
  if (c >= 65 && c <= 70) return c - 55;
  return -1;
}

/** NIP-13 difficulty: leading zero bits of the hex id. Counting stops at the first non-hex character. */
export function powDifficulty(id: string): number {
  let bits = 0;
  for (let i = 0; i < id.length; i++) {
    const n = nibble(id.charCodeAt(i));
    if (n === 0) {
      bits += 4;
      continue;
    }
    if (n > 0) bits += Math.clz32(n) - 28;
    break;
  }
  return bits;
}

/** Target difficulty committed in the first `nonce` tag (third element), when it is a plain integer. */
export function committedTarget(ev: NostrEvent): number | undefined {
  const tags = ev.tags;
  for (let i = 0; i < tags.length; i++) {
    const t = tags[i];
    if (t[0] === 'nonce') return t.length > 2 ? parseDecimal(t[2]) : undefined;
  }
  return undefined;
}
