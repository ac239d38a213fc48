import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { finalizeEvent } from 'nostr-tools/pure';
import { makeAuthEvent } from 'nostr-tools/nip42';
import { deleteEventsById, queryEvents, type QueryFilter } from '@paidrelay/db';
import { EVENTS_CHANNEL } from '@paidrelay/bus';
import { nowSeconds } from '@paidrelay/nostr';
import { createClient } from 'redis';
import { newKey, RawClient, sign, startTestRelay, until, type TestRelay } from './harness.ts';

/**
 * The recent-events cache in the relay, through WebSockets: two replicas on one Postgres and a
 * real Redis bus. What replica B stores or deletes shows in replica A's cached answers; a
 * moderation deletion on B empties A's cache; an unhealthy bus sends reads to Postgres; a
 * private kind stays private in cached answers. Likewise for tag filters (`#t`, `#p`).
 */

if (process.env.CI && (!process.env.TEST_REDIS_URL || !process.env.TEST_DATABASE_URL)) {
  throw new Error('CI must set TEST_REDIS_URL and TEST_DATABASE_URL');
}

type Key = ReturnType<typeof newKey>;

async function counted(relay: TestRelay, outcome: string): Promise<number> {
  const m = await relay.ctx.metrics.recentCache.get();
  return m.values.find((v) => v.labels.outcome === outcome)?.value ?? 0;
}

async function publish(c: RawClient, ev: ReturnType<typeof sign>): Promise<void> {
  c.send(['EVENT', ev]);
  const ok = await c.ok(ev.id);
  expect(ok[2], String(ok[3])).toBe(true);
}

const ids = (evs: Record<string, unknown>[]) => evs.map((e) => e.id);

describe.skipIf(!process.env.TEST_REDIS_URL || !process.env.TEST_DATABASE_URL)('recent-events cache across two replicas', () => {
  const x = newKey();
  let a: TestRelay;
  let b: TestRelay;
  let ca: RawClient;
  let cb: RawClient;

  beforeAll(async () => {
    const env = { REDIS_URL: process.env.TEST_REDIS_URL! };
    a = await startTestRelay('postgres', env);
    b = await startTestRelay('postgres', env, { databaseUrl: a.databaseUrl });
    ca = await RawClient.open(a.url);
    cb = await RawClient.open(b.url);
  });
  afterAll(async () => {
    ca?.close();
    cb?.close();
    await b?.stop();
    await a?.stop();
  });

  /** A's answer, checked against the store (for `asStored`: the filter as read policies narrow it); `hit`: whether the cache gave it. */
  async function readOnA(c: RawClient, filter: QueryFilter, asStored: QueryFilter = filter): Promise<{ ids: unknown[]; hit: boolean }> {
    const before = await counted(a, 'hit');
    const { events } = await c.req('q' + Math.random(), filter);
    const expected = await queryEvents(a.ctx.db.kysely, [asStored], nowSeconds());
    expect(events.map((e) => JSON.stringify(e))).toEqual(expected);
    return { ids: ids(events), hit: (await counted(a, 'hit')) > before };
  }

  it('reflects in A what B stores and deletes, answering from the cache', async () => {
    const t = nowSeconds();
    const first = [0, 1, 2].map((i) => sign(x.sk, { created_at: t - 10 + i, content: `a${i}` }));
    for (const ev of first) await publish(ca, ev);
    const f = { authors: [x.pubkey], kinds: [1], limit: 10 };
    expect((await readOnA(ca, f)).hit).toBe(false); // first read of x: Postgres
    expect((await readOnA(ca, f)).hit).toBe(true); // read again: loaded, then answered
    // A live subscription on A tells when B's messages have arrived.
    ca.send(['REQ', 'live', { authors: [x.pubkey] }]);
    await ca.next((m) => m[0] === 'EOSE' && m[1] === 'live');

    const fromB = sign(x.sk, { created_at: t - 5, content: 'from B' });
    await publish(cb, fromB);
    await ca.next((m) => m[0] === 'EVENT' && m[1] === 'live' && (m[2] as { id: string }).id === fromB.id);
    const after = await readOnA(ca, f);
    expect(after).toEqual({ ids: [fromB.id, first[2].id, first[1].id, first[0].id], hit: true });

    const deletion = sign(x.sk, { kind: 5, created_at: t - 4, tags: [['e', fromB.id]] });
    await publish(cb, deletion);
    await ca.next((m) => m[0] === 'EVENT' && m[1] === 'live' && (m[2] as { id: string }).id === deletion.id);
    expect((await readOnA(ca, f)).ids).toEqual([first[2].id, first[1].id, first[0].id]);
    expect(await readOnA(ca, f)).toEqual({ ids: [first[2].id, first[1].id, first[0].id], hit: true });

    // A moderation deletion on B (as NIP-86 banevent does: delete, then announce): A's cache empties.
    await deleteEventsById(b.ctx.db.kysely, [first[2].id]);
    await b.ctx.moderation.changed();
    await until(() => a.ctx.recentCache!.size.authors === 0, 2_000);
    expect((await readOnA(ca, f)).ids).toEqual([first[1].id, first[0].id]);
  });

  it("reflects in A's tag windows what B stores and deletes, answering from the cache", async () => {
    const y = newKey();
    const t = nowSeconds();
    const topic = `topic-${y.pubkey.slice(0, 12)}`;
    const byX = sign(x.sk, { created_at: t - 10, tags: [['t', topic]], content: 'x on topic' });
    await publish(ca, byX);
    const f = { '#t': [topic], limit: 10 };
    expect((await readOnA(ca, f)).hit).toBe(false); // first read of the tag: Postgres
    expect(await readOnA(ca, f)).toEqual({ ids: [byX.id], hit: true }); // read again: loaded, then answered
    ca.send(['REQ', 'live-y', { authors: [y.pubkey] }]);
    await ca.next((m) => m[0] === 'EOSE' && m[1] === 'live-y');
    const seen = (id: string) => ca.next((m) => m[0] === 'EVENT' && m[1] === 'live-y' && (m[2] as { id: string }).id === id);

    const byY = sign(y.sk, { created_at: t - 5, tags: [['t', topic]], content: 'y on topic, from B' });
    await publish(cb, byY);
    await seen(byY.id);
    expect(await readOnA(ca, f)).toEqual({ ids: [byY.id, byX.id], hit: true });

    // y deletes its event on B: A's window held it and goes; the read after is loaded again.
    const deletion = sign(y.sk, { kind: 5, created_at: t - 4, tags: [['e', byY.id]] });
    await publish(cb, deletion);
    await seen(deletion.id);
    expect(a.ctx.recentCache!.size.tags).toBe(0);
    expect(await readOnA(ca, f)).toEqual({ ids: [byX.id], hit: true });
    ca.send(['CLOSE', 'live-y']);

    await b.ctx.moderation.changed();
    await until(() => a.ctx.recentCache!.size.tags === 0, 2_000);
  });

  it('goes to Postgres, and holds nothing, while the bus is not healthy', async () => {
    const f = { authors: [x.pubkey], limit: 10 };
    await readOnA(ca, f);
    await readOnA(ca, f);
    expect((await readOnA(ca, f)).hit).toBe(true);
    const spy = vi.spyOn(a.ctx.bus, 'healthy').mockReturnValue(false);
    try {
      const misses = await counted(a, 'miss');
      expect((await readOnA(ca, f)).hit).toBe(false);
      expect(await counted(a, 'miss')).toBe(misses + 1);
      expect(a.ctx.recentCache!.size.authors).toBe(0);
    } finally {
      spy.mockRestore();
    }
    await readOnA(ca, f);
    expect((await readOnA(ca, f)).hit).toBe(true);
  });

  it('empties the cache when the bus sees a message may have been missed (a gap in a sender numbering)', async () => {
    const f = { authors: [x.pubkey], limit: 10 };
    await readOnA(ca, f);
    await readOnA(ca, f);
    expect((await readOnA(ca, f)).hit).toBe(true);
    expect(a.ctx.recentCache!.size.authors).toBeGreaterThan(0);
    // Another sender's 1st and 3rd message on the events channel: its 2nd never came.
    const raw = createClient({ url: process.env.TEST_REDIS_URL });
    await raw.connect();
    const key = `${a.ctx.config.REDIS_PREFIX}bus:${EVENTS_CHANNEL}`;
    await raw.xAdd(key, '*', { o: 'a-replica-that-lost-one', s: '1', c: '1', m: 'not an event' });
    await new Promise((r) => setTimeout(r, 300));
    expect((await readOnA(ca, f)).hit).toBe(true); // a sender's first message: nothing missed
    await raw.xAdd(key, '*', { o: 'a-replica-that-lost-one', s: '3', c: '3', m: 'not an event' });
    await raw.close();
    await until(() => a.ctx.recentCache!.size.authors === 0);
    // x was read before: its window is loaded again at once (from the store, which has every event).
    const loads = await counted(a, 'load');
    expect((await readOnA(ca, f)).hit).toBe(true);
    expect(await counted(a, 'load')).toBe(loads + 1);
  });

  it('keeps private kinds private in cached answers (PRIVATE_KINDS: only author and recipients)', async () => {
    const author = newKey();
    const recipient = newKey();
    const stranger = newKey();
    const t = nowSeconds();
    const note = sign(author.sk, { created_at: t - 3, content: 'public' });
    const dm = sign(author.sk, { kind: 4, created_at: t - 2, tags: [['p', recipient.pubkey]], content: 'secret' });
    await publish(ca, note);
    await publish(ca, dm);
    const f = { authors: [author.pubkey], limit: 10 };
    const privateTo = (readers: string[]) => ({ ...f, restrict: [{ kinds: [4, 1059], readers }] });

    const authed = async (k: Key) => {
      const c = await RawClient.open(a.url);
      const challenge = (await c.next((m) => m[0] === 'AUTH'))[1] as string;
      const ev = finalizeEvent(makeAuthEvent(a.url, challenge), k.sk);
      c.send(['AUTH', ev]);
      expect((await c.ok(ev.id))[2]).toBe(true);
      return c;
    };
    const anon = await RawClient.open(a.url);
    const asStranger = await authed(stranger);
    const asRecipient = await authed(recipient);
    try {
      for (let i = 0; i < 2; i++) await readOnA(anon, f, privateTo([]));
      // Every answer below is the cache's, and each is what the store says for that reader.
      expect(await readOnA(anon, f, privateTo([]))).toEqual({ ids: [note.id], hit: true });
      expect(await readOnA(asStranger, f, privateTo([stranger.pubkey]))).toEqual({ ids: [note.id], hit: true });
      expect(await readOnA(asRecipient, f, privateTo([recipient.pubkey]))).toEqual({ ids: [dm.id, note.id], hit: true });
      // The same by the recipient's tag: a tag window holds the DM, only the recipient sees it.
      const g = { '#p': [recipient.pubkey], limit: 10 };
      const privateToG = (readers: string[]) => ({ ...g, restrict: [{ kinds: [4, 1059], readers }] });
      for (let i = 0; i < 2; i++) await readOnA(anon, g, privateToG([]));
      expect(await readOnA(anon, g, privateToG([]))).toEqual({ ids: [], hit: true });
      expect(await readOnA(asStranger, g, privateToG([stranger.pubkey]))).toEqual({ ids: [], hit: true });
      expect(await readOnA(asRecipient, g, privateToG([recipient.pubkey]))).toEqual({ ids: [dm.id], hit: true });
    } finally {
      anon.close();
      asStranger.close();
      asRecipient.close();
    }
  });
});
