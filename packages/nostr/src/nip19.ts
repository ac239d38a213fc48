import { decode } from 'nostr-tools/nip19';
import { isHex64 } from './hex.ts';

/** A pubkey given as 64 hex characters or as an npub; undefined when it is neither. */
export function parsePubkey(input: string): string | undefined {
  const s = input.trim();
  if (isHex64(s.toLowerCase())) return s.toLowerCase();
  if (s.startsWith('npub1')) {
    try {
      const d = decode(s);
      if (d.type === 'npub') return d.data;
    } catch {
      return undefined;
    }
  }
  return undefined;
}

/** A comma-separated list of pubkeys (hex or npub) from the config variable `name`; throws on an item that is neither. */
export function parsePubkeyList(name: string, value: string): string[] {
  const out: string[] = [];
  for (const item of value
    .split(',')
    .map((x) => x.trim())
    .filter((x) => x.length > 0)) {
    const pk = parsePubkey(item);
    if (!pk) throw new Error(`${name}: "${item}" is not a hex pubkey or an npub`);
    out.push(pk);
  }
  return out;
}
