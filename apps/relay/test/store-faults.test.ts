import { describe, expect, it } from 'vitest';
import { Kysely, PostgresAdapter, PostgresIntrospector, PostgresQueryCompiler, type DatabaseConnection, type Driver } from 'kysely';
import { pino } from 'pino';
import type { Database, Schema } from '@paidrelay/db';
import { createMetrics } from '../src/metrics.ts';
import { isConnectionError } from '@paidrelay/db';
import { GroupCommitWriter } from '../src/store.ts';
import { newKey, sign, sleep } from './harness.ts';

/** A database whose every transaction fails at BEGIN with `fail()`; counts the attempts. */
function failingDatabase(fail: () => Promise<never>): { db: Database; begins: () => number } {
  let begins = 0;
  const connection: DatabaseConnection = {
    executeQuery: () => fail(),
    // biome-ignore lint/correctness/useYield: a stream that fails before its first row
    streamQuery: async function* () {
      await fail();
    },
  };
  const driver: Driver = {
    init: async () => {},
    acquireConnection: async () => connection,
    beginTransaction: async () => {
      begins++;
      await fail();
    },
    commitTransaction: async () => {},
    rollbackTransaction: async () => {},
    releaseConnection: async () => {},
    destroy: async () => {},
  };
  const kysely = new Kysely<Schema>({
    dialect: {
      createAdapter: () => new PostgresAdapter(),
      createDriver: () => driver,
      createIntrospector: (db) => new PostgresIntrospector(db),
      createQueryCompiler: () => new PostgresQueryCompiler(),
    },
  });
  const db: Database = {
    kysely,
    read: (fn) => fn(kysely),
    replicas: () => [],
    kind: 'postgres',
    migrate: async () => {},
    isReady: async () => false,
    close: () => kysely.destroy(),
  };
  return { db, begins: () => begins };
}

const log = pino({ level: 'silent' });

async function settle(ps: Promise<unknown>[]) {
  return Promise.all(
    ps.map((p) =>
      p.then(
        () => 'resolved',
        (e: Error) => `rejected: ${e.message}`,
      ),
    ),
  );
}

describe('the group-commit writer when the database fails', () => {
  it('a connection error answers the failed batch and every write queued behind it, with no further attempt', async () => {
    const { db, begins } = failingDatabase(async () => {
      await sleep(300);
      throw new Error('Connection terminated unexpectedly');
    });
    const writer = new GroupCommitWriter(db, 10, createMetrics(), log, undefined, 1);
    const k = newKey();
    const writes = Array.from({ length: 50 }, (_, i) => {
      const ev = sign(k.sk, { content: `w${i}` });
      return writer.write(ev, JSON.stringify(ev));
    });
    const outcomes = await settle(writes);
    expect(outcomes).toEqual(Array(50).fill('rejected: Connection terminated unexpectedly'));
    // One transaction tried; the 40 queued writes were not sent one batch at a time into the outage.
    expect(begins()).toBe(1);
    await writer.drain();
    await db.close();
  });

  it('serialization failures are retried a bounded number of times, then answered', async () => {
    const { db, begins } = failingDatabase(async () => {
      throw Object.assign(new Error('could not serialize access'), { code: '40001' });
    });
    const writer = new GroupCommitWriter(db, 10, createMetrics(), log, undefined, 1);
    const ev = sign(newKey().sk);
    expect(await settle([writer.write(ev, JSON.stringify(ev))])).toEqual(['rejected: could not serialize access']);
    expect(begins()).toBeGreaterThan(1);
    expect(begins()).toBe(4); // one retry loop: four attempts in all
    await writer.drain();
    await db.close();
  });

  it('tells connection errors from statement errors', () => {
    for (const e of [
      Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:5432'), { code: 'ECONNREFUSED' }),
      Object.assign(new Error('read ECONNRESET'), { code: 'ECONNRESET' }),
      new Error('Connection terminated unexpectedly'),
      new Error('Connection terminated due to connection timeout'),
      new Error('Query read timeout'),
      new Error('timeout exceeded when trying to connect'),
      new Error('Client has encountered a connection error and is not queryable'),
      Object.assign(new Error('terminating connection due to administrator command'), { code: '57P01' }),
      Object.assign(new Error('the database system is starting up'), { code: '57P03' }),
    ])
      expect(isConnectionError(e), e.message).toBe(true);
    for (const e of [
      Object.assign(new Error('canceling statement due to statement timeout'), { code: '57014' }),
      Object.assign(new Error('duplicate key'), { code: '23505' }),
      Object.assign(new Error('could not serialize access'), { code: '40001' }),
      new Error('something else'),
      null,
    ])
      expect(isConnectionError(e)).toBe(false);
  });
});
