import { PRICES_CHANNEL, type Bus } from '@paidrelay/bus';
import {
  getPriceSettings,
  priceSettingsOf,
  seedPriceSettings,
  type Database,
  type PriceSettings,
  type PriceSettingsChange,
  type SpamSettings,
} from '@paidrelay/db';
import { nowSeconds } from '@paidrelay/nostr';
import { DEFAULT_SURGE, type Prices, type Pricing, type SurgePolicy } from '@paidrelay/pricing';
import type { Logger } from 'pino';
import { z } from 'zod';

/** How often each process re-reads the prices whatever the bus says (the bus may be down). */
export const PRICES_RELOAD_MS = 5000;

/** The settings of a pricing: its prices, and its spam policy (stored switched off when it has none). */
export function settingsOfPrices(p: Prices & Pick<Pricing, 'surge' | 'surgeSeed'>): PriceSettings {
  return {
    admissionMsat: p.admissionMsat,
    subscriptionMsat: p.subscriptionMsat,
    subscriptionPeriodSeconds: p.subscriptionPeriodSeconds,
    publicationMsat: p.publicationMsat,
    publicationKinds: Object.fromEntries([...p.publicationKinds].map(([k, v]) => [String(k), v])),
    publicationPerKbMsat: p.publicationPerKbMsat,
    eventMsat: p.eventMsat,
    spam: spamSettingsOf(p.surge ?? p.surgeSeed ?? DEFAULT_SURGE, p.surge !== undefined),
  };
}

/** A spam policy as stored. */
export function spamSettingsOf(p: SurgePolicy, enabled: boolean): SpamSettings {
  return {
    enabled,
    allowanceFreshEvents: p.allowanceFresh.events,
    allowanceFreshBytes: p.allowanceFresh.bytes,
    allowanceFullEvents: p.allowanceFull.events,
    allowanceFullBytes: p.allowanceFull.bytes,
    trustAgeSeconds: p.trustAgeSeconds,
    trustPaidMsat: p.trustPaidMsat,
    windowSeconds: p.windowSeconds,
    stepEvents: p.pubkeyStep.events,
    stepBytes: p.pubkeyStep.bytes,
    networkStepEvents: p.networkStep.events,
    networkStepBytes: p.networkStep.bytes,
    networkAdmissionStep: p.networkAdmissionStep,
    maxMultiplier: p.maxMultiplier,
    capacityPerSecond: p.capacityPerSecond,
  };
}

/** The policy the gate applies, or none while spam pricing is switched off (or not stored yet). */
export function surgeOfSettings(s: SpamSettings | null): SurgePolicy | undefined {
  if (!s?.enabled) return undefined;
  return {
    allowanceFresh: { events: s.allowanceFreshEvents, bytes: s.allowanceFreshBytes },
    allowanceFull: { events: s.allowanceFullEvents, bytes: s.allowanceFullBytes },
    trustAgeSeconds: s.trustAgeSeconds,
    trustPaidMsat: s.trustPaidMsat,
    windowSeconds: s.windowSeconds,
    pubkeyStep: { events: s.stepEvents, bytes: s.stepBytes },
    networkStep: { events: s.networkStepEvents, bytes: s.networkStepBytes },
    networkAdmissionStep: s.networkAdmissionStep,
    maxMultiplier: s.maxMultiplier,
    capacityPerSecond: s.capacityPerSecond,
  };
}

function pricesOfSettings({ spam: _, ...s }: PriceSettings): Prices {
  return { ...s, publicationKinds: new Map(Object.entries(s.publicationKinds).map(([k, v]) => [Number(k), v])) };
}

/** Prices as the HTTP API shows them and NIP-86 `setprices` takes them: snake_case, msat. */
export function pricesJson(p: PriceSettings) {
  return {
    admission_msat: p.admissionMsat,
    subscription_msat: p.subscriptionMsat,
    subscription_period_seconds: p.subscriptionPeriodSeconds,
    publication_msat: p.publicationMsat,
    publication_kinds: p.publicationKinds,
    publication_per_kb_msat: p.publicationPerKbMsat,
    event_msat: p.eventMsat,
  };
}

/** The spam policy as NIP-86 shows it and `setprices` takes it (`spam`): snake_case; null before it is stored. */
export function spamJson(s: SpamSettings | null) {
  if (s === null) return null;
  return {
    enabled: s.enabled,
    allowance_fresh_events: s.allowanceFreshEvents,
    allowance_fresh_bytes: s.allowanceFreshBytes,
    allowance_full_events: s.allowanceFullEvents,
    allowance_full_bytes: s.allowanceFullBytes,
    trust_age_seconds: s.trustAgeSeconds,
    trust_paid_msat: s.trustPaidMsat,
    window_seconds: s.windowSeconds,
    step_events: s.stepEvents,
    step_bytes: s.stepBytes,
    network_step_events: s.networkStepEvents,
    network_step_bytes: s.networkStepBytes,
    network_admission_step: s.networkAdmissionStep,
    max_multiplier: s.maxMultiplier,
    capacity_per_second: s.capacityPerSecond,
  };
}

/** The prices and the spam policy, as NIP-86 `getprices` and the price history show them. */
export function settingsJson(s: PriceSettings) {
  return { ...pricesJson(s), spam: spamJson(s.spam) };
}

const integer = { error: 'must be an integer (msat)' };
const msat = z.number(integer).int(integer).min(0, { error: 'must not be negative' }).max(Number.MAX_SAFE_INTEGER, integer);
const kind = z
  .string()
  .regex(/^(0|[1-9]\d{0,4})$/)
  .refine((k) => Number(k) <= 65535);
const count = (what: string, max: number) => {
  const e = { error: `must be a whole number of ${what}` };
  return z
    .number(e)
    .int(e)
    .min(0, { error: 'must not be negative' })
    .max(max, { error: `must be at most ${max}` });
};
const spamChange = z
  .strictObject({
    enabled: z.boolean({ error: 'must be true or false' }),
    allowance_fresh_events: count('events', 1e9),
    allowance_fresh_bytes: count('bytes', 2 ** 40),
    allowance_full_events: count('events', 1e9),
    allowance_full_bytes: count('bytes', 2 ** 40),
    trust_age_seconds: count('seconds', 100 * 365 * 86_400),
    trust_paid_msat: msat,
    // Counted in 60 slots: a window under a minute would need slots under a second.
    window_seconds: count('seconds', 7 * 86_400).min(60, { error: 'must be at least 60 seconds' }),
    step_events: count('events', 1e9),
    step_bytes: count('bytes', 2 ** 40),
    network_step_events: count('events', 1e9),
    network_step_bytes: count('bytes', 2 ** 40),
    network_admission_step: count('admissions', 1e9),
    max_multiplier: count('times the base', 2 ** 20).min(1, { error: 'must be at least 1 (no surge)' }),
    capacity_per_second: count('writes per second', 1e9),
  })
  .partial()
  .refine((o) => Object.keys(o).length > 0, 'name at least one field of the spam policy to change');

const priceChange = z
  .strictObject({
    admission_msat: msat,
    subscription_msat: msat,
    subscription_period_seconds: z
      .number()
      .int()
      .min(1)
      .max(100 * 365 * 86_400),
    publication_msat: msat,
    publication_kinds: z.record(kind, msat, { error: 'must be {"<kind 0-65535>": msat, ...}' }),
    publication_per_kb_msat: msat,
    event_msat: msat,
    spam: spamChange,
  })
  .partial()
  .refine((o) => Object.keys(o).length > 0, 'name at least one price to change');

/**
 * A `setprices` parameter: the prices to change (integer msat, none negative) and the fields of
 * the spam policy to change (`spam`), or why it is not one.
 */
export function parsePriceChange(x: unknown): { ok: true; change: PriceSettingsChange } | { ok: false; error: string } {
  const r = priceChange.safeParse(x);
  if (!r.success) return { ok: false, error: r.error.issues.map((i) => `${i.path.join('.') || 'params[0]'}: ${i.message}`).join('; ') };
  const o = r.data;
  const change: PriceSettingsChange = {
    admissionMsat: o.admission_msat,
    subscriptionMsat: o.subscription_msat,
    subscriptionPeriodSeconds: o.subscription_period_seconds,
    publicationMsat: o.publication_msat,
    publicationKinds: o.publication_kinds,
    publicationPerKbMsat: o.publication_per_kb_msat,
    eventMsat: o.event_msat,
  };
  for (const k of Object.keys(change) as (keyof PriceSettingsChange)[]) if (change[k] === undefined) delete change[k];
  if (o.spam) change.spam = spamChangeOf(o.spam);
  return { ok: true, change };
}

function spamChangeOf(o: z.infer<typeof spamChange>): Partial<SpamSettings> {
  const s: Partial<SpamSettings> = {
    enabled: o.enabled,
    allowanceFreshEvents: o.allowance_fresh_events,
    allowanceFreshBytes: o.allowance_fresh_bytes,
    allowanceFullEvents: o.allowance_full_events,
    allowanceFullBytes: o.allowance_full_bytes,
    trustAgeSeconds: o.trust_age_seconds,
    trustPaidMsat: o.trust_paid_msat,
    windowSeconds: o.window_seconds,
    stepEvents: o.step_events,
    stepBytes: o.step_bytes,
    networkStepEvents: o.network_step_events,
    networkStepBytes: o.network_step_bytes,
    networkAdmissionStep: o.network_admission_step,
    maxMultiplier: o.max_multiplier,
    capacityPerSecond: o.capacity_per_second,
  };
  for (const k of Object.keys(s) as (keyof SpamSettings)[]) if (s[k] === undefined) delete s[k];
  return s;
}

/**
 * What is wrong with a spam policy as a whole (after a change is merged over the stored one),
 * or undefined: a fresh key's allowance above the full one would shrink as trust grows.
 */
export function spamPolicyProblem(s: SpamSettings | null): string | undefined {
  if (!s) return undefined;
  const problems: string[] = [];
  if (s.allowanceFreshEvents > s.allowanceFullEvents) {
    problems.push(
      `spam.allowance_fresh_events (${s.allowanceFreshEvents}) must not exceed spam.allowance_full_events (${s.allowanceFullEvents})`,
    );
  }
  if (s.allowanceFreshBytes > s.allowanceFullBytes) {
    problems.push(
      `spam.allowance_fresh_bytes (${s.allowanceFreshBytes}) must not exceed spam.allowance_full_bytes (${s.allowanceFullBytes})`,
    );
  }
  return problems.length > 0 ? problems.join('; ') : undefined;
}

/**
 * The prices as they are now in Postgres, for one process: seeded from the environment on the
 * first start of any process, re-read when any process announces a change on the bus (within
 * a second), when the bus reports a message may have been missed, and every PRICES_RELOAD_MS. Its `pricing` is the one live object every consumer
 * reads (the gate, refusals, invoices, /api/pricing, NIP-11): its price fields are getters of
 * the current prices, so nobody keeps a stale copy, and the pricing functions stay pure.
 */
export class LivePrices {
  private current: PriceSettings;
  private prices: Prices;
  private surge: SurgePolicy | undefined;
  /** Bumped whenever the prices change (NIP-11 renders again). */
  version = 0;
  readonly pricing: Pricing;
  private timer?: NodeJS.Timeout;
  private chain: Promise<void> = Promise.resolve();

  private constructor(
    private readonly db: Database,
    private readonly bus: Bus,
    private readonly log: Logger,
    base: Pricing,
    allowed?: () => ReadonlySet<string>,
  ) {
    this.current = settingsOfPrices(base);
    this.prices = base;
    this.surge = base.surge;
    const live = () => this.prices;
    const surge = () => this.surge;
    const pricing: Pricing = {
      ...base,
      get admissionMsat() {
        return live().admissionMsat;
      },
      get subscriptionMsat() {
        return live().subscriptionMsat;
      },
      get subscriptionPeriodSeconds() {
        return live().subscriptionPeriodSeconds;
      },
      get publicationMsat() {
        return live().publicationMsat;
      },
      get publicationKinds() {
        return live().publicationKinds;
      },
      get publicationPerKbMsat() {
        return live().publicationPerKbMsat;
      },
      get eventMsat() {
        return live().eventMsat;
      },
      // Spam pricing as the admins set it: undefined while it is switched off.
      get surge() {
        return surge();
      },
    };
    // The relay's allow-list (ALLOWED_PUBKEYS joined to the admins' NIP-86 list) as it is now.
    if (allowed) Object.defineProperty(pricing, 'allowed', { get: allowed, enumerable: true });
    this.pricing = pricing;
  }

  /** `base`: the config's pricing; its prices are the seed, its free paths are kept as they are. */
  static async start(
    db: Database,
    bus: Bus,
    log: Logger,
    base: Pricing,
    opts: { allowed?: () => ReadonlySet<string>; reloadMs?: number } = {},
  ): Promise<LivePrices> {
    const live = new LivePrices(db, bus, log, base, opts.allowed);
    // Subscribed before the first read: a change made meanwhile is not missed.
    await bus.subscribe(PRICES_CHANNEL, () => void live.reload());
    // A message the bus may have missed may have been a change of prices: read them again now.
    bus.onLoss(() => void (live.timer && live.reload()));
    const { prices, seeded } = await seedPriceSettings(db.kysely, live.current, nowSeconds());
    if (seeded) log.info({ prices: settingsJson(prices) }, 'prices seeded from the environment');
    else log.debug({ prices: settingsJson(prices) }, 'prices read from the database (the environment only seeds them)');
    live.set(prices);
    live.timer = setInterval(() => void live.reload(), opts.reloadMs ?? PRICES_RELOAD_MS);
    live.timer.unref();
    return live;
  }

  /** The prices now, as stored. */
  get settings(): PriceSettings {
    return this.current;
  }

  private set(s: PriceSettings): void {
    const next = priceSettingsOf(s);
    if (JSON.stringify(next) === JSON.stringify(this.current) && this.version > 0) return;
    this.current = next;
    this.prices = pricesOfSettings(next);
    this.surge = surgeOfSettings(next.spam);
    this.version++;
  }

  /** Re-reads the prices; resolves after a read that started after this call (reads are queued, never overlap). */
  reload(): Promise<void> {
    this.chain = this.chain.then(async () => {
      try {
        const s = await getPriceSettings(this.db.kysely);
        if (s) this.set(s);
      } catch (err) {
        this.log.warn({ err }, 'prices: reload failed, keeping the current prices');
      }
    });
    return this.chain;
  }

  /** After a change committed by this process: every process (this one first) re-reads the prices. */
  async changed(): Promise<void> {
    await this.reload();
    this.bus.publish(PRICES_CHANNEL, 'changed');
  }

  close(): void {
    clearInterval(this.timer);
    this.timer = undefined;
  }
}
