import type { NostrEvent } from './event.ts';
import { isHex64, isLowerHex, parseDecimal } from './hex.ts';
import { KIND_DELETION, kindClass, MAX_KIND } from './kinds.ts';

export type Address = { kind: number; pubkey: string; d: string };

/**
 * Parses a NIP-01 address `<kind>:<pubkey>:<d>` (the d part may itself contain colons).
 * Only the canonical spelling is accepted (no leading zeros in kind) so that the string can be
 * compared directly with addressOf().
 */
export function parseAddress(a: string): Address | undefined {
  const c1 = a.indexOf(':');
  if (c1 <= 0 || c1 > 5 || a.charCodeAt(c1 + 65) !== 58) return undefined;
  const kindStr = a.slice(0, c1);
  const kind = parseDecimal(kindStr);
  if (kind === undefined || kind > MAX_KIND || (kindStr.length > 1 && kindStr.charCodeAt(0) === 48)) return undefined;
  const pubkey = a.slice(c1 + 1, c1 + 65);
  if (!isLowerHex(pubkey, 64)) return undefined;
  return { kind, pubkey, d: a.slice(c1 + 66) };
}

/**
 * What a kind-5 deletion request asks to delete. Addresses are only returned when they point
 * at a replaceable/addressable kind owned by the requester: NIP-09 only lets authors delete
 * their own events, and unlike ids, an address carries its owner, so this can be enforced here.
 * Ids still need the relay to compare the stored event's pubkey with ev.pubkey.
 */
export function deletionTargets(ev: NostrEvent): { ids: string[]; addresses: string[] } {
  const ids: string[] = [];
  const addresses: string[] = [];
  if (ev.kind !== KIND_DELETION) return { ids, addresses };
  const tags = ev.tags;
  for (let i = 0; i < tags.length; i++) {
    const t = tags[i];
    if (t.length < 2) continue;
    const name = t[0];
    const v = t[1];
    if (name === 'e') {
      if (isHex64(v) && !ids.includes(v)) ids.push(v);
    } else if (name === 'a') {
      const addr = parseAddress(v);
      if (addr === undefined || addr.pubkey !== ev.pubkey) continue;
      const cls = kindClass(addr.kind);
      if (cls === 'addressable' || (cls === 'replaceable' && addr.d === '')) {
        if (!addresses.includes(v)) addresses.push(v);
      }
    }
  }
  return { ids, addresses };
}
