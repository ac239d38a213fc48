/**
 * The group-commit writer with prepaid prices: a batch's debits go to the database in one
 * statement, so a batch of 50 paid events costs as many round trips as a batch of 1.
 */
import { mkdtempSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { pino } from 'pino';
import {
  affordableCharges,
  createInvoice,
  debitEvents,
  getAccount,
  ledgerTotal,
  openDatabase,
  settleInvoice,
  type Database,
} from '@paidrelay/db';
import { nowSeconds } from '@paidrelay/nostr';
import { createMetrics } from '../src/metrics.ts';
import { GroupCommitWriter } from '../src/store.ts';
import { backends, freshDatabase, newKey, sign } from './harness.ts';

const PRICE = 1_000;
const FUNDS = 1_000_000;

describe.each(backends())('group-commit debits on %s', (backend) => {
  let db: Database;
  let drop: (() => Promise<void>) | undefined;

  beforeAll(async () => {
    const dataDir = mkdtempSync(join(tmpdir(), 'paidrelay-debit-'));
    if (backend === 'postgres') {
      const fresh = await freshDatabase();
      drop = fresh.drop;
      db = await openDatabase({ databaseUrl: fresh.url, dataDir });
    } else db = await openDatabase({ dataDir });
    await db.migrate();
  });

  afterAll(async () => {
    await db?.close();
    await drop?.();
  });

  async function fund(pubkey: string, amountMsat: number): Promise<void> {
    const now = nowSeconds();
    const inv = await createInvoice(db.kysely, {
      paymentHash: randomBytes(32).toString('hex'),
      bolt11: 'lnbc',
      pubkey,
      product: 'credit',
      amountMsat,
      createdAt: now,
      expiresAt: now + 600,
      eventId: null,
      zapRequest: null,
      description: null,
    });
    await settleInvoice(db.kysely, inv.paymentHash, { now, subscriptionPeriodSeconds: 86_400 });
  }

  /**
   * Writes one free event, then `n` paid ones from `payers` authors while it commits: two
   * batches, [free] and the `n` paid. Answers the statements sent in all (BEGIN/COMMIT not
   * counted), with the same first batch whatever `n` is.
   */
  async function statementsFor(n: number, payers: number): Promise<number> {
    const authors = Array.from({ length: payers }, () => newKey());
    for (const a of authors) await fund(a.pubkey, FUNDS);
    const seen = { statements: 0 };
    const kysely = db.kysely.withPlugin({
      transformQuery: (a) => {
        seen.statements++;
        return a.node;
      },
      transformResult: async (a) => a.result,
    });
    const metrics = createMetrics();
    const writer = new GroupCommitWriter({ ...db, kysely }, 100, metrics, pino({ level: 'silent' }), {
      cover: affordableCharges,
      debit: debitEvents,
    });
    const warm = sign(newKey().sk, { content: 'free' });
    const free = writer.write(warm, JSON.stringify(warm));
    const paid = Array.from({ length: n }, (_, i) => {
      const ev = sign(authors[i % payers].sk, { content: `paid ${i}` });
      return writer.write(ev, JSON.stringify(ev), PRICE);
    });
    expect(await free).toEqual({ status: 'stored' });
    expect(await Promise.all(paid)).toEqual(Array(n).fill({ status: 'stored' }));
    await writer.drain();
    const batches = (await metrics.commitBatch.get()).values.find((v) => v.metricName === 'relay_commit_batch_size_count');
    expect(batches?.value).toBe(2);
    for (const a of authors) expect((await getAccount(db.kysely, a.pubkey))?.balanceMsat).toBe(FUNDS - (PRICE * n) / payers);
    return seen.statements;
  }

  it('a batch of 50 paid events (5 payers) costs as many statements as a batch of 1', async () => {
    const one = await statementsFor(1, 1);
    const fifty = await statementsFor(50, 5);
    expect(fifty).toBe(one);
    expect(await ledgerTotal(db.kysely)).toBe(0);
  });
});
