import { checkEventShape, type NostrEvent } from './event.ts';

/** NIP-98 HTTP Auth. */
export const KIND_HTTP_AUTH = 27235;

/** An `Authorization` header longer than this is refused before decoding (a NIP-98 event is a few hundred bytes). */
const MAX_HEADER_LENGTH = 8192;

export type HttpAuthParse = { ok: true; event: NostrEvent } | { ok: false; reason: string };

/** `Authorization: Nostr <base64 of the event JSON>` to the event, shape-checked (not its id or signature). */
export function parseNostrAuthorization(header: string | undefined): HttpAuthParse {
  const h = (header ?? '').trim();
  if (h === '') return { ok: false, reason: 'missing Authorization header (NIP-98)' };
  if (h.length > MAX_HEADER_LENGTH) return { ok: false, reason: 'Authorization header is too long' };
  const m = /^Nostr\s+([A-Za-z0-9+/=_-]+)$/i.exec(h);
  if (!m) return { ok: false, reason: 'Authorization header must be "Nostr <base64 event>" (NIP-98)' };
  let x: unknown;
  try {
    x = JSON.parse(Buffer.from(m[1], 'base64').toString('utf8'));
  } catch {
    return { ok: false, reason: 'Authorization header is not a base64 JSON event' };
  }
  const shape = checkEventShape(x, { maxTags: 64, maxContentLength: 4096 });
  return shape.ok ? { ok: true, event: shape.event } : { ok: false, reason: `authorization event: ${shape.reason}` };
}

/**
 * An http(s) or ws(s) URL reduced to the form two names of one resource share: `http` and `ws`
 * count as the same scheme (NIP-86 clients sign the relay URL; others the HTTP one), as do
 * `https` and `wss`; the host is lowercased, default ports are elided, trailing slashes of the
 * path dropped, the query kept and the fragment ignored.
 */
export function normalizeHttpUrl(url: string): string | undefined {
  let u: URL;
  try {
    u = new URL(url.trim());
  } catch {
    return undefined;
  }
  let scheme: string;
  switch (u.protocol) {
    case 'http:':
    case 'ws:':
      scheme = 'http';
      break;
    case 'https:':
    case 'wss:':
      scheme = 'https';
      break;
    default:
      return undefined;
  }
  if (u.host === '' || u.username !== '' || u.password !== '') return undefined;
  const path = u.pathname.replace(/\/+$/, '');
  return `${scheme}://${u.host}${path}${u.search}`;
}

export type HttpAuthOptions = {
  /** The request URL as the server sees it (any one matches). */
  urls: readonly string[];
  method: string;
  /** SHA-256 hex of the exact request body: the `payload` tag must carry it. */
  payloadSha256: string;
  now: number;
  /** `created_at` may be at most this far from `now`, either way (NIP-98 suggests 60). */
  maxSkewSeconds: number;
};

function tagValue(ev: NostrEvent, name: string): string | undefined {
  for (const t of ev.tags) if (t[0] === name) return t.length > 1 ? t[1] : undefined;
  return undefined;
}

/**
 * The NIP-98 checks of an authorization event for one request, with the `payload` tag required
 * (as NIP-86 requires it). Null when acceptable; the caller must still check the id and the
 * signature, the signer, and that the event was not used before.
 */
export function checkHttpAuthEvent(ev: NostrEvent, opts: HttpAuthOptions): string | null {
  if (ev.kind !== KIND_HTTP_AUTH) return `authorization event must be kind ${KIND_HTTP_AUTH}`;
  if (Math.abs(ev.created_at - opts.now) > opts.maxSkewSeconds) {
    return `authorization event created_at is more than ${opts.maxSkewSeconds} seconds from now`;
  }
  const u = tagValue(ev, 'u');
  if (u === undefined) return 'authorization event has no u tag';
  const signed = normalizeHttpUrl(u);
  if (signed === undefined || !opts.urls.some((url) => normalizeHttpUrl(url) === signed)) {
    return 'authorization event u tag does not name this URL';
  }
  const method = tagValue(ev, 'method');
  if (method === undefined) return 'authorization event has no method tag';
  if (method.toUpperCase() !== opts.method.toUpperCase()) return 'authorization event method tag does not match the request';
  const payload = tagValue(ev, 'payload');
  if (payload === undefined) return 'authorization event has no payload tag';
  if (payload.toLowerCase() !== opts.payloadSha256) return 'authorization event payload tag does not match the body';
  return null;
}
