/**
 * The turn queue in the relay (ingest.ts, turns.ts): a burst larger than a turn waits in its
 * connection's queue, in order; past the queue's bound a message is refused `rate-limited:`, and
 * the connection stays usable. Real WebSockets and Postgres; counted, never timed.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { WAITING_FRAMES_PER_CONNECTION } from '../src/ingest.ts';
import { newKey, RawClient, sign, startTestRelay, type TestRelay } from './harness.ts';

const databaseUrl = process.env.TEST_DATABASE_URL;
if (process.env.CI && !databaseUrl) throw new Error('CI must set TEST_DATABASE_URL');

describe.runIf(databaseUrl)('messages in bounded turns (Postgres)', () => {
  let relay: TestRelay;
  let c: RawClient;

  beforeAll(async () => {
    // Small frames make a small queue bound (WAITING_FRAMES_PER_CONNECTION of them); no address bucket.
    relay = await startTestRelay('postgres', { MAX_MESSAGE_LENGTH: '1024', MAX_MESSAGES_PER_SECOND: '100000', RATE_EVENTS_PER_IP: '0' });
    c = await RawClient.open(relay.url);
  });
  afterAll(async () => {
    c?.close();
    await relay?.stop();
  });

  it('a burst beyond the waiting bound is refused rate-limited:, the rest answered in order, and the connection goes on', async () => {
    const k = newKey();
    // Parsed, hashed and refused on the event loop: thousands take longer than a turn.
    const signed = sign(k.sk, { content: 'burst' });
    const burst = Array.from({ length: 3000 }, (_, i) => ({ ...signed, id: i.toString(16).padStart(64, '0') }));
    const frames = burst.map((ev) => JSON.stringify(['EVENT', ev]));
    expect(frames.every((f) => f.length < 1024)).toBe(true);
    for (const f of frames) c.send(f);
    // Once the answers stop coming the queue is empty (what overflowed was dropped unanswered).
    for (let last = -1; last !== c.messages.length; ) {
      last = c.messages.length;
      await new Promise((r) => setTimeout(r, 300));
    }
    const ok = sign(k.sk, { content: 'after the burst' });
    c.send(['EVENT', ok]);
    expect((await c.ok(ok.id, 30_000))[2]).toBe(true);

    const answers = c.messages.filter((m) => m[0] === 'OK') as [string, string, boolean, string][];
    const invalid = answers.filter((m) => m[3].startsWith('invalid:'));
    const waiting = answers.filter((m) => m[3].startsWith('rate-limited: too many messages waiting'));
    // More than a queue's worth were handled, and the overflow was refused, within the
    // connection's answers for such refusals (the rest dropped unanswered, as a flood's are).
    expect(invalid.length).toBeGreaterThan(WAITING_FRAMES_PER_CONNECTION);
    expect(waiting.length).toBeGreaterThan(0);
    expect(waiting.length).toBeLessThanOrEqual(10);
    for (const m of invalid) expect(m[3]).toBe('invalid: event id does not match the event');
    // Handled in the order sent (queued or not).
    const order = new Map(burst.map((ev, i) => [ev.id, i]));
    const seen = invalid.map((m) => order.get(m[1])!);
    expect(seen).toEqual([...seen].sort((a, b) => a - b));
    const m = await relay.ctx.metrics.messages.get();
    expect(m.values.find((v) => v.labels.type === 'queue-full')?.value ?? 0).toBeGreaterThan(0);
  });
});
