// Lookup table instead of a regex: hex checks run several times per event on the hot path.
const LOWER_HEX = new Uint8Array(128);
for (let c = 48; c <= 57; c++) LOWER_HEX[c] = 1;
for (let c = 97; c <= 102; c++) LOWER_HEX[c] = 1;

/** True when `s` is exactly `len` lowercase hex characters (NIP-01 forbids uppercase). */
export function isLowerHex(s: string, len: number): boolean {
  if (s.length !== len) return false;
  for (let i = 0; i < len; i++) {
    const c = s.charCodeAt(i);
    if (c >= 128 || LOWER_HEX[c] === 0) return false;
  }
  return true;
}

/** 32-byte ids and pubkeys. */
export function isHex64(x: unknown): x is string {
  return typeof x === 'string' && isLowerHex(x, 64);
}

/** 64-byte Schnorr signatures. */
export function isHex128(x: unknown): x is string {
  return typeof x === 'string' && isLowerHex(x, 128);
}

/**
 * Parses a plain non-negative decimal integer ("0", "1700000000"). Signs, spaces, decimals,
 * exponents and anything Number() would silently accept are rejected so that tag values
 * have exactly one meaning. Leading zeros are allowed (they are still unambiguous).
 */
export function parseDecimal(s: string): number | undefined {
  const n = s.length;
  if (n === 0 || n > 16) return undefined;
  let v = 0;
  for (let i = 0; i < n; i++) {
    const d = s.charCodeAt(i) - 48;
    if (d < 0 || d > 9) return undefined;
    v = v * 10 + d;
  }
  return Number.isSafeInteger(v) ? v : undefined;
}

/**
 * Whether `s` has more than `max` Unicode code points. Cheap in the common case: the UTF-16
 * length bounds the code point count from above, and half of it bounds it from below.
 */
export function exceedsCodePoints(s: string, max: number): boolean {
  const len = s.length;
  if (len <= max) return false;
  if (len > 2 * max) return true;
  let count = len;
  for (let i = 0; i < len - 1; i++) {
    const c = s.charCodeAt(i);
    if (c >= 0xd800 && c <= 0xdbff) {
      const d = s.charCodeAt(i + 1);
      if (d >= 0xdc00 && d <= 0xdfff) {
        count--;
        i++;
      }
    }
  }
  return count > max;
}
