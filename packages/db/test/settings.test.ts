import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sql } from 'kysely';
import {
  getPriceSettings,
  listPriceChanges,
  openDatabase,
  seedPriceSettings,
  updatePriceSettings,
  type Database,
  type PriceSettings,
  type SpamSettings,
} from '../src/index.ts';
import { backends, type Opened } from './backends.ts';

const spam: SpamSettings = {
  enabled: true,
  allowanceFreshEvents: 50,
  allowanceFreshBytes: 262_144,
  allowanceFullEvents: 2000,
  allowanceFullBytes: 16_777_216,
  trustAgeSeconds: 2_592_000,
  trustPaidMsat: 10_000_000,
  windowSeconds: 3600,
  stepEvents: 100,
  stepBytes: 1_048_576,
  networkStepEvents: 500,
  networkStepBytes: 5_242_880,
  networkAdmissionStep: 10,
  maxMultiplier: 1024,
  capacityPerSecond: 0,
};

const seed = (admissionMsat: number): PriceSettings => ({
  admissionMsat,
  subscriptionMsat: 0,
  subscriptionPeriodSeconds: 86_400,
  publicationMsat: 0,
  publicationKinds: { '1': 100 },
  publicationPerKbMsat: 0,
  eventMsat: 2000,
  spam,
});

describe.each(backends)('stored prices on $name', (backend) => {
  let opened: Opened;
  let db: Database;

  beforeAll(async () => {
    opened = await backend.open();
    db = opened.db;
    await db.migrate();
  });
  afterAll(async () => {
    await opened?.cleanup();
  });

  it('the first seed writes the row and one history row; a later seed (another environment) changes nothing', async () => {
    expect(await getPriceSettings(db.kysely)).toBeUndefined();
    const first = await seedPriceSettings(db.kysely, seed(21000), 100);
    expect(first.seeded).toBe(true);
    expect(first.prices).toMatchObject({ ...seed(21000), updatedAt: 100, updatedBy: null });
    const second = await seedPriceSettings(db.kysely, seed(5), 200);
    expect(second.seeded).toBe(false);
    expect(second.prices).toMatchObject({ ...seed(21000), updatedAt: 100 });
    expect(await listPriceChanges(db.kysely, { limit: 10 })).toEqual([
      { id: expect.any(Number), at: 100, pubkey: null, old: null, new: seed(21000) },
    ]);
  });

  it('an update changes the named fields only and records who, when, old and new', async () => {
    const r = await db.kysely
      .transaction()
      .execute((trx) => updatePriceSettings(trx, { admissionMsat: 1000, publicationKinds: {} }, 'ab'.repeat(32), 300));
    const expected = { ...seed(21000), admissionMsat: 1000, publicationKinds: {} };
    expect(r).toEqual({ old: seed(21000), new: expected });
    expect(await getPriceSettings(db.kysely)).toEqual({ ...expected, updatedAt: 300, updatedBy: 'ab'.repeat(32) });
    const [latest, seeded] = await listPriceChanges(db.kysely, { limit: 10 });
    expect(latest).toMatchObject({ at: 300, pubkey: 'ab'.repeat(32), old: seed(21000), new: expected });
    expect(seeded.pubkey).toBeNull();
    expect(await listPriceChanges(db.kysely, { limit: 10, before: latest.id })).toEqual([seeded]);
  });

  it('the database itself refuses a negative price or a period of 0 (nothing changes)', async () => {
    const before = await getPriceSettings(db.kysely);
    for (const bad of [{ eventMsat: -1 }, { subscriptionPeriodSeconds: 0 }]) {
      await expect(db.kysely.transaction().execute((trx) => updatePriceSettings(trx, bad, 'cd'.repeat(32), 400))).rejects.toThrow(/check/i);
    }
    expect(await getPriceSettings(db.kysely)).toEqual(before);
    expect(await listPriceChanges(db.kysely, { limit: 10 })).toHaveLength(2);
  });

  it('a spam policy change merges the named fields over the stored policy; the history keeps both policies', async () => {
    const before = await getPriceSettings(db.kysely);
    const change = { spam: { enabled: false, allowanceFreshEvents: 5 } };
    const r = await db.kysely.transaction().execute((trx) => updatePriceSettings(trx, change, 'ef'.repeat(32), 500));
    const off = { ...spam, enabled: false, allowanceFreshEvents: 5 };
    expect(r.old.spam).toEqual(spam);
    expect(r.new).toEqual({ ...r.old, spam: off });
    expect(await getPriceSettings(db.kysely)).toEqual({ ...before, spam: off, updatedAt: 500, updatedBy: 'ef'.repeat(32) });
    const [latest] = await listPriceChanges(db.kysely, { limit: 1 });
    expect(latest).toMatchObject({ pubkey: 'ef'.repeat(32), old: { spam }, new: { spam: off } });
    // Switched back on, the values kept while it was off come back.
    const on = await db.kysely.transaction().execute((trx) => updatePriceSettings(trx, { spam: { enabled: true } }, 'ef'.repeat(32), 600));
    expect(on.new.spam).toEqual({ ...off, enabled: true });
  });

  it("a row from before 0008 (no spam policy) gets the environment's on the next start, recorded as a change", async () => {
    await sql`UPDATE price_settings SET spam_policy = NULL`.execute(db.kysely);
    await sql`INSERT INTO price_changes (at, pubkey, old, new) VALUES (650, NULL, NULL, ${JSON.stringify({ ...seed(1), spam: undefined })}::jsonb)`.execute(
      db.kysely,
    );
    expect((await getPriceSettings(db.kysely))?.spam).toBeNull();
    // A history row written before 0008 reads with a null policy.
    expect((await listPriceChanges(db.kysely, { limit: 1 }))[0].new.spam).toBeNull();
    await expect(
      db.kysely.transaction().execute((trx) => updatePriceSettings(trx, { spam: { maxMultiplier: 8 } }, 'ef'.repeat(32), 660)),
    ).rejects.toThrow(/no spam policy/);
    const fromEnv = { ...spam, maxMultiplier: 64 };
    const r = await seedPriceSettings(db.kysely, { ...seed(7), spam: fromEnv }, 700);
    expect(r.seeded).toBe(false);
    expect(r.prices.spam).toEqual(fromEnv);
    expect(r.prices.admissionMsat).toBe(1000);
    const [latest] = await listPriceChanges(db.kysely, { limit: 1 });
    expect(latest).toMatchObject({ at: 700, pubkey: null, old: { spam: null, admissionMsat: 1000 }, new: { spam: fromEnv } });
    // Seeded once: a later start with another environment changes nothing.
    await seedPriceSettings(db.kysely, { ...seed(7), spam: { ...spam, maxMultiplier: 2 } }, 800);
    expect((await getPriceSettings(db.kysely))?.spam).toEqual(fromEnv);
    expect((await listPriceChanges(db.kysely, { limit: 1 }))[0].id).toBe(latest.id);
  });
});

describe.runIf(backends.some((b) => b.name === 'postgres'))('concurrent first starts on Postgres', () => {
  let opened: Opened;
  beforeAll(async () => {
    opened = await backends.find((b) => b.name === 'postgres')!.open();
    await opened.db.migrate();
  });
  afterAll(async () => {
    await opened?.cleanup();
  });

  it('eight processes seeding at once with different environments: one wins, all read its prices, one history row', async () => {
    const others = await Promise.all(
      Array.from({ length: 8 }, () => openDatabase({ databaseUrl: opened.url!, dataDir: '/tmp', poolSize: 1 })),
    );
    try {
      const results = await Promise.all(others.map((d, i) => seedPriceSettings(d.kysely, seed(1000 + i), 500)));
      expect(results.filter((r) => r.seeded)).toHaveLength(1);
      const winner = results.find((r) => r.seeded)!.prices;
      for (const r of results) expect(r.prices).toEqual(winner);
      const { rows } = await sql<{ n: number }>`SELECT count(*)::int AS n FROM price_changes`.execute(opened.db.kysely);
      expect(rows[0].n).toBe(1);
    } finally {
      await Promise.all(others.map((d) => d.close()));
    }
  });
});
