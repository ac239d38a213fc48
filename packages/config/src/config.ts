import { readFileSync } from 'node:fs';
import { isHex64 } from '@paidrelay/nostr';
import { z } from 'zod';

const bool = z
  .union([z.boolean(), z.enum(['true', 'false', '1', '0', 'yes', 'no'])])
  .transform((v) => v === true || v === 'true' || v === '1' || v === 'yes');
const int = (def: number, min = 0) => z.coerce.number().int().min(min).default(def);
const hex64 = z.string().refine(isHex64, 'must be 64 lowercase hex characters');
const items = (s: string) =>
  s
    .split(',')
    .map((x) => x.trim())
    .filter((x) => x !== '');
const isKind = (k: number) => Number.isInteger(k) && k >= 0 && k <= 65535;
/** "4, 1059": event kinds, comma separated. */
const kinds = (def: string) =>
  z
    .string()
    .default(def)
    .transform((s, ctx) => {
      const out = items(s).map(Number);
      const bad = items(s).find((item) => !isKind(Number(item)));
      if (bad !== undefined) ctx.addIssue({ code: 'custom', message: `"${bad}" is not a kind (kinds, comma separated)` });
      return out;
    });
/** "1:100, 30023:1000": a price in msat per kind. */
const kindPrices = z
  .string()
  .default('')
  .transform((s, ctx) => {
    const out = new Map<number, number>();
    for (const item of items(s)) {
      const m = /^(\d+):(\d+)$/.exec(item);
      if (!m || !isKind(Number(m[1]))) ctx.addIssue({ code: 'custom', message: `"${item}" is not <kind>:<msat>` });
      else out.set(Number(m[1]), Number(m[2]));
    }
    return out as ReadonlyMap<number, number>;
  });
const optionalString = z
  .string()
  .optional()
  .transform((v) => (v === undefined || v === '' ? undefined : v));

/**
 * Every setting of every app. Environment variable names are the keys, upper-cased
 * (the README lists each with its default). One schema so the relay, the admission
 * service and the dashboard read the same names.
 */
export const configSchema = z.object({
  NODE_ENV: z.enum(['development', 'production', 'test']).default('development'),
  HOST: z.string().default('0.0.0.0'),
  PORT: int(7777, 0).pipe(z.number().max(65535)),
  DATA_DIR: z.string().default('./data'),
  DATABASE_URL: optionalString,
  /**
   * Streaming replicas of DATABASE_URL, comma separated: REQ and COUNT read there (taking turns),
   * everything else stays on the primary. A replica that fails sends its reads to the primary.
   */
  READ_DATABASE_URL: optionalString
    .transform((v) =>
      v
        ?.split(',')
        .map((u) => u.trim())
        .filter((u) => u !== ''),
    )
    .pipe(z.array(z.string().regex(/^postgres(ql)?:\/\//, 'must be postgres:// URLs, comma separated')).optional()),
  DATABASE_POOL_SIZE: int(10, 1),
  /** Server-side statement_timeout of every pooled connection, ms (0: none). */
  DATABASE_STATEMENT_TIMEOUT_MS: int(5000),
  /**
   * Client-side limit on one query, ms (0: none): a server that stops answering cannot enforce
   * statement_timeout itself. A connection whose query timed out is discarded, never reused.
   */
  DATABASE_QUERY_TIMEOUT_MS: int(6000),
  /** Limit on opening a connection and on waiting for a free one in the pool, ms (0: none). */
  DATABASE_CONNECT_TIMEOUT_MS: int(5000),
  REDIS_URL: optionalString,
  /**
   * Prefix of every Redis key this relay uses (bus streams, rate buckets, volume counters): two
   * relays, or two test runs, can share one Redis without seeing each other's counters.
   */
  REDIS_PREFIX: z
    .string()
    .regex(/^[A-Za-z0-9:_.-]{1,64}$/, 'letters, digits and : _ . - only, at most 64')
    .default('paidrelay:'),
  LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),

  /** Public URL of the relay as clients see it; NIP-42 AUTH events must name it. */
  RELAY_URL: optionalString,
  RELAY_NAME: z.string().default('paidrelay'),
  RELAY_DESCRIPTION: z.string().default('A paid Nostr relay: micropayments fund it and price out spam.'),
  RELAY_CONTACT: optionalString,
  /** Administrative contact pubkey (NIP-11 `pubkey`), hex. */
  RELAY_ADMIN_PUBKEY: optionalString.pipe(hex64.optional()),
  /**
   * Pubkeys (hex or npub, comma separated) that may call the NIP-86 management API (POST on the
   * relay URL, NIP-98 authorization). Empty: nobody can.
   */
  ADMIN_PUBKEYS: z.string().default(''),
  /** The relay's own secret key, hex (NIP-11 `self`). Generated into DATA_DIR when unset. */
  RELAY_SECRET_KEY: optionalString.pipe(hex64.optional()),
  RELAY_ICON: optionalString,
  RELAY_TERMS_URL: optionalString,
  /** NIP-11 `software`: the project's homepage (unset: no `software` field). */
  RELAY_SOFTWARE_URL: optionalString,
  /** Trust X-Forwarded-For / X-Real-IP for the client IP (behind an ingress). */
  TRUST_PROXY: bool.default(false),

  MAX_MESSAGE_LENGTH: int(131072, 1024),
  MAX_SUBSCRIPTIONS: int(50, 1),
  MAX_FILTERS: int(10, 1),
  MAX_LIMIT: int(1000, 1),
  DEFAULT_LIMIT: int(500, 1),
  /**
   * Memory (MB, estimated) for each replica's cache of recently read authors' newest events, which
   * answers REQs by `authors` without Postgres, kept exact by the store and the bus (0: off).
   */
  RECENT_CACHE_MB: int(64),
  MAX_SUBID_LENGTH: int(64, 1),
  MAX_EVENT_TAGS: int(2000, 1),
  MAX_CONTENT_LENGTH: int(65536, 1),
  /** created_at may be at most this many seconds in the past (0 disables). */
  CREATED_AT_LOWER_LIMIT: int(94608000),
  /** created_at may be at most this many seconds in the future. */
  CREATED_AT_UPPER_LIMIT: int(900),
  MAX_CONNECTIONS_PER_IP: int(200, 1),
  MAX_MESSAGES_PER_SECOND: int(200, 1),
  // Token buckets across all of a client's connections, shared by the replicas through Redis
  // (a per-process bucket while Redis is away). Rate per second and burst; a rate of 0 disables.
  /** EVENTs per pubkey (after the signature check). */
  RATE_EVENTS_PER_PUBKEY: int(20),
  RATE_EVENTS_BURST_PER_PUBKEY: int(100, 1),
  /** EVENTs per client address (RATE_V4_PREFIX / RATE_V6_PREFIX), before any verification. */
  RATE_EVENTS_PER_IP: int(50),
  RATE_EVENTS_BURST_PER_IP: int(300, 1),
  /** Refused unpaid EVENTs per client address that are verified and held for payment; the rest are refused unverified. */
  RATE_UNPAID_EVENTS_PER_IP: int(5),
  RATE_UNPAID_EVENTS_BURST_PER_IP: int(50, 1),
  /** REQs and COUNTs per client address. */
  RATE_REQS_PER_IP: int(50),
  RATE_REQS_BURST_PER_IP: int(200, 1),
  /** Prefix lengths that make one "address" for the per-address buckets. */
  RATE_V4_PREFIX: int(32).pipe(z.number().max(32)),
  RATE_V6_PREFIX: int(64).pipe(z.number().max(128)),
  /** Bound on one Redis round trip of the shared buckets, ms; slower means local buckets for a second. */
  RATE_REDIS_TIMEOUT_MS: int(50, 1),
  MIN_POW_DIFFICULTY: int(0),
  AUTH_REQUIRED: bool.default(false),
  /** Kinds (comma separated) served only to their author and p-tagged pubkeys, authenticated with NIP-42 (empty: none). */
  PRIVATE_KINDS: kinds('4,1059'),
  /** NIP-47 wallet traffic (23194-23197) only to filters naming the event by authors or #p. */
  PRIVATE_WALLET_TRAFFIC: bool.default(true),
  /** `members`: reads (of MEMBERS_ONLY_KINDS, or every kind) only for admitted, subscribed or allow-listed pubkeys. */
  READ_ACCESS: z.enum(['public', 'members']).default('public'),
  /** Kinds (comma separated) only members may read when READ_ACCESS=members (empty: every kind but NIP-47's). */
  MEMBERS_ONLY_KINDS: kinds(''),
  /** With READ_ACCESS=members, anyone authenticated still reads its own events and those p-tagged to it. */
  READ_OWN_ALWAYS: bool.default(true),
  /** Bytes queued to a slow reader before its connection is dropped. */
  MAX_BACKPRESSURE: int(4 * 1024 * 1024, 65536),

  // ---- payments (the relay, the admission service and NIP-11 all read these) ----
  /** One-time admission fee per pubkey, msat (0: none). A paid relay out of the box; 0 everywhere is an open relay. */
  PRICE_ADMISSION_MSAT: int(21000),
  /** Subscription fee per period, msat (0: none). */
  PRICE_SUBSCRIPTION_MSAT: int(0),
  SUBSCRIPTION_PERIOD_SECONDS: int(2592000, 1),
  /** Price of publishing one event, msat, debited from the prepaid balance (0: free). */
  PRICE_PUBLICATION_MSAT: int(0),
  /** Per-kind publication prices overriding the default, e.g. "1:100,30023:1000". */
  PRICE_PUBLICATION_KINDS: kindPrices,
  /** Extra publication price per started KiB of event JSON, msat (0: size does not matter). */
  PRICE_PUBLICATION_PER_KB_MSAT: int(0),
  /**
   * Price to publish one held event with its own invoice, no account needed (pay-per-event), msat
   * (0: the publication price; 0 with no publication price: not offered). With admission set it
   * is the alternative a refusal offers; without admission, every write costs this.
   */
  PRICE_EVENT_MSAT: int(2000),
  /** Pubkeys (hex or npub, comma separated) that write for free. */
  ALLOWED_PUBKEYS: z.string().default(''),
  /**
   * Kinds (comma separated) that are free for everyone. Empty by default: a kind free for
   * anyone is free storage (or broadcast) for anyone. Zap receipts and wallet traffic have
   * narrower free paths of their own (ZAP_RECEIPT_PUBKEYS, WALLET_PUBKEYS).
   */
  WAIVED_KINDS: kinds(''),
  /**
   * Zap receipts (kind 9735) are free only when signed by one of these keys (hex or npub,
   * comma separated: the nostrPubkey of LNURL servers the operator trusts) or by the relay's
   * own key, and when they are well formed and at most ZAP_RECEIPT_MAX_BYTES.
   */
  ZAP_RECEIPT_PUBKEYS: z.string().default(''),
  ZAP_RECEIPT_MAX_BYTES: int(16384, 1024),
  /**
   * NIP-47 wallet traffic (kinds 13194, 23194-23197) is free only from these keys (hex or npub),
   * the keys of NWC_URL (its wallet service and client) and the dev Lightning network's wallets.
   */
  WALLET_PUBKEYS: z.string().default(''),
  /** Events with at least this NIP-13 difficulty are free (0: proof of work buys nothing). */
  FREE_POW_DIFFICULTY: int(0),
  // ---- spam pricing (packages/pricing surge.ts; README "Spam priced out") ----
  /** Off: admitted keys write without a daily allowance and prices never surge (the price list alone). */
  SPAM_PRICING: bool.default(true),
  /** Daily allowance of a freshly admitted key (events, bytes of event JSON), free beyond the admission. */
  ALLOWANCE_FRESH_EVENTS: int(50),
  ALLOWANCE_FRESH_BYTES: int(256 * 1024),
  /** The full daily allowance, reached by account age (TRUST_AGE_SECONDS) or paid history (TRUST_PAID_MSAT). */
  ALLOWANCE_FULL_EVENTS: int(2000),
  ALLOWANCE_FULL_BYTES: int(16 * 1024 * 1024),
  TRUST_AGE_SECONDS: int(30 * 86400),
  TRUST_PAID_MSAT: int(10_000_000),
  /** The sliding window whose volume drives the multiplier, seconds (counted in 60 slots). */
  SURGE_WINDOW_SECONDS: int(3600, 60),
  /** The price doubles for each further step of a sender's volume in the window (0: that dimension off). */
  SURGE_STEP_EVENTS: int(100),
  SURGE_STEP_BYTES: int(1024 * 1024),
  /** The same per network (SURGE_V4_PREFIX, SURGE_V6_PREFIX): many fresh keys from one network pay too. */
  SURGE_NETWORK_STEP_EVENTS: int(500),
  SURGE_NETWORK_STEP_BYTES: int(5 * 1024 * 1024),
  SURGE_V4_PREFIX: int(24).pipe(z.number().max(32)),
  SURGE_V6_PREFIX: int(56).pipe(z.number().max(128)),
  /** The largest multiplier. */
  SURGE_MAX_MULTIPLIER: int(1024, 1),
  /** Relay-wide writes per second (all replicas) that count as full load: the price beyond allowances doubles per step while near it (0: off). */
  SURGE_CAPACITY_PER_SECOND: int(0),
  /** Refused events kept per pubkey, waiting for payment. */
  HELD_EVENTS_PER_PUBKEY: int(20, 0),
  HELD_EVENT_TTL_SECONDS: int(86400, 60),
  HELD_EVENT_MAX_BYTES: int(65536, 1024),
  /** Bytes of refused events kept in all, across every pubkey and replica (oldest dropped first). */
  HELD_EVENTS_MAX_TOTAL_BYTES: int(64 * 1024 * 1024, 65536),
  /** Bytes of refused events kept per client address (IPv4 address, IPv6 /64), oldest dropped first. */
  HELD_BYTES_PER_IP: int(1024 * 1024, 1024),
  /** The pay page, as people reach it (NIP-11 payments_url); its origin serves the admission API. */
  PAYMENTS_URL: z.string().url().default('http://localhost:7778/pay'),
  /** HTTP port of the admission service. */
  ADMISSION_PORT: int(7778, 0).pipe(z.number().max(65535)),
  /** HTTP port of the admin dashboard (apps/dashboard). */
  DASHBOARD_PORT: int(7779, 0).pipe(z.number().max(65535)),
  /** The relay's HTTP URL the dashboard page calls (NIP-86); unset: RELAY_URL in its http(s) form, else http://localhost:<PORT>/. */
  DASHBOARD_RELAY_URL: optionalString.pipe(z.string().url().optional()),
  /** Nostr Wallet Connect string of the operator's wallet; unset: the dev Lightning network (refused in production). */
  NWC_URL: optionalString,
  INVOICE_EXPIRY_SECONDS: int(900, 60),
  /** Invoices one IP may create per minute. */
  INVOICES_PER_MINUTE_PER_IP: int(20, 1),
  RECONCILE_INTERVAL_SECONDS: int(30, 1),
  /** Name of the relay's lightning address (`<name>@<payments host>`, NIP-57 zaps). */
  LNURL_NAME: z
    .string()
    .regex(/^[a-z0-9._-]+$/)
    .default('relay'),

  /** Largest batch one group-commit transaction takes. */
  WRITE_BATCH_MAX: int(500, 1),
  /** Group-commit transactions in flight at once on Postgres (PGlite always uses one). */
  WRITE_CONCURRENCY: int(2, 1),
  /** Signature-verification worker threads (0 = one fewer than the cores, at least one). */
  VERIFY_WORKERS: int(0),
  PURGE_INTERVAL_SECONDS: int(60, 1),
});

export type Config = z.infer<typeof configSchema>;

/**
 * Reads the config once: an optional JSON file named by CONFIG_FILE, overridden by the
 * environment. Throws with every invalid variable listed, so a bad deploy fails at start.
 */
export function loadConfig(env: Record<string, string | undefined> = process.env): Config {
  let fromFile: Record<string, unknown> = {};
  if (env.CONFIG_FILE) {
    fromFile = JSON.parse(readFileSync(env.CONFIG_FILE, 'utf8')) as Record<string, unknown>;
  }
  const merged: Record<string, unknown> = { ...fromFile };
  for (const key of Object.keys(configSchema.shape)) {
    const v = env[key];
    if (v !== undefined) merged[key] = v;
  }
  const parsed = configSchema.safeParse(merged);
  if (!parsed.success) {
    const lines = parsed.error.issues.map((i) => `  ${i.path.join('.')}: ${i.message}`);
    throw new Error(`invalid configuration:\n${lines.join('\n')}`);
  }
  return parsed.data;
}
