/**
 * Prices changed on another replica whose bus message was lost reach this one when the bus sees
 * the loss, not at the next periodic reload. Real Redis (a gap made with a raw XADD), real Postgres.
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { pino } from 'pino';
import { createClient } from 'redis';
import { sql } from 'kysely';
import { ACCOUNTS_CHANNEL as OTHER, createBus } from '@paidrelay/bus';
import { loadConfig } from '@paidrelay/config';
import { openDatabase } from '@paidrelay/db';
import { pricingFromConfig } from '@paidrelay/pricing';
import { LivePrices } from '@paidrelay/payment-gate';
import { freshDatabase } from './harness.ts';

const log = pino({ level: 'silent' });
const redisUrl = process.env.TEST_REDIS_URL;
if (process.env.CI && (!redisUrl || !process.env.TEST_DATABASE_URL)) throw new Error('CI must set TEST_REDIS_URL and TEST_DATABASE_URL');

async function until(pred: () => boolean, ms = 5000) {
  const end = Date.now() + ms;
  while (!pred()) {
    if (Date.now() > end) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe.runIf(redisUrl && process.env.TEST_DATABASE_URL)('live prices after a lost bus message', () => {
  const closers: (() => Promise<void>)[] = [];
  afterAll(async () => {
    for (const c of closers.reverse()) await c();
  });

  it('reads the prices again as soon as the bus reports a gap', async () => {
    const prefix = `test:prices-${randomBytes(4).toString('hex')}:`;
    const fresh = await freshDatabase();
    closers.push(fresh.drop);
    const db = await openDatabase({ databaseUrl: fresh.url, dataDir: mkdtempSync(join(tmpdir(), 'paidrelay-prices-')) });
    closers.push(() => db.close());
    await db.migrate();
    const bus = await createBus({ redisUrl, logger: log, redis: { prefix } });
    closers.push(() => bus.close());
    const base = pricingFromConfig(loadConfig({ PRICE_ADMISSION_MSAT: '21000' }));
    // A periodic reload far beyond the test: only the loss can bring the change.
    const live = await LivePrices.start(db, bus, log, base, { reloadMs: 600_000 });
    closers.push(async () => live.close());
    expect(live.pricing.admissionMsat).toBe(21_000);

    // Another replica's change, committed, whose message never came.
    await sql`UPDATE price_settings SET admission_msat = 42000 WHERE id = 1`.execute(db.kysely);
    await new Promise((r) => setTimeout(r, 300));
    expect(live.pricing.admissionMsat).toBe(21_000);

    // Another sender's 1st and 3rd message on another channel this process reads (a message on
    // the prices channel would make it reload by itself): its 2nd, maybe about prices, was lost.
    await bus.subscribe(OTHER, () => {});
    const raw = createClient({ url: redisUrl });
    await raw.connect();
    for (const c of ['1', '3']) await raw.xAdd(`${prefix}bus:${OTHER}`, '*', { o: 'a-test-sender', s: c, c, m: 'something else' });
    await raw.close();
    await until(() => live.pricing.admissionMsat === 42_000);
  });
});
