import type { NostrEvent } from './event.ts';
import { KIND_AUTH } from './kinds.ts';

export type AuthCheckOptions = {
  challenge: string;
  /** The URL (or URLs: any one matches) the relay tag must name. */
  relayUrl: string | readonly string[];
  now: number;
  maxSkewSeconds: number;
};

/**
 * Reduces a relay URL to `host[:port]/path` so that the forms clients legitimately write for
 * the same relay compare equal: scheme (ws/wss, and http/https used by some clients) is
 * dropped, host is lowercased (and punycoded) by URL, default ports are elided, trailing
 * slashes, query and fragment are ignored. A missing scheme is tolerated.
 */
export function normalizeRelayUrl(url: string): string | undefined {
  let s = url.trim();
  if (!s.includes('://')) s = `wss://${s}`;
  let u: URL;
  try {
    u = new URL(s);
  } catch {
    return undefined;
  }
  switch (u.protocol) {
    case 'ws:':
    case 'wss:':
    case 'http:':
    case 'https:':
      break;
    default:
      return undefined;
  }
  if (u.host === '') return undefined;
  let path = u.pathname;
  let end = path.length;
  while (end > 0 && path.charCodeAt(end - 1) === 47) end--;
  path = path.slice(0, end);
  return u.host + path;
}

/** Whether a client's relay tag designates this relay. */
export function relayUrlMatches(tagUrl: string, relayUrl: string): boolean {
  const a = normalizeRelayUrl(tagUrl);
  return a !== undefined && a === normalizeRelayUrl(relayUrl);
}

/** What the WebSocket upgrade request says about the URL the client used. */
export type UpgradeRequestUrl = {
  /** The `Host` header. */
  host: string;
  /** The request path (no query). */
  path?: string;
  /** `X-Forwarded-Proto` and `X-Forwarded-Host`, read only when the proxy is trusted. */
  forwardedProto?: string;
  forwardedHost?: string;
};

// A host[:port] as a Host header carries it: a name, IPv4 or [IPv6], an optional port. Nothing
// that would change what the URL means (userinfo, path, spaces).
const HOST_HEADER = /^(?:[A-Za-z0-9\-._~]+|\[[0-9A-Fa-f:.]+\])(?::\d{1,5})?$/;

const firstValue = (h: string | undefined) => (h ?? '').split(',')[0].trim();

/**
 * The relay URL as this client reached it, as khatru derives it: `ws://<Host><path>`, or behind
 * a trusted proxy `<X-Forwarded-Proto as ws/wss>://<X-Forwarded-Host or Host><path>` (first value
 * of each; http maps to ws and https to wss, which matters for the default port). Undefined when
 * no usable host was sent.
 */
export function upgradeRequestUrl(req: UpgradeRequestUrl, trustProxy: boolean): string | undefined {
  const fwdHost = trustProxy ? firstValue(req.forwardedHost) : '';
  const host = fwdHost || req.host.trim();
  if (!HOST_HEADER.test(host)) return undefined;
  let scheme = 'ws';
  if (trustProxy) {
    const proto = firstValue(req.forwardedProto).toLowerCase();
    if (proto === 'https' || proto === 'wss') scheme = 'wss';
  }
  const path = req.path?.startsWith('/') ? req.path : '/';
  return `${scheme}://${host}${path}`;
}

function firstTagValue(ev: NostrEvent, name: string): string | undefined {
  const tags = ev.tags;
  for (let i = 0; i < tags.length; i++) {
    const t = tags[i];
    if (t[0] === name) return t.length > 1 ? t[1] : undefined;
  }
  return undefined;
}

/**
 * NIP-42 verification of the AUTH event's content. Returns null when acceptable. The caller
 * must still verify id and signature.
 */
export function checkAuthEvent(ev: NostrEvent, opts: AuthCheckOptions): string | null {
  if (ev.kind !== KIND_AUTH) return `invalid: auth event must be kind ${KIND_AUTH}`;
  if (Math.abs(ev.created_at - opts.now) > opts.maxSkewSeconds) {
    return 'invalid: auth event created_at is too far from the current time';
  }
  // An empty challenge would let any event with an empty challenge tag authenticate.
  if (opts.challenge === '') return 'invalid: no challenge was issued';
  const challenge = firstTagValue(ev, 'challenge');
  if (challenge === undefined) return 'invalid: auth event has no challenge tag';
  if (challenge !== opts.challenge) return 'invalid: auth event challenge does not match';
  const relay = firstTagValue(ev, 'relay');
  if (relay === undefined) return 'invalid: auth event has no relay tag';
  const urls = typeof opts.relayUrl === 'string' ? [opts.relayUrl] : opts.relayUrl;
  if (!urls.some((u) => relayUrlMatches(relay, u))) return 'invalid: auth event relay tag does not match this relay';
  return null;
}
