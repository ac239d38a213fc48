/**
 * debitEvents: the publication debits of a whole group commit in one statement. It must decide
 * exactly as debitForEvent called on each item in order, and cost one statement however many
 * events the batch charges.
 */
import { createHash, randomBytes } from 'node:crypto';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { sql, type Kysely } from 'kysely';
import fc from 'fast-check';
import {
  affordableCharges,
  createInvoice,
  debitEvents,
  debitForEvent,
  getAccount,
  ledgerTotal,
  settleInvoice,
  storeEvents,
  type Database,
  type DebitItem,
  type DebitOutcome,
  type Schema,
} from '../src/index.ts';
import { author, backends, mk, type Opened } from './backends.ts';

const NOW = 1_700_000_000;
const hex32 = () => randomBytes(32).toString('hex');
const hashOf = (s: string) => createHash('sha256').update(s).digest('hex');

/** Thrown to roll a transaction back once its result has been read. */
class Rollback<T> extends Error {
  constructor(readonly value: T) {
    super('rollback');
  }
}

describe.each(backends)('batched publication debits on $name', (backend) => {
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

  const truncate = () => sql`TRUNCATE ledger, invoices, accounts, events, event_tags, deletions RESTART IDENTITY`.execute(db.kysely);
  beforeEach(truncate);

  /** A settled credit invoice: the balance and its ledger rows as a real payment writes them. */
  async function fund(pubkey: string, amountMsat: number): Promise<void> {
    const inv = await createInvoice(db.kysely, {
      paymentHash: hex32(),
      bolt11: 'lnbc',
      pubkey,
      product: 'credit',
      amountMsat,
      createdAt: NOW,
      expiresAt: NOW + 600,
      eventId: null,
      zapRequest: null,
      description: null,
    });
    await settleInvoice(db.kysely, inv.paymentHash, { now: NOW, subscriptionPeriodSeconds: 86_400 });
  }

  /** Accounts and ledger rows, without the ledger's serial ids (a rolled-back sequence is not). */
  async function state(k: Kysely<Schema>) {
    const accounts = await k.selectFrom('accounts').select(['pubkey', 'balance_msat', 'updated_at']).orderBy('pubkey').execute();
    const ledger = await k
      .selectFrom('ledger')
      .select(['txid', 'account', 'amount_msat', 'invoice_id', 'event_id', 'memo', 'created_at'])
      .orderBy('txid')
      .orderBy('account')
      .execute();
    return { accounts, ledger };
  }

  /** Every txid sums to zero and every user account equals its ledger balance. */
  async function expectBooksBalanced(): Promise<void> {
    expect(await ledgerTotal(db.kysely)).toBe(0);
    const { rows: unbalanced } = await sql`SELECT txid FROM ledger GROUP BY txid HAVING sum(amount_msat) <> 0`.execute(db.kysely);
    expect(unbalanced).toEqual([]);
    const { rows: mismatched } = await sql`
      SELECT a.pubkey FROM accounts a
        LEFT JOIN (SELECT account, sum(amount_msat) AS s FROM ledger GROUP BY account) l ON l.account = 'user:' || encode(a.pubkey, 'hex')
        WHERE a.balance_msat <> coalesce(l.s, 0)`.execute(db.kysely);
    expect(mismatched).toEqual([]);
  }

  /** Runs `fn` in a transaction that is rolled back afterwards, and returns what it returned. */
  async function rolledBack<T>(fn: (trx: Kysely<Schema>) => Promise<T>): Promise<T> {
    try {
      await db.kysely.transaction().execute(async (trx) => {
        throw new Rollback(await fn(trx));
      });
    } catch (err) {
      if (err instanceof Rollback) return err.value as T;
      throw err;
    }
    throw new Error('unreachable');
  }

  /** db.kysely that counts the statements sent through it (BEGIN/COMMIT not). */
  function counting() {
    const seen = { statements: 0 };
    const kysely = db.kysely.withPlugin({
      transformQuery: (a) => {
        seen.statements++;
        return a.node;
      },
      transformResult: async (a) => a.result,
    });
    return { kysely, seen };
  }

  const balance = async (pubkey: string) => (await getAccount(db.kysely, pubkey))?.balanceMsat;

  it('debits a batch of several payers once each: balances, ledger rows and memo exact, books at 0', async () => {
    const [a, b, c] = [hex32(), hex32(), hex32()];
    await fund(a, 10_000);
    await fund(b, 5_000);
    await fund(c, 700);
    const items: DebitItem[] = [
      { pubkey: a, eventId: hex32(), amountMsat: 1_000 },
      { pubkey: b, eventId: hex32(), amountMsat: 2_500 },
      { pubkey: a, eventId: hex32(), amountMsat: 3_001 },
      { pubkey: c, eventId: hex32(), amountMsat: 700 }, // the whole balance
      { pubkey: b, eventId: hex32(), amountMsat: 0 },
      { pubkey: b, eventId: hex32(), amountMsat: 2_500 },
    ];
    const outcomes = await db.kysely.transaction().execute(async (trx) => {
      expect((await affordableCharges(trx, items)).every((x) => x.covered)).toBe(true);
      return debitEvents(trx, items, NOW + 7);
    });
    expect(outcomes).toEqual(['debited', 'debited', 'debited', 'debited', 'free', 'debited']);
    expect(await balance(a)).toBe(5_999);
    expect(await balance(b)).toBe(0);
    expect(await balance(c)).toBe(0);
    expect((await state(db.kysely)).accounts.map((r) => r.updated_at)).toEqual([NOW + 7, NOW + 7, NOW + 7]);
    const rows = await db.kysely
      .selectFrom('ledger')
      .select(['txid', 'account', 'amount_msat', 'invoice_id', 'event_id', 'memo', 'created_at'])
      .where('memo', '=', 'publication')
      .execute();
    const charged = items.filter((i) => i.amountMsat > 0);
    expect(rows).toHaveLength(2 * charged.length);
    for (const i of charged) {
      const mine = rows
        .filter((r) => r.txid === `publication:${i.eventId}`)
        .map((r) => [r.account, r.amount_msat, r.invoice_id, Buffer.from(r.event_id!).toString('hex'), r.created_at])
        .sort();
      expect(mine).toEqual(
        [
          ['revenue:publication', i.amountMsat, null, i.eventId, NOW + 7],
          [`user:${i.pubkey}`, -i.amountMsat, null, i.eventId, NOW + 7],
        ].sort(),
      );
    }
    await expectBooksBalanced();
  });

  it('an event debited before, or twice in the batch, is charged once', async () => {
    const [a, b] = [hex32(), hex32()];
    await fund(a, 1_000);
    await fund(b, 1_000);
    const [e1, e2] = [hex32(), hex32()];
    expect(await debitForEvent(db.kysely, a, e1, 100, NOW)).toBe(true);
    const outcomes = await db.kysely.transaction().execute((trx) =>
      debitEvents(
        trx,
        [
          { pubkey: a, eventId: e1, amountMsat: 100 }, // paid by the earlier debit
          { pubkey: b, eventId: e2, amountMsat: 0 }, // free: does not count as its charge
          { pubkey: b, eventId: e2, amountMsat: 300 },
          { pubkey: a, eventId: e2, amountMsat: 300 }, // the same event again, other payer
          { pubkey: b, eventId: e1, amountMsat: 50 },
        ],
        NOW,
      ),
    );
    expect(outcomes).toEqual(['already', 'free', 'debited', 'already', 'already']);
    expect(await balance(a)).toBe(900);
    expect(await balance(b)).toBe(700);
    // Again: everything is paid now, and nothing moves.
    const again = await db.kysely.transaction().execute((trx) => debitEvents(trx, [{ pubkey: b, eventId: e2, amountMsat: 300 }], NOW));
    expect(again).toEqual(['already']);
    expect(await balance(b)).toBe(700);
    await expectBooksBalanced();
  });

  it('a payer that cannot pay its total (or has no account) throws and nothing is written for anyone', async () => {
    const [rich, poor] = [hex32(), hex32()];
    await fund(rich, 1_000);
    await fund(poor, 500);
    for (const short of [
      [
        { pubkey: poor, eventId: hex32(), amountMsat: 300 },
        { pubkey: poor, eventId: hex32(), amountMsat: 201 },
      ],
      [{ pubkey: hex32(), eventId: hex32(), amountMsat: 1 }],
    ]) {
      const items = [{ pubkey: rich, eventId: hex32(), amountMsat: 400 }, ...short];
      const { before, after } = await rolledBack(async (trx) => {
        const before = await state(trx);
        await expect(debitEvents(trx, items, NOW + 1)).rejects.toThrow(/1 of 2 payers cannot pay their total/);
        return { before, after: await state(trx) };
      });
      expect(after).toEqual(before);
    }
    expect(await balance(rich)).toBe(1_000);
    expect(await balance(poor)).toBe(500);
    await expectBooksBalanced();
  });

  it('validates its input and runs only in a transaction', async () => {
    const ok = { pubkey: hex32(), eventId: hex32(), amountMsat: 1 };
    await expect(debitEvents(db.kysely, [ok], NOW)).rejects.toThrow(/must run in a transaction/);
    await db.kysely.transaction().execute(async (trx) => {
      await expect(debitEvents(trx, [{ ...ok, pubkey: 'nope' }], NOW)).rejects.toThrow(TypeError);
      await expect(debitEvents(trx, [{ ...ok, eventId: ok.eventId.toUpperCase() }], NOW)).rejects.toThrow(TypeError);
      await expect(debitEvents(trx, [{ ...ok, amountMsat: -1 }], NOW)).rejects.toThrow(RangeError);
      await expect(debitEvents(trx, [{ ...ok, amountMsat: 0.5 }], NOW)).rejects.toThrow(RangeError);
      await expect(debitEvents(trx, [ok], -1)).rejects.toThrow(RangeError);
      expect(await debitEvents(trx, [], NOW)).toEqual([]);
    });
  });

  it('keeps msat exact beyond 2^32 and at large totals', async () => {
    const pk = hex32();
    const big = 2 ** 40 + 7; // ~1.1e12 msat, past int4
    await fund(pk, 3 * big + 1);
    const items = [0, 1, 2].map(() => ({ pubkey: pk, eventId: hex32(), amountMsat: big }));
    await db.kysely.transaction().execute((trx) => debitEvents(trx, items, NOW));
    expect(await balance(pk)).toBe(1);
    await expectBooksBalanced();
  });

  it('one statement for the debits, and a group commit costs as many statements for 50 paid events as for 1', async () => {
    const counts: number[] = [];
    for (const n of [1, 50]) {
      const payers = Array.from({ length: Math.min(n, 5) }, () => author());
      for (const p of payers) await fund(p.pubkey, 1_000_000);
      const events = Array.from({ length: n }, (_, i) => mk(payers[i % payers.length]));
      const items = events.map((e) => ({ pubkey: e.event.pubkey, eventId: e.event.id, amountMsat: 1_000 }));
      const { kysely, seen } = counting();
      await kysely.transaction().execute(async (trx) => {
        await affordableCharges(trx, items);
        await storeEvents(trx, events, NOW);
        const before = seen.statements;
        expect(await debitEvents(trx, items, NOW)).toEqual(Array(n).fill('debited'));
        expect(seen.statements - before).toBe(1);
      });
      counts.push(seen.statements);
      for (const p of payers) expect(await balance(p.pubkey)).toBe(1_000_000 - 1_000 * (n / payers.length));
    }
    expect(counts[1]).toBe(counts[0]);
    // Nothing to charge (all free): no statement at all.
    const { kysely, seen } = counting();
    await kysely.transaction().execute((trx) => debitEvents(trx, [{ pubkey: hex32(), eventId: hex32(), amountMsat: 0 }], NOW));
    expect(seen.statements).toBe(0);
    await expectBooksBalanced();
  });

  it('decides as debitForEvent on each item in order would (property)', async () => {
    const users = 3;
    const seen = { covered: 0, short: 0 };
    const item = fc.record({
      user: fc.nat(users - 1),
      event: fc.nat(7),
      amount: fc.oneof(fc.constant(0), fc.integer({ min: 1, max: 400 })),
    });
    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.oneof(fc.constant(0), fc.integer({ min: 1, max: 2_000 })), { minLength: users, maxLength: users }),
        fc.array(fc.nat(7), { maxLength: 3 }),
        fc.array(item, { minLength: 1, maxLength: 12 }),
        async (funds, paidBefore, batch) => {
          await truncate();
          const pubkeys = Array.from({ length: users }, (_, u) => hashOf(`user ${u}`));
          const eventId = (e: number) => hashOf(`event ${e}`);
          for (let u = 0; u < users; u++) if (funds[u] > 0) await fund(pubkeys[u], funds[u] + 100);
          // Some events were paid by an earlier commit (by the first user, who can afford 100 msat each, or not).
          for (const e of paidBefore) await debitForEvent(db.kysely, pubkeys[0], eventId(e), 30, NOW);
          const items = batch.map((b) => ({ pubkey: pubkeys[b.user], eventId: eventId(b.event), amountMsat: b.amount }));

          const sequential = await rolledBack(async (trx) => {
            const outcomes: DebitOutcome[] = [];
            let allPaid = true;
            for (const it of items) {
              const paid = await trx
                .selectFrom('ledger')
                .select('id')
                .where('event_id', '=', Buffer.from(it.eventId, 'hex'))
                .where('account', '=', 'revenue:publication')
                .executeTakeFirst();
              allPaid = (await debitForEvent(trx, it.pubkey, it.eventId, it.amountMsat, NOW + 1)) && allPaid;
              outcomes.push(it.amountMsat === 0 ? 'free' : paid ? 'already' : 'debited');
            }
            return { allPaid, outcomes, after: await state(trx) };
          });
          const batched = await rolledBack(async (trx) => {
            const before = await state(trx);
            try {
              return { outcomes: await debitEvents(trx, items, NOW + 1), before, after: await state(trx) };
            } catch (err) {
              return { error: (err as Error).message, before, after: await state(trx) };
            }
          });
          if (sequential.allPaid) {
            seen.covered++;
            expect(batched.outcomes).toEqual(sequential.outcomes);
            expect(batched.after).toEqual(sequential.after);
          } else {
            seen.short++;
            // A shortfall is the caller's bug (it covers under lock first): an error, and nothing written.
            expect(batched.error).toMatch(/cannot pay their total/);
            expect(batched.after).toEqual(batched.before);
          }
        },
      ),
      { numRuns: 40 },
    );
    // Both kinds of batch were tried.
    expect(seen.covered).toBeGreaterThan(5);
    expect(seen.short).toBeGreaterThan(5);
  });
});
