import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { getAccount } from '@paidrelay/db';
import { settle } from '../src/settle.ts';
import { newKey } from '../../relay/test/harness.ts';
import { startStack, type TestStack } from '../../../test/stack.ts';

/**
 * A settlement that meets a deadlock (Postgres 40P01: a relay replica holding the payer's refused
 * events at the same moment) is run again, so the payment is granted at once, not at the next
 * reconciliation. The deadlock is Postgres's own error, raised once by a trigger.
 */
const pgUrl = process.env.TEST_DATABASE_URL;
if (process.env.CI && !pgUrl) throw new Error('CI must set TEST_DATABASE_URL');

describe.runIf(pgUrl)('settlement under a deadlock (Postgres)', () => {
  let t: TestStack;
  beforeAll(async () => {
    t = await startStack({ PRICE_ADMISSION_MSAT: '21000' }, { backend: 'postgres' });
    const db = t.stack.admission.ctx.db.kysely;
    // A sequence is not rolled back with the failed attempt: only its first update fails.
    await sql`CREATE SEQUENCE deadlock_once`.execute(db);
    await sql`CREATE FUNCTION deadlock_once() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN
        IF nextval('deadlock_once') = 1 THEN
          RAISE EXCEPTION 'deadlock detected' USING ERRCODE = '40P01';
        END IF;
        RETURN NEW;
      END $$`.execute(db);
  });
  afterAll(async () => {
    await t?.stop();
  });

  it('is run again and admits the payer', async () => {
    const db = t.stack.admission.ctx.db.kysely;
    const k = newKey();
    const res = await fetch(`${t.apiBase}/api/invoices`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ pubkey: k.pubkey, product: 'admission' }),
    });
    expect(res.status).toBe(201);
    const inv = (await res.json()) as { payment_hash: string; amount_msat: number };
    // From now on the first update of an invoice fails with a deadlock; the next ones succeed.
    await sql`CREATE TRIGGER deadlock_once BEFORE UPDATE ON invoices FOR EACH ROW EXECUTE FUNCTION deadlock_once()`.execute(db);
    expect(await settle(t.stack.admission.ctx, inv.payment_hash, inv.amount_msat)).toBe(true);
    expect(await getAccount(db, k.pubkey)).toMatchObject({ admitted: true });
    // The deadlock did happen (the first attempt took the sequence's first value).
    const { rows } = await sql<{ v: string }>`SELECT last_value::text AS v FROM deadlock_once`.execute(db);
    expect(Number(rows[0].v)).toBeGreaterThanOrEqual(2);
  });
});
