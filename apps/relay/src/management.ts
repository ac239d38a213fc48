import { createHash } from 'node:crypto';
import type { Config } from '@paidrelay/config';
import {
  addModeration,
  adminTransaction,
  deleteEventsById,
  listModeration,
  recordAudit,
  removeModeration,
  reportedEvents,
  setRelaySetting,
  spendAuthorization,
  type ModerationList,
} from '@paidrelay/db';
import { checkHttpAuthEvent, hasValidId, isHex64, MAX_KIND, parseNostrAuthorization, upgradeRequestUrl } from '@paidrelay/nostr';
import { parsePubkey } from '@paidrelay/pricing';
import type { Transaction } from 'kysely';
import type { Schema } from '@paidrelay/db';
import type { RelayContext } from './context.ts';
import { canonicalAddress, SETTING_DESCRIPTION, SETTING_ICON, SETTING_NAME } from './moderation.ts';
import type { HttpRequest, HttpResponse } from './uws.ts';

/**
 * NIP-86 relay management: JSON-RPC over `POST` on the relay URL with
 * `Content-Type: application/nostr+json+rpc`, every call authorized with NIP-98 by a key in
 * ADMIN_PUBKEYS. A call is one transaction: its authorization is spent (once, across
 * replicas), its change made and audited, or nothing happens. After a change every replica
 * reloads its moderation state (moderation.ts).
 */

export const RPC_CONTENT_TYPE = 'application/nostr+json+rpc';
/** Largest request body read; more is answered 413 without reading on. */
export const MAX_BODY_BYTES = 64 * 1024;
/** NIP-98: how far `created_at` may be from the relay's clock, either way. */
export const AUTH_WINDOW_SECONDS = 60;
/** How long a used authorization is remembered: longer than it could be valid (2 × the window). */
const AUTH_REMEMBER_SECONDS = 2 * AUTH_WINDOW_SECONDS;

const now = () => Math.floor(Date.now() / 1000);
const utf8 = new TextDecoder('utf-8', { fatal: true });

const HEADERS: [string, string][] = [
  ['Access-Control-Allow-Origin', '*'],
  ['Access-Control-Allow-Headers', 'Authorization, Content-Type, *'],
  ['Access-Control-Allow-Methods', 'GET, POST, OPTIONS'],
  ['Content-Type', 'application/json'],
];

/** A refusal that ends the call with this status and NIP-86 error. */
class RpcError extends Error {
  constructor(
    readonly status: string,
    message: string,
  ) {
    super(message);
  }
}
const unauthorized = (why: string) => new RpcError('401 Unauthorized', why);
const badRequest = (why: string) => new RpcError('400 Bad Request', why);

/** Admin pubkeys from ADMIN_PUBKEYS (hex or npub); a bad entry stops the start. */
export function adminPubkeys(config: Config): ReadonlySet<string> {
  const out = new Set<string>();
  for (const item of config.ADMIN_PUBKEYS.split(',').map((s) => s.trim()).filter(Boolean)) {
    const pk = parsePubkey(item);
    if (!pk) throw new Error(`ADMIN_PUBKEYS: "${item}" is not a hex pubkey or an npub`);
    out.add(pk);
  }
  return out;
}

type Call = { actor: string; at: number; ctx: RelayContext; trx: Transaction<Schema> };
type Method = {
  /** The params as the method uses them, or a thrown RpcError. */
  parse(params: unknown[]): unknown[];
  run(call: Call, args: unknown[]): Promise<unknown>;
  /** Changes state: audited, and every replica reloads. */
  change: boolean;
};

const text = (x: unknown, what: string, max = 1000): string => {
  if (x === undefined || x === null) return '';
  if (typeof x !== 'string') throw badRequest(`${what} must be a string`);
  if (x.length > max) throw badRequest(`${what} is longer than ${max} characters`);
  return x;
};
const pubkeyParam = (x: unknown): string => {
  const pk = typeof x === 'string' ? parsePubkey(x) : undefined;
  if (!pk) throw badRequest('params[0] must be a 32-byte hex public key');
  return pk;
};
const eventIdParam = (x: unknown): string => {
  if (!isHex64(x)) throw badRequest('params[0] must be a 32-byte hex event id');
  return x;
};
const kindParam = (x: unknown): number => {
  const k = typeof x === 'string' && /^\d+$/.test(x) ? Number(x) : x;
  if (typeof k !== 'number' || !Number.isInteger(k) || k < 0 || k > MAX_KIND) throw badRequest(`params[0] must be a kind number (0-${MAX_KIND})`);
  return k;
};
const addressParam = (x: unknown): string => {
  const a = typeof x === 'string' ? canonicalAddress(x) : undefined;
  if (!a) throw badRequest('params[0] must be an IPv4 or IPv6 address (or a network, a.b.c.d/n)');
  return a;
};

const none = (): unknown[] => [];
const withReason = (value: (x: unknown) => unknown) => (p: unknown[]) => [value(p[0]), text(p[1], 'reason')];
const entries = async (trx: Transaction<Schema>, list: ModerationList) => listModeration(trx, list);

function add(list: ModerationList, also?: (call: Call, value: string) => Promise<void>): Method['run'] {
  return async (call, [value, why]) => {
    await addModeration(call.trx, { list, value: String(value), reason: String(why ?? ''), createdBy: call.actor }, call.at);
    await also?.(call, String(value));
    return true;
  };
}
function remove(list: ModerationList): Method['run'] {
  return async (call, [value]) => {
    await removeModeration(call.trx, list, String(value));
    return true;
  };
}
function setting(key: string, check: (x: unknown) => string): Method {
  return {
    parse: (p) => [check(p[0])],
    run: async (call, [value]) => {
      await setRelaySetting(call.trx, key, String(value), call.actor, call.at);
      return true;
    },
    change: true,
  };
}

const METHODS: Record<string, Method> = {
  // "the names of all the other supported methods"
  supportedmethods: { parse: none, run: async () => Object.keys(METHODS).filter((m) => m !== 'supportedmethods'), change: false },

  banpubkey: { parse: withReason(pubkeyParam), run: add('banned_pubkey'), change: true },
  unbanpubkey: { parse: withReason(pubkeyParam), run: remove('banned_pubkey'), change: true },
  listbannedpubkeys: {
    parse: none,
    run: async ({ trx }) => (await entries(trx, 'banned_pubkey')).map((e) => ({ pubkey: e.value, reason: e.reason })),
    change: false,
  },

  allowpubkey: { parse: withReason(pubkeyParam), run: add('allowed_pubkey'), change: true },
  unallowpubkey: { parse: withReason(pubkeyParam), run: remove('allowed_pubkey'), change: true },
  listallowedpubkeys: {
    parse: none,
    // ALLOWED_PUBKEYS from the config are allowed too (and only the config can remove them).
    run: async ({ trx, ctx }) => {
      const db = (await entries(trx, 'allowed_pubkey')).map((e) => ({ pubkey: e.value, reason: e.reason }));
      const seen = new Set(db.map((e) => e.pubkey));
      const fromConfig = [...ctx.moderation.configAllowedPubkeys].filter((pk) => !seen.has(pk));
      return [...db, ...fromConfig.map((pubkey) => ({ pubkey, reason: 'ALLOWED_PUBKEYS (config)' }))];
    },
    change: false,
  },

  banevent: {
    parse: withReason(eventIdParam),
    // Hidden at once: removed from storage in the same transaction; a re-send is refused.
    run: add('banned_event', async ({ trx }, id) => {
      await removeModeration(trx, 'allowed_event', id);
      await deleteEventsById(trx, [id]);
    }),
    change: true,
  },
  allowevent: {
    parse: withReason(eventIdParam),
    run: add('allowed_event', async ({ trx }, id) => removeModeration(trx, 'banned_event', id)),
    change: true,
  },
  listbannedevents: {
    parse: none,
    run: async ({ trx }) => (await entries(trx, 'banned_event')).map((e) => ({ id: e.value, reason: e.reason })),
    change: false,
  },
  listeventsneedingmoderation: {
    parse: none,
    run: async ({ trx }) =>
      (await reportedEvents(trx)).map((r) => ({ id: r.id, reason: r.reasons.join(', '), reports: r.reports, reasons: r.reasons })),
    change: false,
  },

  allowkind: { parse: (p) => [kindParam(p[0]), ''], run: add('allowed_kind'), change: true },
  disallowkind: { parse: (p) => [kindParam(p[0])], run: remove('allowed_kind'), change: true },
  listallowedkinds: {
    parse: none,
    run: async ({ trx }) => (await entries(trx, 'allowed_kind')).map((e) => Number(e.value)).sort((a, b) => a - b),
    change: false,
  },

  blockip: { parse: withReason(addressParam), run: add('blocked_ip'), change: true },
  unblockip: { parse: (p) => [addressParam(p[0])], run: remove('blocked_ip'), change: true },
  listblockedips: {
    parse: none,
    run: async ({ trx }) => (await entries(trx, 'blocked_ip')).map((e) => ({ ip: e.value, reason: e.reason })),
    change: false,
  },

  changerelayname: setting(SETTING_NAME, (x) => {
    const s = text(x, 'name', 200).trim();
    if (s === '') throw badRequest('params[0] must be the new name');
    return s;
  }),
  changerelaydescription: setting(SETTING_DESCRIPTION, (x) => text(x, 'description', 4000)),
  changerelayicon: setting(SETTING_ICON, (x) => {
    const s = text(x, 'icon', 2000).trim();
    let ok = false;
    try {
      ok = ['http:', 'https:'].includes(new URL(s).protocol);
    } catch {
      /* not a URL */
    }
    if (!ok) throw badRequest('params[0] must be an http(s) URL');
    return s;
  }),
};

export const SUPPORTED_METHODS = Object.keys(METHODS);

/** What the handler needs of the request; uWS's request object is only valid during the route call. */
type RequestHead = {
  authorization: string;
  contentType: string;
  contentLength: string;
  host: string;
  forwardedProto: string;
  forwardedHost: string;
  path: string;
  query: string;
};

/** The URLs a `u` tag may name: RELAY_URL when set (as NIP-42 here), else the URL of this request. */
function requestUrls(ctx: RelayContext, head: RequestHead): string[] {
  if (ctx.config.RELAY_URL) return [ctx.config.RELAY_URL];
  const path = head.query ? `${head.path}?${head.query}` : head.path;
  const url = upgradeRequestUrl(
    { host: head.host, path, forwardedProto: head.forwardedProto, forwardedHost: head.forwardedHost },
    ctx.config.TRUST_PROXY,
  );
  return url ? [url] : [];
}

/** One call, after the body has been read: authorization, then the method, in one transaction. */
export async function handleRpc(ctx: RelayContext, admins: ReadonlySet<string>, head: RequestHead, body: Buffer): Promise<unknown> {
  const parsed = parseNostrAuthorization(head.authorization);
  if (!parsed.ok) throw unauthorized(parsed.reason);
  const ev = parsed.event;
  const at = now();
  const why = checkHttpAuthEvent(ev, {
    urls: requestUrls(ctx, head),
    method: 'POST',
    payloadSha256: createHash('sha256').update(body).digest('hex'),
    now: at,
    maxSkewSeconds: AUTH_WINDOW_SECONDS,
  });
  if (why) throw unauthorized(why);
  if (!hasValidId(ev)) throw unauthorized('authorization event id does not match the event');
  if (!(await ctx.verifier.verify(ev))) throw unauthorized('authorization event signature is invalid');
  if (!admins.has(ev.pubkey)) throw unauthorized('this pubkey is not an admin of this relay');

  let rpc: unknown;
  try {
    rpc = JSON.parse(utf8.decode(body));
  } catch {
    throw badRequest('the body is not JSON');
  }
  if (typeof rpc !== 'object' || rpc === null || Array.isArray(rpc)) throw badRequest('the body must be {"method": ..., "params": [...]}');
  const { method: name, params = [] } = rpc as { method?: unknown; params?: unknown };
  if (typeof name !== 'string') throw badRequest('method must be a string');
  if (!Array.isArray(params)) throw badRequest('params must be an array');
  const method = Object.hasOwn(METHODS, name) ? METHODS[name] : undefined;
  if (!method) throw badRequest(`unsupported method: ${name.slice(0, 64)}`);
  const args = method.parse(params);

  const result = await adminTransaction(ctx.db.kysely, async (trx) => {
    if (!(await spendAuthorization(trx, ev.sig, at + AUTH_REMEMBER_SECONDS, at))) throw unauthorized('this authorization was already used');
    const r = await method.run({ actor: ev.pubkey, at, ctx, trx }, args);
    if (method.change) await recordAudit(trx, { at, pubkey: ev.pubkey, method: name, params: args });
    return r;
  });
  if (method.change) {
    ctx.log.info({ admin: ev.pubkey, method: name, params: args }, 'management change');
    await ctx.moderation.changed();
  }
  return result;
}

/**
 * The uWS route for POST: reads the body (at most MAX_BODY_BYTES, never touching the response
 * after the client has gone), then answers `{"result": ...}` or `{"result": null, "error": ...}`.
 */
export function managementRoute(ctx: RelayContext): (res: HttpResponse, req: HttpRequest) => void {
  const admins = adminPubkeys(ctx.config);
  return (res, req) => {
    const head: RequestHead = {
      authorization: req.getHeader('authorization'),
      contentType: req.getHeader('content-type'),
      contentLength: req.getHeader('content-length'),
      host: req.getHeader('host'),
      forwardedProto: req.getHeader('x-forwarded-proto'),
      forwardedHost: req.getHeader('x-forwarded-host'),
      path: req.getUrl(),
      query: req.getQuery() ?? '',
    };
    let gone = false;
    res.onAborted(() => (gone = true));
    const answer = (status: string, body: unknown, close = false) => {
      if (gone) return;
      gone = true;
      try {
        res.cork(() => {
          res.writeStatus(status);
          for (const [k, v] of HEADERS) res.writeHeader(k, v);
          res.end(JSON.stringify(body), close);
        });
      } catch (err) {
        ctx.log.warn({ err: (err as Error)?.message }, 'management: could not answer');
      }
    };
    const fail = (status: string, error: string, close = false) => answer(status, { result: null, error }, close);

    if (head.contentType.split(';')[0].trim().toLowerCase() !== RPC_CONTENT_TYPE) {
      fail('415 Unsupported Media Type', `POST here is the NIP-86 management API: Content-Type must be ${RPC_CONTENT_TYPE}`, true);
      return;
    }
    if (Number(head.contentLength) > MAX_BODY_BYTES) {
      fail('413 Payload Too Large', `the body is larger than ${MAX_BODY_BYTES} bytes`, true);
      return;
    }
    const chunks: Buffer[] = [];
    let size = 0;
    let done = false;
    res.onData((chunk, isLast) => {
      if (done) return;
      size += chunk.byteLength;
      if (size > MAX_BODY_BYTES) {
        done = true;
        fail('413 Payload Too Large', `the body is larger than ${MAX_BODY_BYTES} bytes`, true);
        return;
      }
      // The chunk is only valid during this call: copy it.
      chunks.push(Buffer.from(new Uint8Array(chunk)));
      if (!isLast) return;
      done = true;
      handleRpc(ctx, admins, head, Buffer.concat(chunks)).then(
        (result) => answer('200 OK', { result }),
        (err: unknown) => {
          if (err instanceof RpcError) return fail(err.status, err.message);
          ctx.log.error({ err: (err as Error)?.message ?? String(err) }, 'management call failed');
          fail('500 Internal Server Error', 'internal error, try again');
        },
      );
    });
  };
}
