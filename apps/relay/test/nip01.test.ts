import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { backends, newKey, nostrClient, plain, RawClient, sign, sleep, startTestRelay, type TestRelay, until } from './harness.ts';

describe.each(backends())('NIP-01 on %s', (backend) => {
  let relay: TestRelay;
  let c: RawClient;
  beforeAll(async () => {
    relay = await startTestRelay(backend);
    c = await RawClient.open(relay.url);
  });
  afterAll(async () => {
    c?.close();
    await relay?.stop();
  });

  it('sends an AUTH challenge on connect', async () => {
    const m = await c.next((m) => m[0] === 'AUTH');
    expect(typeof m[1]).toBe('string');
    expect((m[1] as string).length).toBeGreaterThanOrEqual(16);
  });

  it('stores an event, answers OK true, and returns it to a REQ on another connection', async () => {
    const { sk } = newKey();
    const ev = sign(sk, { content: 'first' });
    c.send(['EVENT', ev]);
    expect(await c.ok(ev.id)).toEqual(['OK', ev.id, true, '']);
    const other = await RawClient.open(relay.url);
    const { events, end } = await other.req('s', { ids: [ev.id] });
    other.close();
    expect(end).toEqual(['EOSE', 's']);
    expect(events).toEqual([ev]);
  });

  it('answers a duplicate with OK true and the duplicate prefix', async () => {
    const { sk } = newKey();
    const ev = sign(sk);
    c.send(['EVENT', ev]);
    await c.ok(ev.id);
    c.send(['EVENT', ev]);
    const m = await c.ok(ev.id);
    expect(m[2]).toBe(true);
    expect(m[3]).toMatch(/^duplicate: /);
  });

  it('refuses a bad signature and a bad id with invalid:', async () => {
    const { sk } = newKey();
    const ev = sign(sk);
    const badSig = { ...ev, sig: ev.sig.slice(0, -2) + (ev.sig.endsWith('00') ? '11' : '00') };
    c.send(['EVENT', badSig]);
    expect(await c.ok(ev.id)).toEqual(['OK', ev.id, false, 'invalid: signature is invalid']);
    const badId = { ...sign(sk, { content: 'x' }), content: 'tampered' };
    c.send(['EVENT', badId]);
    const m = await c.ok(badId.id);
    expect(m[2]).toBe(false);
    expect(m[3]).toMatch(/^invalid: /);
  });

  it('answers malformed input with NOTICE and keeps the connection usable', async () => {
    for (const bad of ['not json', '{}', '[]', '["NOPE"]', '["EVENT"]', '["REQ"]', '["CLOSE", 5]', '[1,2,3]', '"x"', 'null']) {
      c.send(bad);
      const m = await c.notice();
      expect(typeof m[1]).toBe('string');
    }
    c.send(['EVENT', { id: 'zz' }]);
    expect((await c.notice())[1]).toMatch(/^invalid: /);
    const { sk } = newKey();
    const ev = sign(sk);
    c.send(['EVENT', ev]);
    expect((await c.ok(ev.id))[2]).toBe(true);
  });

  it('answers a bad filter with CLOSED', async () => {
    const { end } = await c.req('badf', { ids: ['nothex'] });
    expect(end[0]).toBe('CLOSED');
    expect(end[2]).toMatch(/^invalid: /);
    const r2 = await c.req('unk', { foo: 1 });
    expect(r2.end[0]).toBe('CLOSED');
    expect(r2.end[2]).toMatch(/^unsupported: /);
  });

  it('matches every filter field, ORs filters without duplicates, newest first', async () => {
    const a = newKey();
    const b = newKey();
    const t0 = Math.floor(Date.now() / 1000) - 100;
    const evs = [
      sign(a.sk, { kind: 1, created_at: t0 + 1, tags: [['t', 'cats']], content: 'a1' }),
      sign(a.sk, { kind: 7, created_at: t0 + 2, tags: [['e', 'f'.repeat(64)]], content: 'a2' }),
      sign(b.sk, {
        kind: 1,
        created_at: t0 + 3,
        tags: [
          ['t', 'dogs'],
          ['p', a.pubkey],
        ],
        content: 'b1',
      }),
      sign(b.sk, { kind: 1, created_at: t0 + 4, tags: [['t', 'cats']], content: 'b2' }),
    ];
    for (const ev of evs) {
      c.send(['EVENT', ev]);
      expect((await c.ok(ev.id))[2]).toBe(true);
    }
    const ids = async (...filters: object[]) => (await c.req('q' + Math.random(), ...filters)).events.map((e) => e.content);
    expect(await ids({ authors: [a.pubkey] })).toEqual(['a2', 'a1']);
    expect(await ids({ authors: [a.pubkey, b.pubkey], kinds: [1] })).toEqual(['b2', 'b1', 'a1']);
    expect(await ids({ '#t': ['cats'], authors: [a.pubkey, b.pubkey] })).toEqual(['b2', 'a1']);
    expect(await ids({ '#p': [a.pubkey] })).toEqual(['b1']);
    expect(await ids({ '#e': ['f'.repeat(64)] })).toEqual(['a2']);
    expect(await ids({ authors: [a.pubkey, b.pubkey], since: t0 + 2, until: t0 + 3 })).toEqual(['b1', 'a2']);
    expect(await ids({ authors: [a.pubkey, b.pubkey], limit: 2 })).toEqual(['b2', 'b1']);
    expect(await ids({ ids: [evs[0].id, evs[3].id] })).toEqual(['b2', 'a1']);
    // OR of overlapping filters, each event once
    expect(await ids({ authors: [a.pubkey] }, { '#t': ['cats'], authors: [a.pubkey, b.pubkey] }, { ids: [evs[0].id] })).toEqual([
      'b2',
      'a2',
      'a1',
    ]);
  });

  it('delivers live events to matching subscriptions only, until CLOSE', async () => {
    const a = newKey();
    const sub = await RawClient.open(relay.url);
    await sub.req('live', { authors: [a.pubkey], kinds: [1] });
    await sub.req('other', { kinds: [12345] });
    const ev = sign(a.sk, { content: 'live one' });
    c.send(['EVENT', ev]);
    await c.ok(ev.id);
    const got = await sub.next((m) => m[0] === 'EVENT');
    expect(got).toEqual(['EVENT', 'live', ev]);
    const notMatching = sign(a.sk, { kind: 7, content: 'no' });
    c.send(['EVENT', notMatching]);
    await c.ok(notMatching.id);
    sub.send(['CLOSE', 'live']);
    await sleep(50);
    const after = sign(a.sk, { content: 'after close' });
    c.send(['EVENT', after]);
    await c.ok(after.id);
    await sleep(100);
    expect(sub.messages.filter((m) => m[0] === 'EVENT')).toEqual([]);
    sub.close();
  });

  it('replaces a REQ with the same subscription id', async () => {
    const a = newKey();
    const sub = await RawClient.open(relay.url);
    await sub.req('x', { kinds: [1], authors: [a.pubkey] });
    await sub.req('x', { kinds: [7], authors: [a.pubkey] });
    const e1 = sign(a.sk, { kind: 1 });
    const e7 = sign(a.sk, { kind: 7 });
    c.send(['EVENT', e1]);
    c.send(['EVENT', e7]);
    await c.ok(e1.id);
    await c.ok(e7.id);
    const got = await sub.next((m) => m[0] === 'EVENT');
    expect((got[2] as { kind: number }).kind).toBe(7);
    await sleep(50);
    expect(sub.messages.filter((m) => m[0] === 'EVENT')).toEqual([]);
    sub.close();
  });

  it('keeps only the newest replaceable event, lowest id on a tie', async () => {
    const a = newKey();
    const t = Math.floor(Date.now() / 1000) - 10;
    const old = sign(a.sk, { kind: 0, created_at: t, content: '{"name":"old"}' });
    const newer = sign(a.sk, { kind: 0, created_at: t + 5, content: '{"name":"new"}' });
    c.send(['EVENT', old]);
    await c.ok(old.id);
    c.send(['EVENT', newer]);
    expect((await c.ok(newer.id))[2]).toBe(true);
    c.send(['EVENT', old]);
    expect((await c.ok(old.id))[2]).toBe(false);
    const { events } = await c.req('r', { kinds: [0], authors: [a.pubkey] });
    expect(events.map((e) => e.id)).toEqual([newer.id]);

    const x = sign(a.sk, { kind: 10002, created_at: t, content: 'x' });
    const y = sign(a.sk, { kind: 10002, created_at: t, content: 'y' });
    const [low, high] = x.id < y.id ? [x, y] : [y, x];
    c.send(['EVENT', high]);
    await c.ok(high.id);
    c.send(['EVENT', low]);
    expect((await c.ok(low.id))[2]).toBe(true);
    c.send(['EVENT', high]);
    expect((await c.ok(high.id))[2]).toBe(false);
    const r2 = await c.req('r2', { kinds: [10002], authors: [a.pubkey] });
    expect(r2.events.map((e) => e.id)).toEqual([low.id]);
  });

  it('keeps the newest addressable event per d tag', async () => {
    const a = newKey();
    const t = Math.floor(Date.now() / 1000) - 10;
    const evs = [
      sign(a.sk, { kind: 30023, created_at: t, tags: [['d', 'one']], content: 'one v1' }),
      sign(a.sk, { kind: 30023, created_at: t + 1, tags: [['d', 'one']], content: 'one v2' }),
      sign(a.sk, { kind: 30023, created_at: t, tags: [['d', 'two']], content: 'two v1' }),
    ];
    for (const ev of evs) {
      c.send(['EVENT', ev]);
      expect((await c.ok(ev.id))[2]).toBe(true);
    }
    const { events } = await c.req('ad', { kinds: [30023], authors: [a.pubkey] });
    expect(events.map((e) => e.content)).toEqual(['one v2', 'two v1']);
  });

  it('relays ephemeral events without storing them', async () => {
    const a = newKey();
    const sub = await RawClient.open(relay.url);
    await sub.req('eph', { kinds: [20001], authors: [a.pubkey] });
    const ev = sign(a.sk, { kind: 20001, content: 'now only' });
    c.send(['EVENT', ev]);
    expect((await c.ok(ev.id))[2]).toBe(true);
    expect(await sub.next((m) => m[0] === 'EVENT')).toEqual(['EVENT', 'eph', ev]);
    const { events } = await c.req('eph2', { ids: [ev.id] });
    expect(events).toEqual([]);
    sub.close();
  });

  it('works with nostr-tools as the client', async () => {
    const client = await nostrClient(relay.url);
    const a = newKey();
    const ev = sign(a.sk, { content: 'from nostr-tools' });
    await client.publish(ev);
    const got = await new Promise<unknown[]>((resolve) => {
      const events: unknown[] = [];
      const s = client.subscribe([{ authors: [a.pubkey] }], {
        onevent: (e) => events.push(e),
        oneose: () => {
          s.close();
          resolve(events);
        },
      });
    });
    expect(plain(got)).toEqual([ev]);
    client.close();
  });

  it('answers OK true for many concurrent writes, all stored (group commit)', async () => {
    const a = newKey();
    const clients = await Promise.all(Array.from({ length: 5 }, () => RawClient.open(relay.url)));
    const evs = Array.from({ length: 200 }, (_, i) => sign(a.sk, { content: `burst ${i}`, tags: [['t', 'burst']] }));
    evs.forEach((ev, i) => clients[i % 5].send(['EVENT', ev]));
    const oks = await Promise.all(evs.map((ev, i) => clients[i % 5].ok(ev.id)));
    expect(oks.every((m) => m[2] === true)).toBe(true);
    clients.forEach((x) => x.close());
    c.send(['COUNT', 'n', { authors: [a.pubkey] }]);
    expect(await c.next((m) => m[0] === 'COUNT' && m[1] === 'n')).toEqual(['COUNT', 'n', { count: 200 }]);
  });
});

describe('a signature worker that dies', () => {
  it('is replaced, and the events it held are answered error:, never invalid:', async () => {
    const relay = await startTestRelay('pglite');
    try {
      const pool = relay.ctx.verifier as unknown as { workers: { worker: { terminate(): Promise<number> } }[] };
      const c = await RawClient.open(relay.url);
      const k = newKey();
      const evs = Array.from({ length: 50 }, (_, i) => sign(k.sk, { content: `while the worker dies ${i}` }));
      for (const ev of evs) c.send(['EVENT', ev]);
      await Promise.all(pool.workers.map((w) => w.worker.terminate()));
      const oks = await Promise.all(evs.map((ev) => c.ok(ev.id)));
      for (const m of oks) if (m[2] === false) expect(m[3]).toMatch(/^error: /);
      // A new worker takes over.
      await until(() => pool.workers.length > 0);
      const after = sign(k.sk, { content: 'verified by the new worker' });
      c.send(['EVENT', after]);
      expect((await c.ok(after.id))[2]).toBe(true);
      c.close();
    } finally {
      await relay.stop();
    }
  });
});
