import type { Config } from '@paidrelay/config';
import { DEFAULT_SURGE, type SurgePolicy } from './surge.ts';
import { isHex64, parsePubkeyList } from '@paidrelay/nostr';
import { getPublicKey } from 'nostr-tools/pure';
import { randomBytes } from 'node:crypto';

/** The prices an admin can change at run time (the environment only seeds them). All msat. */
export type Prices = {
  admissionMsat: number;
  subscriptionMsat: number;
  subscriptionPeriodSeconds: number;
  publicationMsat: number;
  publicationKinds: ReadonlyMap<number, number>;
  publicationPerKbMsat: number;
  eventMsat: number;
};

/** What the operator charges and waives: the prices, and the free paths from the config that every app shares. */
export type Pricing = Prices & {
  allowed: ReadonlySet<string>;
  waivedKinds: ReadonlySet<number>;
  /** Keys whose well-formed zap receipts (kind 9735) are free: the relay's own and trusted LNURL servers. */
  zapReceiptPubkeys: ReadonlySet<string>;
  zapReceiptMaxBytes: number;
  /** Keys whose NIP-47 wallet traffic is free: the wallets this relay itself uses. */
  walletPubkeys: ReadonlySet<string>;
  freePowDifficulty: number;
  paymentsUrl: string;
  /**
   * Spam pricing's policy (allowances, surge, load), or undefined when it is off. Read at each
   * decision: LivePrices keeps it as the admins set it.
   */
  surge?: SurgePolicy;
  /**
   * The config's spam policy whether SPAM_PRICING is on or off: what LivePrices stores on a
   * first start (switched off, it is kept for when an admin switches it on).
   */
  surgeSeed?: SurgePolicy;
};

/** Pubkeys are parsed by the protocol core; re-exported for the admission API. */
export { parsePubkey } from '@paidrelay/nostr';

export type Product = 'admission' | 'subscription' | 'credit' | 'event';

function pubkeySet(name: string, value: string, extra: Iterable<string> = []): Set<string> {
  return new Set([...extra, ...parsePubkeyList(name, value)]);
}

/** The two keys of a Nostr Wallet Connect string: the wallet service's and the client's (from its secret). */
export function nwcPubkeys(nwcUrl: string): string[] {
  let u: URL;
  try {
    u = new URL(nwcUrl);
  } catch {
    throw new Error('NWC_URL is not a nostr+walletconnect:// URL');
  }
  const keys: string[] = [];
  const wallet = (u.hostname || u.pathname.replace(/^\/+/, '')).toLowerCase();
  if (isHex64(wallet)) keys.push(wallet);
  const secret = u.searchParams.get('secret') ?? '';
  if (isHex64(secret.toLowerCase())) keys.push(getPublicKey(Buffer.from(secret, 'hex')));
  return keys;
}

/** What the config cannot know: the relay's own key and the wallets that run over this relay. */
export type PricingContext = { relayPubkey?: string; walletPubkeys?: Iterable<string> };

/** The prices of the config (the seed of the stored prices on a first start). */
export function pricesFromConfig(config: Config): Prices {
  return {
    admissionMsat: config.PRICE_ADMISSION_MSAT,
    subscriptionMsat: config.PRICE_SUBSCRIPTION_MSAT,
    subscriptionPeriodSeconds: config.SUBSCRIPTION_PERIOD_SECONDS,
    publicationMsat: config.PRICE_PUBLICATION_MSAT,
    publicationKinds: new Map(config.PRICE_PUBLICATION_KINDS),
    publicationPerKbMsat: config.PRICE_PUBLICATION_PER_KB_MSAT,
    eventMsat: config.PRICE_EVENT_MSAT,
  };
}

export function pricingFromConfig(config: Config, extra: PricingContext = {}): Pricing {
  const allowed = pubkeySet('ALLOWED_PUBKEYS', config.ALLOWED_PUBKEYS);
  const zapReceiptPubkeys = pubkeySet('ZAP_RECEIPT_PUBKEYS', config.ZAP_RECEIPT_PUBKEYS, extra.relayPubkey ? [extra.relayPubkey] : []);
  const walletPubkeys = pubkeySet('WALLET_PUBKEYS', config.WALLET_PUBKEYS, [
    ...(extra.walletPubkeys ?? []),
    ...(config.NWC_URL ? nwcPubkeys(config.NWC_URL) : []),
  ]);
  const waivedKinds = new Set(config.WAIVED_KINDS);
  return {
    ...pricesFromConfig(config),
    allowed,
    waivedKinds,
    zapReceiptPubkeys,
    zapReceiptMaxBytes: config.ZAP_RECEIPT_MAX_BYTES,
    walletPubkeys,
    freePowDifficulty: config.FREE_POW_DIFFICULTY,
    paymentsUrl: config.PAYMENTS_URL,
    surge: surgePolicyFromConfig(config),
    surgeSeed: surgeValuesFromConfig(config),
  };
}

/** Admission is needed before writing when either fee is set. */
export function requiresAdmission(p: Pricing): boolean {
  return p.admissionMsat > 0 || p.subscriptionMsat > 0;
}

/** Any write can cost money at all. */
export function isPaid(p: Pricing): boolean {
  return requiresAdmission(p) || hasPublicationPrice(p) || p.eventMsat > 0;
}

function hasPublicationPrice(p: Pricing): boolean {
  if (p.publicationMsat > 0 || p.publicationPerKbMsat > 0) return true;
  for (const v of p.publicationKinds.values()) if (v > 0) return true;
  return false;
}

/**
 * What a person can buy here, in the order the pay page offers it. A product that would cost
 * nothing (or buy nothing) is not sold: a 0 sat invoice cannot be paid.
 */
export function productsOnSale(p: Pricing): { product: Product; label: string }[] {
  const out: { product: Product; label: string }[] = [];
  if (p.eventMsat > 0 || hasPublicationPrice(p)) {
    out.push({
      product: 'event',
      label: p.eventMsat > 0 ? `${formatSats(p.eventMsat)} for one held event` : 'one held event at its publication price',
    });
  }
  if (p.admissionMsat > 0) out.push({ product: 'admission', label: `admission for ${formatSats(p.admissionMsat)}` });
  if (p.subscriptionMsat > 0) {
    out.push({
      product: 'subscription',
      label: `${Math.round(p.subscriptionPeriodSeconds / 86400)} days of writing for ${formatSats(p.subscriptionMsat)}`,
    });
  }
  if (hasPublicationPrice(p)) out.push({ product: 'credit', label: 'prepaid credit for publication prices' });
  return out;
}

/** The 400 message for a product that is not on sale: what is, instead. */
export function notOnSale(p: Pricing, product: string): string {
  const list = productsOnSale(p).filter((o) => o.product !== product);
  const instead =
    list.length > 0 ? `; buy ${list.map((o) => `"${o.product}" (${o.label})`).join(' or ')} instead` : '; writing here is free';
  return `this relay does not sell "${product}"${instead}`;
}

/** Price of publishing one event from a prepaid balance. */
export function publicationPrice(p: Pricing, kind: number, jsonBytes: number): number {
  const base = p.publicationKinds.get(kind) ?? p.publicationMsat;
  return base + Math.ceil(jsonBytes / 1024) * p.publicationPerKbMsat;
}

/** Price of one held event's own invoice (pay-per-event). */
export function heldEventPrice(p: Pricing, kind: number, jsonBytes: number): number {
  return p.eventMsat > 0 ? p.eventMsat : publicationPrice(p, kind, jsonBytes);
}

/** An amount as a person reads it: "1 sat", "21 sats", "10,000 sats", "1.5 sats" (msat kept exact). */
export function formatSats(msat: number): string {
  // -0 is not remembered: a Map takes it for 0, and the formatter writes "-0".
  let text = Object.is(msat, -0) ? undefined : written.get(msat);
  if (text === undefined) {
    const sats = msat / 1000;
    text = `${SATS.format(sats)} ${sats === 1 ? 'sat' : 'sats'}`;
    if (!Object.is(msat, -0)) remember(written, msat, text);
  }
  return text;
}
/** Made once: toLocaleString makes a formatter per call, which a flood of refusals pays for. */
const SATS = new Intl.NumberFormat('en-US', { maximumFractionDigits: 3 });
/**
 * Amounts already written out: a flood's refusals name the same few prices, and even a formatter
 * made once costs a microsecond a call. Bounded: forgotten all at once when full.
 */
const written = new Map<number, string>();
const WRITTEN_MAX = 1024;

function remember<K, V>(map: Map<K, V>, key: K, value: V): void {
  if (map.size >= WRITTEN_MAX) map.clear();
  map.set(key, value);
}

/**
 * The pay page for this refused event (`<pay page>/e/<event id>`: the id alone names the held
 * event and its author, short enough to read and type), or for this pubkey. The page still
 * takes the long form `?pubkey=<hex>&event=<id>`.
 */
export function payUrl(p: Pricing, pubkey: string, eventId?: string): string {
  // An event id (hex) goes into the path as it is: only the pay page's URL needs the parser, once.
  if (eventId && isHex64(eventId)) {
    const around = eventUrlAround(p.paymentsUrl);
    if (around) return around.before + eventId + around.after;
  }
  const u = new URL(p.paymentsUrl);
  if (eventId) {
    u.pathname = `${u.pathname.replace(/\/$/, '')}/e/${eventId}`;
    return u.toString();
  }
  u.searchParams.set('pubkey', pubkey);
  return u.toString();
}

/**
 * The event pay URL of a pay page split around the place of the id, made by the URL parser with a
 * random stand-in for the id (so it is exactly what the parser writes, a query or fragment of the
 * pay page included); undefined when the stand-in does not come out once and unchanged.
 */
function eventUrlAround(paymentsUrl: string): { before: string; after: string } | undefined {
  let around = eventUrls.get(paymentsUrl);
  if (around === undefined) {
    const u = new URL(paymentsUrl);
    u.pathname = `${u.pathname.replace(/\/$/, '')}/e/${STAND_IN}`;
    const url = u.toString();
    const at = url.indexOf(STAND_IN);
    around = at >= 0 && url.indexOf(STAND_IN, at + 1) < 0 ? { before: url.slice(0, at), after: url.slice(at + STAND_IN.length) } : null;
    remember(eventUrls, paymentsUrl, around);
  }
  return around ?? undefined;
}
/** Per pay page URL (one, unless an admin moves it). */
const eventUrls = new Map<string, { before: string; after: string } | null>();
const STAND_IN = randomBytes(32).toString('hex');

/** NIP-11 fields describing exactly what is enforced. */
export function nip11Payments(p: Pricing): {
  payment_required: boolean;
  restricted_writes: boolean;
  payments_url?: string;
  fees?: Record<string, unknown[]>;
} {
  if (!isPaid(p)) return { payment_required: false, restricted_writes: false };
  const fees: Record<string, unknown[]> = {};
  if (p.admissionMsat > 0) fees.admission = [{ amount: p.admissionMsat, unit: 'msats' }];
  if (p.subscriptionMsat > 0) {
    fees.subscription = [{ amount: p.subscriptionMsat, unit: 'msats', period: p.subscriptionPeriodSeconds }];
  }
  const publication: unknown[] = [];
  for (const [kind, amount] of p.publicationKinds) if (amount > 0) publication.push({ kinds: [kind], amount, unit: 'msats' });
  if (p.publicationMsat > 0) publication.push({ amount: p.publicationMsat, unit: 'msats' });
  if (p.publicationPerKbMsat > 0) publication.push({ amount: p.publicationPerKbMsat, unit: 'msats', per: 'kilobyte' });
  if (p.eventMsat > 0) publication.push({ amount: p.eventMsat, unit: 'msats', per: 'event', account: false });
  if (publication.length > 0) fees.publication = publication;
  return { payment_required: true, restricted_writes: true, payments_url: p.paymentsUrl, fees };
}

/** The spam pricing policy of the config (surge.ts), or none with SPAM_PRICING off. */
export function surgePolicyFromConfig(c: Config): SurgePolicy | undefined {
  return c.SPAM_PRICING ? surgeValuesFromConfig(c) : undefined;
}

/** The config's spam policy values, whatever SPAM_PRICING says (the seed of the stored policy). */
export function surgeValuesFromConfig(c: Config): SurgePolicy {
  return {
    ...DEFAULT_SURGE,
    allowanceFresh: { events: c.ALLOWANCE_FRESH_EVENTS, bytes: c.ALLOWANCE_FRESH_BYTES },
    allowanceFull: { events: c.ALLOWANCE_FULL_EVENTS, bytes: c.ALLOWANCE_FULL_BYTES },
    trustAgeSeconds: c.TRUST_AGE_SECONDS,
    trustPaidMsat: c.TRUST_PAID_MSAT,
    windowSeconds: c.SURGE_WINDOW_SECONDS,
    pubkeyStep: { events: c.SURGE_STEP_EVENTS, bytes: c.SURGE_STEP_BYTES },
    networkStep: { events: c.SURGE_NETWORK_STEP_EVENTS, bytes: c.SURGE_NETWORK_STEP_BYTES },
    maxMultiplier: c.SURGE_MAX_MULTIPLIER,
    capacityPerSecond: c.SURGE_CAPACITY_PER_SECOND,
  };
}
