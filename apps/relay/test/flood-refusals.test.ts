/**
 * Refusing costs little on the paths a flood takes (issue 12): an EVENT whose address verdict
 * waits for Redis is still decided before it is parsed, and the message and event counters are
 * not written through prom-client for every message. Counted, never timed. Real WebSockets and
 * Postgres; the address bucket's shared store is played by the test.
 */
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import type { BucketReply, SharedBuckets } from '@paidrelay/bus';
import { RateLimiter } from '../src/rate-limit.ts';
import { newKey, RawClient, sign, startTestRelay, type TestRelay } from './harness.ts';

const databaseUrl = process.env.TEST_DATABASE_URL;
if (process.env.CI && !databaseUrl) throw new Error('CI must set TEST_DATABASE_URL');

/** A shared bucket store whose replies wait until the test releases them: the bucket is empty then. */
class HeldBuckets implements SharedBuckets {
  asked = 0;
  private replies: (() => void)[] = [];
  usable(): boolean {
    return true;
  }
  take(): Promise<BucketReply> {
    this.asked++;
    return new Promise((resolve) => this.replies.push(() => resolve({ granted: 0, waitMs: 5_000 })));
  }
  release(): void {
    for (const reply of this.replies.splice(0)) reply();
  }
  async close(): Promise<void> {
    this.release();
  }
}

/** Messages parsed so far, by verb (relay_messages_total is counted after parsing). */
async function parsed(relay: TestRelay, type: string): Promise<number> {
  const m = await relay.ctx.metrics.messages.get();
  return m.values.find((v) => v.labels.type === type)?.value ?? 0;
}

async function events(relay: TestRelay, result: string, why: string): Promise<number> {
  const m = await relay.ctx.metrics.events.get();
  return m.values.find((v) => v.labels.result === result && v.labels.reason === why)?.value ?? 0;
}

describe.runIf(databaseUrl)('refusals on a flood path (Postgres)', () => {
  let relay: TestRelay;
  const clients: RawClient[] = [];
  const open = async (addr: string) => {
    const c = await RawClient.open(relay.url, {}, addr);
    clients.push(c);
    return c;
  };

  beforeAll(async () => {
    relay = await startTestRelay('postgres', { RATE_EVENTS_PER_IP: '1', RATE_EVENTS_BURST_PER_IP: '1', MAX_MESSAGES_PER_SECOND: '10000' });
  });
  afterAll(async () => {
    for (const c of clients) c.close();
    await relay?.stop();
  });

  it('an EVENT whose address verdict waits for Redis is refused unparsed when the verdict comes, and answered', async () => {
    const store = new HeldBuckets();
    const own = relay.ctx.rateLimiter;
    relay.ctx.rateLimiter = new RateLimiter(relay.ctx.config, store);
    await own?.close();
    const c = await open('127.61.0.1');
    // The first takes this replica's credit and asks Redis; the reply is held back.
    const first = sign(newKey().sk, { content: 'on credit' });
    c.send(['EVENT', first]);
    expect((await c.ok(first.id))[2]).toBe(true);
    expect(store.asked).toBe(1);

    const before = { event: await parsed(relay, 'EVENT'), invalid: await parsed(relay, 'EVENT_INVALID') };
    // These wait for that reply: a garbled one (parsed, it would be refused `invalid:` at once)
    // and more than a connection's answers for refusals decided at once.
    const id = 'cd'.repeat(32);
    c.send(`["EVENT",{"id":"${id}","pubkey":"not hex","sig":5,"tags":{}}]`);
    const burst = Array.from({ length: 15 }, (_, i) => sign(newKey().sk, { content: `burst ${i}` }));
    // Told from the frame's first characters as the text pattern tells them: JSON's whitespace,
    // and a byte-order mark or a Unicode space (not JSON: parsed, they would be a NOTICE).
    const lead = ['', ' \t\r\n', '\ufeff', '\u00a0', ' \u2028 '];
    burst.forEach((ev, i) => c.send(`${lead[i % lead.length]}[ "EVENT" ,${JSON.stringify(ev)}]`));
    // Not an EVENT: parsed and answered at once (a NOTICE for an unknown verb).
    c.send('["EVENTS",{}]');
    expect((await c.notice())[1]).toMatch(/^unsupported: unknown message type "EVENTS"/);
    await new Promise((r) => setTimeout(r, 300));
    expect(c.messages.filter((m) => m[0] === 'OK' || m[0] === 'NOTICE')).toEqual([]);

    store.release();
    const garbled = await c.ok(id);
    expect(garbled[2]).toBe(false);
    expect(garbled[3]).toMatch(/^rate-limited: at most 1 events per second per address, retry in \d+ s$/);
    for (const ev of burst) expect((await c.ok(ev.id))[3]).toMatch(/^rate-limited: at most 1 events per second per address/);
    expect(await parsed(relay, 'EVENT')).toBe(before.event);
    expect(await parsed(relay, 'EVENT_INVALID')).toBe(before.invalid);
    expect(store.asked).toBe(1);
  });

  it('the message and event counters are added up when read, not through prom-client for each message', async () => {
    // No address bucket here: every event is parsed.
    relay.ctx.rateLimiter = undefined;
    const c = await open('127.62.0.1');
    const before = { invalid: await events(relay, 'refused', 'invalid'), parsed: await parsed(relay, 'EVENT') };
    const incs = [vi.spyOn(relay.ctx.metrics.events, 'inc'), vi.spyOn(relay.ctx.metrics.messages, 'inc')];
    try {
      // Events whose id does not match: each is parsed and refused `invalid:`.
      const bad = Array.from({ length: 30 }, (_, i) => ({ ...sign(newKey().sk, { content: `bad ${i}` }), content: 'changed' }));
      for (const ev of bad) c.send(['EVENT', ev]);
      for (const ev of bad) expect((await c.ok(ev.id))[3]).toMatch(/^invalid: event id does not match/);
      expect(incs.map((s) => s.mock.calls.length)).toEqual([0, 0]);
      // Read (a scrape, or get()): everything counted is there.
      expect(await events(relay, 'refused', 'invalid')).toBe(before.invalid + 30);
      expect(await parsed(relay, 'EVENT')).toBe(before.parsed + 30);
      const text = await relay.ctx.metrics.registry.metrics();
      expect(text).toContain(`relay_events_total{result="refused",reason="invalid"} ${before.invalid + 30}`);
    } finally {
      for (const s of incs) s.mockRestore();
    }
  });
});
