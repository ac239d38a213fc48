import { PRICES_CHANNEL, type Bus } from '@paidrelay/bus';
import { getPriceSettings, priceSettingsOf, seedPriceSettings, type Database, type PriceSettings } from '@paidrelay/db';
import { nowSeconds } from '@paidrelay/nostr';
import type { Prices, Pricing } from '@paidrelay/pricing';
import type { Logger } from 'pino';
import { z } from 'zod';

/** How often each process re-reads the prices whatever the bus says (the bus may be down). */
export const PRICES_RELOAD_MS = 5000;

export function settingsOfPrices(p: Prices): PriceSettings {
  return {
    admissionMsat: p.admissionMsat,
    subscriptionMsat: p.subscriptionMsat,
    subscriptionPeriodSeconds: p.subscriptionPeriodSeconds,
    publicationMsat: p.publicationMsat,
    publicationKinds: Object.fromEntries([...p.publicationKinds].map(([k, v]) => [String(k), v])),
    publicationPerKbMsat: p.publicationPerKbMsat,
    eventMsat: p.eventMsat,
  };
}

function pricesOfSettings(s: PriceSettings): Prices {
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

const integer = { error: 'must be an integer (msat)' };
const msat = z.number(integer).int(integer).min(0, { error: 'must not be negative' }).max(Number.MAX_SAFE_INTEGER, integer);
const kind = z
  .string()
  .regex(/^(0|[1-9]\d{0,4})$/)
  .refine((k) => Number(k) <= 65535);
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
  })
  .partial()
  .refine((o) => Object.keys(o).length > 0, 'name at least one price to change');

/** A `setprices` parameter: the prices to change (integer msat, none negative), or why it is not one. */
export function parsePriceChange(x: unknown): { ok: true; change: Partial<PriceSettings> } | { ok: false; error: string } {
  const r = priceChange.safeParse(x);
  if (!r.success) return { ok: false, error: r.error.issues.map((i) => `${i.path.join('.') || 'params[0]'}: ${i.message}`).join('; ') };
  const o = r.data;
  const change: Partial<PriceSettings> = {
    admissionMsat: o.admission_msat,
    subscriptionMsat: o.subscription_msat,
    subscriptionPeriodSeconds: o.subscription_period_seconds,
    publicationMsat: o.publication_msat,
    publicationKinds: o.publication_kinds,
    publicationPerKbMsat: o.publication_per_kb_msat,
    eventMsat: o.event_msat,
  };
  for (const k of Object.keys(change) as (keyof PriceSettings)[]) if (change[k] === undefined) delete change[k];
  return { ok: true, change };
}

/**
 * The prices as they are now in Postgres, for one process: seeded from the environment on the
 * first start of any process, re-read when any process announces a change on the bus (within
 * a second) and every PRICES_RELOAD_MS. Its `pricing` is the one live object every consumer
 * reads (the gate, refusals, invoices, /api/pricing, NIP-11): its price fields are getters of
 * the current prices, so nobody keeps a stale copy, and the pricing functions stay pure.
 */
export class LivePrices {
  private current: PriceSettings;
  private prices: Prices;
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
    const live = () => this.prices;
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
    opts: { allowed?: () => ReadonlySet<string> } = {},
  ): Promise<LivePrices> {
    const live = new LivePrices(db, bus, log, base, opts.allowed);
    // Subscribed before the first read: a change made meanwhile is not missed.
    await bus.subscribe(PRICES_CHANNEL, () => void live.reload());
    const { prices, seeded } = await seedPriceSettings(db.kysely, live.current, nowSeconds());
    if (seeded) log.info({ prices: pricesJson(prices) }, 'prices seeded from the environment');
    else log.debug({ prices: pricesJson(prices) }, 'prices read from the database (the environment only seeds them)');
    live.set(prices);
    live.timer = setInterval(() => void live.reload(), PRICES_RELOAD_MS);
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
  }
}
