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
} from '../src/index.ts';
import { backends, type Opened } from './backends.ts';

const seed = (admissionMsat: number): PriceSettings => ({
  admissionMsat,
  subscriptionMsat: 0,
  subscriptionPeriodSeconds: 86_400,
  publicationMsat: 0,
  publicationKinds: { '1': 100 },
  publicationPerKbMsat: 0,
  eventMsat: 2000,
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
