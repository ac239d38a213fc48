import { createHash } from 'node:crypto';
import type { Config } from '@paidrelay/config';
import {
  addModeration,
  adminTransaction,
  deleteEventsById,
  heldEventStats,
  invoiceWithLedger,
  ledgerSummary,
  listAuditPage,
  listInvoicesAdmin,
  listMembers,
  listModeration,
  revenueByBucket,
  storedEventCount,
  recordAudit,
  removeModeration,
  reportedEvents,
  setRelaySetting,
  spendAuthorization,
  type ModerationList,
} from '@paidrelay/db';
import { checkHttpAuthEvent, hasValidId, isHex64, MAX_KIND, parseNostrAuthorization, upgradeRequestUrl } from '@paidrelay/nostr';
import { parsePubkey } from '@paidrelay/nostr';
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
export const badRequest = (why: string) => new RpcError('400 Bad Request', why);

/** Admin pubkeys from ADMIN_PUBKEYS (hex or npub); a bad entry stops the start. */
export function adminPubkeys(config: Config): ReadonlySet<string> {
  const out = new Set<string>();
  for (const item of config.ADMIN_PUBKEYS.split(',')
    .map((s) => s.trim())
    .filter(Boolean)) {
    const pk = parsePubkey(item);
    if (!pk) throw new Error(`ADMIN_PUBKEYS: "${item}" is not a hex pubkey or an npub`);
    out.add(pk);
  }
  return out;
}

type Call = { actor: string; at: number; ctx: RelayContext; trx: Transaction<Schema> };
/** One NIP-86 method; entry points add their own through the hooks (RelayHooks.management). */
export type ManagementMethod = Method;
type Method = {
  /** The params as the method uses them, or a thrown RpcError. */
  parse(params: unknown[]): unknown[];
  run(call: Call, args: unknown[]): Promise<unknown>;
  /** Changes state: audited, and every replica reloads (its moderation state, unless `reload` is false). */
  change: boolean;
  reload?: false;
  /** After the commit: announce what changed (the result, or what it resolves to, is what the client gets). */
  after?(ctx: RelayContext, result: unknown): unknown;
};

export const text = (x: unknown, what: string, max = 1000): string => {
  if (x === undefined || x === null) return '';
  if (typeof x !== 'string') throw badRequest(`${what} must be a string`);
  if (x.length > max) throw badRequest(`${what} is longer than ${max} characters`);
  return x;
};
export const pubkeyParam = (x: unknown): string => {
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
  if (typeof k !== 'number' || !Number.isInteger(k) || k < 0 || k > MAX_KIND)
    throw badRequest(`params[0] must be a kind number (0-${MAX_KIND})`);
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
  supportedmethods: {
    parse: none,
    run: async ({ ctx }) => [...Object.keys(METHODS), ...Object.keys(ctx.management ?? {})].filter((m) => m !== 'supportedmethods'),
    change: false,
  },

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

  // Our extension for the dashboard (apps/dashboard): admin data. See adminMethods below. The
  // payment side adds prices and grants (apps/relay/src/paid-management.ts).
  ...adminMethods(),
};

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
  const added = ctx.management ?? {};
  const method = Object.hasOwn(METHODS, name) ? METHODS[name] : Object.hasOwn(added, name) ? added[name] : undefined;
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
    if (method.reload !== false) await ctx.moderation.changed();
  }
  return method.after ? method.after(ctx, result) : result;
}

/**
 * The uWS route for POST: reads the body (at most MAX_BODY_BYTES, never touching the response
 * after the client has gone), then answers `{"result": ...}` or `{"result": null, "error": ...}`.
 */
export function managementRoute(ctx: RelayContext): (res: HttpResponse, req: HttpRequest) => void {
  const admins = adminPubkeys(ctx.config);
  writeRates(ctx);
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
        ctx.log.warn({ err }, 'management: could not answer');
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

// ---------------------------------------------------------------------------------------------
// The dashboard's methods (our extension of NIP-86; names are not in the NIP). Each takes one
// params object, `[{...}]`, every field optional unless said. Grants and prices are the
// payment side's (paid-management.ts).

export const int = (x: unknown, what: string, def: number, min: number, max: number): number => {
  if (x === undefined || x === null) return def;
  const n = typeof x === 'string' && /^-?\d+$/.test(x) ? Number(x) : x;
  if (typeof n !== 'number' || !Number.isSafeInteger(n) || n < min || n > max)
    throw badRequest(`${what} must be an integer from ${min} to ${max}`);
  return n;
};
export const options = (p: unknown[]): Record<string, unknown> => {
  const o = p[0] ?? {};
  if (typeof o !== 'object' || o === null || Array.isArray(o)) throw badRequest('params[0] must be an object of options');
  return o as Record<string, unknown>;
};
const oneOf = <T extends string>(x: unknown, what: string, values: readonly T[]): T | undefined => {
  if (x === undefined || x === null || x === '') return undefined;
  if (typeof x !== 'string' || !values.includes(x as T)) throw badRequest(`${what} must be one of ${values.join(', ')}`);
  return x as T;
};

const BECH32 = 'qpzry9x8gf2tvdw0s3jn54khce6mua7l';

/**
 * The 32-byte bounds of the pubkeys that start with a hex prefix, or whose npub starts with an
 * npub prefix (each bech32 character after `npub1` is 5 bits of the key); undefined when the
 * text is neither.
 */
export function pubkeyPrefixRange(q: string): [Buffer, Buffer] | undefined {
  const s = q.trim().toLowerCase();
  let bits = '';
  if (/^[0-9a-f]{1,64}$/.test(s)) {
    for (const c of s) bits += parseInt(c, 16).toString(2).padStart(4, '0');
  } else if (/^npub1[qpzry9x8gf2tvdw0s3jn54khce6mua7l]{0,51}$/.test(s)) {
    for (const c of s.slice(5)) bits += BECH32.indexOf(c).toString(2).padStart(5, '0');
  } else return undefined;
  const bound = (fill: string) => {
    const all = (bits + fill.repeat(256)).slice(0, 256);
    const b = Buffer.alloc(32);
    for (let i = 0; i < 32; i++) b[i] = parseInt(all.slice(i * 8, i * 8 + 8), 2);
    return b;
  };
  return [bound('0'), bound('1')];
}

/**
 * Accepted and refused writes per minute, by reason, from this process's counters
 * (`relay_events_total`): sampled every 5 s and at each `stats` call, the increase since the
 * previous sample counted in the minute of the sample. Process-local: each replica answers
 * for its own writes (Prometheus has the sum). Kept for 24 hours.
 */
class WriteRates {
  private last = new Map<string, number>();
  /** minute (unix seconds, aligned) -> series -> count */
  readonly minutes = new Map<number, Map<string, number>>();
  private chain: Promise<void> = Promise.resolve();
  private timer: NodeJS.Timeout;

  constructor(private readonly ctx: RelayContext) {
    this.timer = setInterval(() => void this.sample(), 5000);
    this.timer.unref();
  }

  static series(result: string, reason: string): string {
    if (result === 'accepted') return reason ? `accepted:${reason}` : 'accepted';
    if (result === 'duplicate') return 'duplicate';
    return `${result}:${reason || 'unknown'}`;
  }

  sample(): Promise<void> {
    this.chain = this.chain
      .then(async () => {
        const counter = this.ctx.metrics?.events;
        if (!counter) return;
        const { values } = await counter.get();
        const minute = Math.floor(now() / 60) * 60;
        for (const v of values) {
          const key = WriteRates.series(String(v.labels.result ?? ''), String(v.labels.reason ?? ''));
          const prev = this.last.get(key) ?? 0;
          const delta = v.value - prev;
          this.last.set(key, v.value);
          if (delta <= 0) continue;
          const m = this.minutes.get(minute) ?? new Map<string, number>();
          this.minutes.set(minute, m);
          m.set(key, (m.get(key) ?? 0) + delta);
        }
        for (const t of this.minutes.keys()) if (t < minute - 86_400) this.minutes.delete(t);
      })
      .catch((err: unknown) => this.ctx.log.warn({ err }, 'management: write rate sample failed'));
    return this.chain;
  }
}

const rates = new WeakMap<RelayContext, WriteRates>();
function writeRates(ctx: RelayContext): WriteRates {
  let r = rates.get(ctx);
  if (!r) rates.set(ctx, (r = new WriteRates(ctx)));
  return r;
}

const gaugeValue = async (g: { get(): Promise<{ values: { value: number }[] }> } | undefined): Promise<number> =>
  g ? ((await g.get()).values[0]?.value ?? 0) : 0;

const BUCKETS = { minute: 60, hour: 3600, day: 86_400 } as const;
const STATUSES = ['pending', 'paid', 'expired'] as const;
const PRODUCTS = ['admission', 'subscription', 'credit', 'event', 'zap'] as const;

/** Dense series over `times` from sparse (time, key, value) points. */
function dense(times: number[], points: { at: number; key: string; value: number }[]): Record<string, number[]> {
  const index = new Map(times.map((t, i) => [t, i]));
  const out: Record<string, number[]> = {};
  for (const p of points) {
    const i = index.get(p.at);
    if (i === undefined) continue;
    (out[p.key] ??= times.map(() => 0))[i] += p.value;
  }
  return out;
}

function adminMethods(): Record<string, Method> {
  return {
    /**
     * stats [{from?, to?, bucket?: 'minute'|'hour'|'day', minutes?}]: revenue per bucket by
     * product (money received; admin grants apart), writes per minute by reason over the last
     * `minutes` (this process), and the live figures.
     */
    stats: {
      parse: (p) => {
        const o = options(p);
        const bucket = oneOf(o.bucket, 'bucket', ['minute', 'hour', 'day'] as const) ?? 'hour';
        const to = int(o.to, 'to', now(), 0, 2 ** 40);
        const from = int(o.from, 'from', to - 86_400, 0, to);
        if ((to - from) / BUCKETS[bucket] > 2000) throw badRequest('from..to has more than 2000 buckets: take a larger bucket');
        return [{ from, to, bucket, minutes: int(o.minutes, 'minutes', 60, 1, 1440) }];
      },
      run: async ({ trx, ctx, at }, [args]) => {
        const a = args as { from: number; to: number; bucket: keyof typeof BUCKETS; minutes: number };
        const size = BUCKETS[a.bucket];
        const times: number[] = [];
        for (let t = Math.floor(a.from / size) * size; t < a.to; t += size) times.push(t);
        const r = writeRates(ctx);
        await r.sample();
        const [paid, grants, summary, stored, held, connections, subscriptions] = await Promise.all([
          revenueByBucket(trx, { from: times[0] ?? a.from, to: a.to, bucketSeconds: size, source: 'paid' }),
          revenueByBucket(trx, { from: times[0] ?? a.from, to: a.to, bucketSeconds: size, source: 'grants' }),
          ledgerSummary(trx),
          storedEventCount(trx),
          heldEventStats(trx),
          gaugeValue(ctx.metrics?.connections),
          gaugeValue(ctx.metrics?.subscriptions),
        ]);
        const product = (account: string) => account.slice('revenue:'.length);
        const minuteNow = Math.floor(at / 60) * 60;
        const minutes: number[] = [];
        for (let t = minuteNow - (a.minutes - 1) * 60; t <= minuteNow; t += 60) minutes.push(t);
        const writePoints = [...r.minutes].flatMap(([t, m]) => [...m].map(([key, value]) => ({ at: t, key, value })));
        return {
          now: at,
          revenue: {
            bucket: a.bucket,
            bucketSeconds: size,
            times,
            products: dense(
              times,
              paid.map((x) => ({ at: x.at, key: product(x.account), value: x.amountMsat })),
            ),
            grants: dense(
              times,
              grants.map((x) => ({ at: x.at, key: product(x.account), value: x.amountMsat })),
            ),
          },
          totals: {
            receivedMsat: -(summary.accounts.wallet ?? 0),
            grantedMsat: -(summary.accounts['grant:admin'] ?? 0),
            accounts: summary.accounts,
            userBalancesMsat: summary.userBalancesMsat,
            ledgerSumMsat: summary.totalMsat,
          },
          writes: { processLocal: true, minutes, series: dense(minutes, writePoints) },
          live: {
            connections,
            subscriptions,
            processLocal: true,
            eventsStored: stored.count,
            eventsStoredEstimated: stored.estimated,
            heldEvents: held.events,
            heldBytes: held.bytes,
          },
        };
      },
      change: false,
    },

    /** listinvoices [{status?, product?, pubkey?, from?, to?, limit? (50, ≤500), offset?}] */
    listinvoices: {
      parse: (p) => {
        const o = options(p);
        const pubkey = o.pubkey === undefined || o.pubkey === '' ? undefined : pubkeyParam(o.pubkey);
        return [
          {
            status: oneOf(o.status, 'status', STATUSES),
            product: oneOf(o.product, 'product', PRODUCTS),
            pubkey,
            from: o.from === undefined || o.from === '' ? undefined : int(o.from, 'from', 0, 0, 2 ** 40),
            to: o.to === undefined || o.to === '' ? undefined : int(o.to, 'to', 0, 0, 2 ** 40),
            limit: int(o.limit, 'limit', 50, 1, 500),
            offset: int(o.offset, 'offset', 0, 0, 1_000_000),
          },
        ];
      },
      run: async ({ trx }, [f]) => {
        const filter = f as Parameters<typeof listInvoicesAdmin>[1];
        const r = await listInvoicesAdmin(trx, filter);
        const next = filter.offset + r.invoices.length;
        return { ...r, offset: filter.offset, limit: filter.limit, nextOffset: next < r.total ? next : null };
      },
      change: false,
    },

    /** getinvoice [id]: the invoice and its ledger rows. */
    getinvoice: {
      parse: (p) => {
        if (typeof p[0] !== 'string' || !/^[A-Za-z0-9_-]{1,64}$/.test(p[0])) throw badRequest('params[0] must be an invoice id');
        return [p[0]];
      },
      run: async ({ trx }, [id]) => {
        const r = await invoiceWithLedger(trx, String(id));
        if (!r) throw new RpcError('404 Not Found', 'no such invoice');
        return r;
      },
      change: false,
    },

    /** listmembers [{q? (hex or npub prefix, or a whole npub), all? (false: only those admitted now), limit?, offset?}] */
    listmembers: {
      parse: (p) => {
        const o = options(p);
        const q = text(o.q, 'q', 100).trim();
        let range: [Buffer, Buffer] | undefined;
        if (q) {
          const full = parsePubkey(q);
          range = full ? [Buffer.from(full, 'hex'), Buffer.from(full, 'hex')] : pubkeyPrefixRange(q);
          if (!range) throw badRequest('q must be the start of a hex pubkey or of an npub');
        }
        return [{ range, all: o.all === true, limit: int(o.limit, 'limit', 50, 1, 500), offset: int(o.offset, 'offset', 0, 0, 1_000_000) }];
      },
      run: async ({ trx, at }, [args]) => {
        const a = args as { range?: [Buffer, Buffer]; all: boolean; limit: number; offset: number };
        const r = await listMembers(trx, { range: a.range, admittedAt: a.all ? undefined : at, limit: a.limit, offset: a.offset });
        const next = a.offset + r.members.length;
        return { ...r, offset: a.offset, limit: a.limit, nextOffset: next < r.total ? next : null };
      },
      change: false,
    },

    /** listauditlog [{limit? (50, ≤500), before? (an id: older rows), method?}] */
    listauditlog: {
      parse: (p) => {
        const o = options(p);
        return [
          {
            limit: int(o.limit, 'limit', 50, 1, 500),
            before: o.before === undefined || o.before === null ? undefined : int(o.before, 'before', 0, 1, Number.MAX_SAFE_INTEGER),
            method: text(o.method, 'method', 64) || undefined,
          },
        ];
      },
      run: async ({ trx }, [args]) => {
        const a = args as { limit: number; before?: number; method?: string };
        const entries = await listAuditPage(trx, a);
        return { entries, nextBefore: entries.length === a.limit ? entries[entries.length - 1].id : null };
      },
      change: false,
    },
  };
}
