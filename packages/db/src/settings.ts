/**
 * The prices every replica enforces (migration 0005_settings): one row, seeded from the
 * environment by the first process to start (later starts read it, whatever their environment
 * says), changed by admins, each change kept in `price_changes` with who made it, when, and
 * the prices before and after. All amounts are integer msat. Spam pricing's policy is stored
 * with them (migration 0008_spam_settings) and changes the same way.
 */
import { sql, type Kysely, type Transaction } from 'kysely';
import type { Schema } from './schema.ts';

export type PriceSettings = {
  admissionMsat: number;
  subscriptionMsat: number;
  subscriptionPeriodSeconds: number;
  publicationMsat: number;
  /** Publication price by kind (the kind as a decimal string), overriding `publicationMsat`. */
  publicationKinds: Record<string, number>;
  publicationPerKbMsat: number;
  eventMsat: number;
  /** Spam pricing's policy; null only in a database from before 0008 until the next start seeds it. */
  spam: SpamSettings | null;
};

/**
 * Spam pricing's policy as stored (packages/pricing surge.ts SurgePolicy, flat). `enabled`
 * false turns spam pricing off and keeps the values, so switching it back on restores them.
 */
export type SpamSettings = {
  enabled: boolean;
  allowanceFreshEvents: number;
  allowanceFreshBytes: number;
  allowanceFullEvents: number;
  allowanceFullBytes: number;
  trustAgeSeconds: number;
  trustPaidMsat: number;
  windowSeconds: number;
  stepEvents: number;
  stepBytes: number;
  networkStepEvents: number;
  networkStepBytes: number;
  networkAdmissionStep: number;
  maxMultiplier: number;
  capacityPerSecond: number;
};

/** An admin's change: the prices named, and the spam policy's fields named (merged over the stored ones). */
export type PriceSettingsChange = Partial<Omit<PriceSettings, 'spam'>> & { spam?: Partial<SpamSettings> };

/** `pubkey` null: the row seeded from the environment. `old` null on that first row. */
export type PriceChange = { id: number; at: number; pubkey: string | null; old: PriceSettings | null; new: PriceSettings };
export type StoredPrices = PriceSettings & { updatedAt: number; updatedBy: string | null };

type Db = Kysely<Schema> | Transaction<Schema>;
type Row = {
  admission_msat: number;
  subscription_msat: number;
  subscription_period_seconds: number;
  publication_msat: number;
  publication_kinds: Record<string, number> | string;
  publication_per_kb_msat: number;
  event_msat: number;
  spam_policy: SpamSettings | string | null;
  updated_at: number;
  updated_by: string | null;
};

const json = <T>(v: T | string): T => (typeof v === 'string' ? (JSON.parse(v) as T) : v);

function fromRow(r: Row): StoredPrices {
  return {
    admissionMsat: Number(r.admission_msat),
    subscriptionMsat: Number(r.subscription_msat),
    subscriptionPeriodSeconds: Number(r.subscription_period_seconds),
    publicationMsat: Number(r.publication_msat),
    publicationKinds: json(r.publication_kinds),
    publicationPerKbMsat: Number(r.publication_per_kb_msat),
    eventMsat: Number(r.event_msat),
    spam: r.spam_policy === null ? null : json(r.spam_policy),
    updatedAt: Number(r.updated_at),
    updatedBy: r.updated_by,
  };
}

/** The prices alone, in a fixed key order (as the history stores them; rows from before 0008 have no `spam`). */
export function priceSettingsOf(p: PriceSettings): PriceSettings {
  return {
    admissionMsat: p.admissionMsat,
    subscriptionMsat: p.subscriptionMsat,
    subscriptionPeriodSeconds: p.subscriptionPeriodSeconds,
    publicationMsat: p.publicationMsat,
    publicationKinds: p.publicationKinds,
    publicationPerKbMsat: p.publicationPerKbMsat,
    eventMsat: p.eventMsat,
    spam: p.spam ? spamSettingsOf(p.spam) : null,
  };
}

/** The spam policy alone, in a fixed key order. */
function spamSettingsOf(s: SpamSettings): SpamSettings {
  return {
    enabled: s.enabled,
    allowanceFreshEvents: s.allowanceFreshEvents,
    allowanceFreshBytes: s.allowanceFreshBytes,
    allowanceFullEvents: s.allowanceFullEvents,
    allowanceFullBytes: s.allowanceFullBytes,
    trustAgeSeconds: s.trustAgeSeconds,
    trustPaidMsat: s.trustPaidMsat,
    windowSeconds: s.windowSeconds,
    stepEvents: s.stepEvents,
    stepBytes: s.stepBytes,
    networkStepEvents: s.networkStepEvents,
    networkStepBytes: s.networkStepBytes,
    networkAdmissionStep: s.networkAdmissionStep,
    maxMultiplier: s.maxMultiplier,
    capacityPerSecond: s.capacityPerSecond,
  };
}

const spamJson = (s: SpamSettings | null) => (s === null ? null : JSON.stringify(spamSettingsOf(s)));

const SELECT = sql`SELECT admission_msat, subscription_msat, subscription_period_seconds, publication_msat, publication_kinds,
  publication_per_kb_msat, event_msat, spam_policy, updated_at, updated_by FROM price_settings WHERE id = 1`;

export async function getPriceSettings(db: Db): Promise<StoredPrices | undefined> {
  const { rows } = await sql<Row>`${SELECT}`.execute(db);
  return rows[0] && fromRow(rows[0]);
}

async function insertChange(db: Db, at: number, pubkey: string | null, old: PriceSettings | null, next: PriceSettings): Promise<void> {
  await sql`INSERT INTO price_changes (at, pubkey, old, new)
    VALUES (${at}, ${pubkey}, ${old === null ? null : JSON.stringify(priceSettingsOf(old))}::jsonb, ${JSON.stringify(priceSettingsOf(next))}::jsonb)`.execute(
    db,
  );
}

/**
 * The stored prices, writing `seed` first when there are none (`seeded`: this call wrote
 * them). Concurrent first starts do not race: the row's primary key lets one insert win; the
 * others wait for its commit, insert nothing and read the winner's prices. A row from before
 * 0008 gets the seed's spam policy the same way (the first start after the upgrade writes it,
 * recorded as a change by the environment).
 */
export async function seedPriceSettings(
  db: Kysely<Schema>,
  seed: PriceSettings,
  at: number,
): Promise<{ prices: StoredPrices; seeded: boolean }> {
  const seeded = await db.transaction().execute(async (trx) => {
    const { rows } = await sql<{ id: number }>`
      INSERT INTO price_settings (id, admission_msat, subscription_msat, subscription_period_seconds, publication_msat,
        publication_kinds, publication_per_kb_msat, event_msat, spam_policy, updated_at, updated_by)
      VALUES (1, ${seed.admissionMsat}, ${seed.subscriptionMsat}, ${seed.subscriptionPeriodSeconds}, ${seed.publicationMsat},
        ${JSON.stringify(seed.publicationKinds)}::jsonb, ${seed.publicationPerKbMsat}, ${seed.eventMsat},
        ${spamJson(seed.spam)}::jsonb, ${at}, NULL)
      ON CONFLICT (id) DO NOTHING RETURNING id`.execute(trx);
    if (rows.length > 0) {
      await insertChange(trx, at, null, null, seed);
      return true;
    }
    if (seed.spam) await seedSpamSettings(trx, seed.spam, at);
    return false;
  });
  const prices = await getPriceSettings(db);
  if (!prices) throw new Error('price_settings: no row after seeding');
  return { prices, seeded };
}

/** The spam policy of a row that has none yet (from before 0008); the row lock lets one start write it. */
async function seedSpamSettings(trx: Transaction<Schema>, spam: SpamSettings, at: number): Promise<void> {
  const { rows } = await sql<Row>`UPDATE price_settings SET spam_policy = ${spamJson(spam)}::jsonb
    WHERE id = 1 AND spam_policy IS NULL
    RETURNING admission_msat, subscription_msat, subscription_period_seconds, publication_msat, publication_kinds,
      publication_per_kb_msat, event_msat, spam_policy, updated_at, updated_by`.execute(trx);
  if (!rows[0]) return;
  const next = fromRow(rows[0]);
  await insertChange(trx, at, null, { ...next, spam: null }, next);
}

/**
 * An admin's change, in the caller's transaction: the row is locked, `change` applied over it
 * (fields not named keep their value; `publicationKinds`, when named, replaces the whole map;
 * the spam policy's fields named are merged over the stored ones), and the change recorded.
 * Returns the prices before and after.
 */
export async function updatePriceSettings(
  trx: Transaction<Schema>,
  change: PriceSettingsChange,
  by: string,
  at: number,
): Promise<{ old: PriceSettings; new: PriceSettings }> {
  const { rows } = await sql<Row>`${SELECT} FOR UPDATE`.execute(trx);
  if (!rows[0]) throw new Error('price_settings: not seeded yet');
  const old = priceSettingsOf(fromRow(rows[0]));
  const { spam, ...prices } = change;
  if (spam && !old.spam) throw new Error('price_settings: no spam policy stored yet (seeded on the next start)');
  const next = priceSettingsOf({ ...old, ...prices, spam: spam && old.spam ? { ...old.spam, ...spam } : old.spam });
  await sql`UPDATE price_settings SET admission_msat = ${next.admissionMsat}, subscription_msat = ${next.subscriptionMsat},
      subscription_period_seconds = ${next.subscriptionPeriodSeconds}, publication_msat = ${next.publicationMsat},
      publication_kinds = ${JSON.stringify(next.publicationKinds)}::jsonb, publication_per_kb_msat = ${next.publicationPerKbMsat},
      event_msat = ${next.eventMsat}, spam_policy = ${spamJson(next.spam)}::jsonb, updated_at = ${at}, updated_by = ${by}
    WHERE id = 1`.execute(trx);
  await insertChange(trx, at, by, old, next);
  return { old, new: next };
}

/** Changes, newest first: `limit` of them with id < `before` (paging). */
export async function listPriceChanges(db: Db, o: { limit: number; before?: number }): Promise<PriceChange[]> {
  const where = o.before === undefined ? sql`` : sql` WHERE id < ${o.before}`;
  const { rows } = await sql<{ id: number; at: number; pubkey: string | null; old: unknown; new: unknown }>`
    SELECT id, at, pubkey, old, new FROM price_changes${where} ORDER BY id DESC LIMIT ${o.limit}`.execute(db);
  return rows.map((r) => ({
    id: Number(r.id),
    at: Number(r.at),
    pubkey: r.pubkey,
    old: r.old === null ? null : priceSettingsOf(json(r.old as PriceSettings)),
    new: priceSettingsOf(json(r.new as PriceSettings)),
  }));
}
