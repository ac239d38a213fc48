/**
 * The group-commit writer's idle signal (`whenIdle`), which held-event batches wait for: at once
 * when no transaction is in flight, else only once the writer has none (the writes queued behind
 * the one in flight included). A transaction is kept in flight by holding its statements' results.
 */
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { pino } from 'pino';
import { openDatabase, type Database } from '@paidrelay/db';
import type { RelayCore } from '../src/hooks.ts';
import { createMetrics } from '../src/metrics.ts';
import { GroupCommitWriter } from '../src/store.ts';
import { backends, freshDatabase, newKey, sign, sleep, startTestRelay, until } from './harness.ts';

/** Whether `p` has resolved, as of the last turn of the microtask queue. */
function settled(p: Promise<unknown>): { done: boolean } {
  const s = { done: false };
  void p.then(() => (s.done = true));
  return s;
}

describe.each(backends())('writer idle signal on %s', (backend) => {
  let db: Database;
  let drop: (() => Promise<void>) | undefined;

  beforeAll(async () => {
    const dataDir = mkdtempSync(join(tmpdir(), 'paidrelay-idle-'));
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

  /** A writer whose statements wait, while `hold()` is in force, until `release()`. */
  function heldWriter() {
    let gate: Promise<void> | undefined;
    let open = () => {};
    let statements = 0;
    const kysely = db.kysely.withPlugin({
      transformQuery: (a) => a.node,
      transformResult: async (a) => {
        statements++;
        await gate;
        return a.result;
      },
    });
    const writer = new GroupCommitWriter({ ...db, kysely }, 100, createMetrics(), pino({ level: 'silent' }));
    return {
      writer,
      statements: () => statements,
      hold: () => {
        gate = new Promise((r) => (open = r));
      },
      release: () => {
        gate = undefined;
        open();
      },
    };
  }

  it('resolves at once when no commit is in flight', async () => {
    const { writer } = heldWriter();
    const idle = settled(writer.whenIdle());
    await Promise.resolve();
    expect(idle.done).toBe(true);
    // And again once a write has committed.
    const ev = sign(newKey().sk);
    expect(await writer.write(ev, JSON.stringify(ev))).toEqual({ status: 'stored' });
    const after = settled(writer.whenIdle());
    await Promise.resolve();
    expect(after.done).toBe(true);
  });

  it('resolves only after the commit in flight, and the writes queued behind it, are done', async () => {
    const w = heldWriter();
    w.hold();
    const order: string[] = [];
    const first = sign(newKey().sk, { content: 'first' });
    const second = sign(newKey().sk, { content: 'second' });
    const a = w.writer.write(first, JSON.stringify(first)).then((o) => order.push(`first ${o.status}`));
    while (w.statements() === 0) await sleep(5);
    // In flight: its transaction has sent a statement and waits for the result.
    const b = w.writer.write(second, JSON.stringify(second)).then((o) => order.push(`second ${o.status}`));
    const idle = settled(w.writer.whenIdle().then(() => order.push('idle')));
    await sleep(50);
    expect(idle.done).toBe(false);
    expect(order).toEqual([]);
    w.release();
    await Promise.all([a, b]);
    await w.writer.whenIdle();
    await sleep(0);
    expect(order).toEqual(['first stored', 'second stored', 'idle']);
  });
});

describe.each(backends())("the hooks' writerIdle on %s", (backend) => {
  it("is the relay writer's: pending while a write is in flight, at once after", async () => {
    let core: RelayCore | undefined;
    const capture = (c: RelayCore) => {
      core = c;
      return {};
    };
    const relay = await startTestRelay(backend, {}, { hooks: [capture] });
    try {
      const ev = sign(newKey().sk);
      const write = relay.ctx.writer.write(ev, JSON.stringify(ev));
      // Asked in the same turn as the write: its transaction has not even begun.
      const during = settled(core!.writerIdle());
      await Promise.resolve();
      expect(during.done).toBe(false);
      expect(await write).toEqual({ status: 'stored' });
      await until(() => during.done);
      const after = settled(core!.writerIdle());
      await Promise.resolve();
      expect(after.done).toBe(true);
    } finally {
      await relay.stop();
    }
  });
});
