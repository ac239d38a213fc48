import { isIP } from 'node:net';

/**
 * The network a client address belongs to, as a key for per-address limits: an IPv4 address
 * as it is (also when written IPv4-mapped, `::ffff:a.b.c.d`), an IPv6 address cut to its
 * first `v6Bits` bits (a /64 is what one subscriber usually gets). Anything else is kept as is.
 * With `v4Bits` below 32 an IPv4 address is cut to that prefix too (`a.b.c.0/24`).
 */
export function networkKey(ip: string, v6Bits = 64, v4Bits = 32): string {
  const version = isIP(ip);
  if (version === 4) return v4Prefix(ip, v4Bits);
  if (version !== 6) return ip;
  const groups = ipv6Groups(ip);
  if (groups.slice(0, 5).every((g) => g === 0) && groups[5] === 0xffff) {
    return v4Prefix([groups[6] >> 8, groups[6] & 255, groups[7] >> 8, groups[7] & 255].join('.'), v4Bits);
  }
  const bits = Math.max(0, Math.min(128, v6Bits));
  const kept = groups.map((g, i) => {
    const from = i * 16;
    if (from + 16 <= bits) return g;
    if (from >= bits) return 0;
    return g & (0xffff << (16 - (bits - from)));
  });
  return `${kept.map((g) => g.toString(16)).join(':')}/${bits}`;
}

function v4Prefix(ip: string, bits: number): string {
  if (bits >= 32) return ip;
  const b = Math.max(0, bits);
  const n = ip.split('.').reduce((acc, part) => acc * 256 + Number(part), 0);
  const kept = b === 0 ? 0 : Math.floor(n / 2 ** (32 - b)) * 2 ** (32 - b);
  return `${[kept >>> 24, (kept >>> 16) & 255, (kept >>> 8) & 255, kept & 255].join('.')}/${b}`;
}

/** The eight 16-bit groups of a valid IPv6 address (with `::` and a trailing dotted IPv4 part). */
function ipv6Groups(ip: string): number[] {
  let text = ip.split('%')[0];
  const dotted = /(\d+)\.(\d+)\.(\d+)\.(\d+)$/.exec(text);
  if (dotted) {
    const [a, b, c, d] = dotted.slice(1).map(Number);
    text = text.slice(0, dotted.index) + ((a << 8) | b).toString(16) + ':' + ((c << 8) | d).toString(16);
  }
  const [head, tail] = text.includes('::') ? text.split('::') : [text, undefined];
  const parse = (s: string | undefined) => (s ? s.split(':').map((g) => parseInt(g, 16)) : []);
  const h = parse(head);
  const t = parse(tail);
  return tail === undefined ? h : [...h, ...new Array<number>(8 - h.length - t.length).fill(0), ...t];
}
