/**
 * The turn queue (turns.ts): messages run at once while the turn has time, then wait in their
 * connection's queue, served one per connection in turn; order per connection, bounds, closed
 * connections. A clock the test moves and a scheduler it runs by hand: counted, never timed.
 */
import { describe, expect, it } from 'vitest';
import { TurnQueue } from '../src/turns.ts';

/** A queue whose every message costs `cost` ms of the test's clock, and whose turns end when the test says. */
function harness(opts: { turnMs?: number; cost?: number; maxBytesPerKey?: number; maxBytes?: number } = {}) {
  let now = 0;
  const ran: string[] = [];
  const closed = new Set<string>();
  let pending: (() => void)[] = [];
  const errors: unknown[] = [];
  const q = new TurnQueue<string>({
    turnMs: opts.turnMs ?? 4,
    maxBytesPerKey: opts.maxBytesPerKey ?? 1_000_000,
    maxBytes: opts.maxBytes ?? 10_000_000,
    run: (key, text) => {
      if (text === 'throw') throw new Error('handler bug');
      ran.push(`${key}:${text}`);
      now += opts.cost ?? 1;
    },
    live: (key) => !closed.has(key),
    onError: (err) => errors.push(err),
    clock: () => now,
    schedule: (f) => pending.push(f),
  });
  /** Ends the current turn (what setImmediate would do after the turn's I/O). */
  const endTurn = () => {
    const fs = pending;
    pending = [];
    for (const f of fs) f();
  };
  return { q, ran, closed, errors, endTurn, scheduled: () => pending.length };
}

describe('TurnQueue', () => {
  it('runs messages at once while the turn has time (and one more per connection), the rest in the next turns', () => {
    const h = harness({ turnMs: 4, cost: 1 });
    for (let i = 0; i < 10; i++) expect(h.q.offer('a', String(i))).toBe(true);
    expect(h.ran).toEqual(['a:0', 'a:1', 'a:2', 'a:3', 'a:4']);
    h.endTurn();
    expect(h.ran).toHaveLength(9);
    h.endTurn();
    expect(h.ran).toEqual(Array.from({ length: 10 }, (_, i) => `a:${i}`));
    expect(h.q.waitingBytes).toBe(0);
    h.endTurn();
    expect(h.scheduled()).toBe(0);
  });

  it("runs a connection's single message at once past the turn's time, and its second in the next turn, however long another queue is", () => {
    const h = harness({ turnMs: 4, cost: 1 });
    for (let i = 0; i < 1000; i++) h.q.offer('flood', String(i));
    h.q.offer('honest', 'note');
    expect(h.ran.at(-1)).toBe('honest:note');
    h.q.offer('honest', 'second');
    expect(h.ran).not.toContain('honest:second');
    h.endTurn();
    // One of the flood's, then the honest one: round robin from the head of the ring.
    expect(h.ran.slice(6, 8)).toEqual(['flood:5', 'honest:second']);
  });

  it('a new turn runs a fresh connection at once, while a flood still waits', () => {
    const h = harness({ turnMs: 4, cost: 1 });
    for (let i = 0; i < 100; i++) h.q.offer('flood', String(i));
    h.endTurn();
    const before = h.ran.length;
    h.q.offer('honest', 'note');
    expect(h.ran[before]).toBe('honest:note');
    // The flood's next message arrives behind its waiting ones, not at once.
    h.q.offer('flood', 'late');
    expect(h.ran.at(-1)).not.toBe('flood:late');
  });

  it('keeps each connection in order, across turns and round robin', () => {
    const h = harness({ turnMs: 3, cost: 1 });
    for (let i = 0; i < 20; i++) {
      h.q.offer('a', String(i));
      h.q.offer('b', String(i));
      if (i % 7 === 0) h.endTurn();
    }
    while (h.q.waitingBytes > 0) h.endTurn();
    for (const key of ['a', 'b']) {
      expect(h.ran.filter((r) => r.startsWith(`${key}:`))).toEqual(Array.from({ length: 20 }, (_, i) => `${key}:${i}`));
    }
  });

  it('refuses a message beyond its connection bound or the global bound, and takes others', () => {
    const h = harness({ turnMs: 1, cost: 1, maxBytesPerKey: 10, maxBytes: 15 });
    expect(h.q.offer('a', 'first')).toBe(true); // runs
    expect(h.q.offer('a', 'extra')).toBe(true); // runs: a's one past the turn's time
    expect(h.q.offer('b', 'extra')).toBe(true); // runs: b's
    expect(h.q.offer('b', '12345')).toBe(true); // waits: 5 bytes for b
    expect(h.q.offer('a', '12345')).toBe(true); // waits: 5 bytes
    expect(h.q.offer('a', '123456')).toBe(false); // 11 > 10 for a
    expect(h.q.offer('a', '12345')).toBe(true); // 10
    expect(h.q.offer('b', '123456')).toBe(false); // 21 > 15 in all
    expect(h.q.waitingBytes).toBe(15);
    expect(h.q.offer('c', 'x')).toBe(true); // runs: nothing of c's waits, whatever the bounds
    while (h.q.waitingBytes > 0) h.endTurn();
    expect(h.ran).toEqual(['a:first', 'a:extra', 'b:extra', 'c:x', 'b:12345', 'a:12345', 'a:12345']);
    // Space is given back as messages run.
    expect(h.q.offer('a', '123456789')).toBe(true);
  });

  it("drops a closed connection's waiting messages unrun and frees their bytes", () => {
    const h = harness({ turnMs: 1, cost: 1 });
    h.q.offer('gone', 'x');
    for (let i = 0; i < 5; i++) h.q.offer('gone', `m${i}`);
    h.q.offer('stays', 'y');
    h.closed.add('gone');
    h.endTurn();
    h.endTurn();
    expect(h.ran).toEqual(['gone:x', 'gone:m0', 'stays:y']);
    expect(h.q.waitingBytes).toBe(0);
  });

  it('goes on after a handler throws', () => {
    const h = harness({ turnMs: 1, cost: 1 });
    h.q.offer('a', 'one');
    h.q.offer('a', 'throw');
    h.q.offer('a', 'two');
    h.endTurn();
    h.endTurn();
    expect(h.ran).toEqual(['a:one', 'a:two']);
    expect(h.errors).toHaveLength(1);
  });

  it('serves thousands of connections fairly with a long queue each, in bounded turns', () => {
    const h = harness({ turnMs: 50, cost: 1 });
    const keys = Array.from({ length: 2000 }, (_, i) => `k${i}`);
    for (const k of keys) for (let i = 0; i < 3; i++) h.q.offer(k, String(i));
    let turns = 0;
    while (h.q.waitingBytes > 0) {
      h.endTurn();
      turns++;
    }
    expect(h.ran).toHaveLength(6000);
    // 50 per turn (each costs 1 of 50 ms): no turn ran more than its budget.
    expect(turns).toBe(Math.ceil((6000 - 2034) / 50));
    // The first 50 ran as they came (k0 to k16's second), then one more of each connection
    // (k16's third, every other's first); then each of the 1,983 connections with messages waiting
    // had one served before any had a second.
    expect(h.ran[49]).toBe('k16:1');
    expect(h.ran.slice(50, 52)).toEqual(['k16:2', 'k17:0']);
    expect(h.ran[2033]).toBe('k1999:0');
    const drained = h.ran.slice(2034, 2034 + 1983).map((r) => r.split(':')[0]);
    expect(new Set(drained).size).toBe(1983);
  });
});
