import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { finalizeEvent } from 'nostr-tools/pure';
import { makeAuthEvent } from 'nostr-tools/nip42';
import { backends, mine, newKey, nostrClient, RawClient, sign, sleep, startTestRelay, type TestRelay, until } from './harness.ts';

const now = () => Math.floor(Date.now() / 1000);

describe.each(backends())('NIPs 09, 11, 40, 42, 45, 70 on %s', (backend) => {
  let relay: TestRelay;
  let c: RawClient;
  beforeAll(async () => {
    relay = await startTestRelay(backend, { PURGE_INTERVAL_SECONDS: '1' });
    c = await RawClient.open(relay.url);
  });
  afterAll(async () => {
    c?.close();
    await relay?.stop();
  });

  it('NIP-09: the author deletes by e and a tags; deleted events cannot come back; others are untouched', async () => {
    const a = newKey();
    const b = newKey();
    const t = now() - 20;
    const note = sign(a.sk, { content: 'to delete', created_at: t });
    const article = sign(a.sk, { kind: 30023, tags: [['d', 'post']], created_at: t, content: 'v1' });
    const foreign = sign(b.sk, { content: 'not yours', created_at: t });
    for (const ev of [note, article, foreign]) {
      c.send(['EVENT', ev]);
      expect((await c.ok(ev.id))[2]).toBe(true);
    }
    const del = sign(a.sk, {
      kind: 5,
      created_at: t + 1,
      tags: [
        ['e', note.id],
        ['e', foreign.id],
        ['a', `30023:${a.pubkey}:post`],
      ],
    });
    c.send(['EVENT', del]);
    expect((await c.ok(del.id))[2]).toBe(true);
    const { events } = await c.req('d', { ids: [note.id, article.id, foreign.id] });
    expect(events.map((e) => e.id)).toEqual([foreign.id]);
    c.send(['EVENT', note]);
    expect((await c.ok(note.id))[2]).toBe(false);
    c.send(['EVENT', article]);
    expect((await c.ok(article.id))[2]).toBe(false);
    // a newer version of the address, after the deletion, is welcome
    const v2 = sign(a.sk, { kind: 30023, tags: [['d', 'post']], created_at: t + 2, content: 'v2' });
    c.send(['EVENT', v2]);
    expect((await c.ok(v2.id))[2]).toBe(true);
    // the deletion request itself is stored and queryable
    expect((await c.req('k5', { kinds: [5], authors: [a.pubkey] })).events.map((e) => e.id)).toEqual([del.id]);
  });

  it('NIP-11: the information document with CORS and the enforced limits', async () => {
    const res = await fetch(relay.url.replace('ws://', 'http://'), { headers: { Accept: 'application/nostr+json' } });
    expect(res.status).toBe(200);
    expect(res.headers.get('access-control-allow-origin')).toBe('*');
    expect(res.headers.get('access-control-allow-headers')).toBeTruthy();
    expect(res.headers.get('access-control-allow-methods')).toContain('GET');
    const doc = (await res.json()) as Record<string, any>;
    expect(doc.supported_nips).toEqual(expect.arrayContaining([1, 9, 11, 13, 40, 42, 45, 70]));
    expect(doc.self).toBe(relay.ctx.key.pubkey);
    expect(doc).not.toHaveProperty('software'); // RELAY_SOFTWARE_URL is unset by default
    expect(typeof doc.version).toBe('string');
    expect(doc.limitation).toMatchObject({
      max_message_length: relay.ctx.config.MAX_MESSAGE_LENGTH,
      max_subscriptions: relay.ctx.config.MAX_SUBSCRIPTIONS,
      max_limit: relay.ctx.config.MAX_LIMIT,
      max_event_tags: relay.ctx.config.MAX_EVENT_TAGS,
      max_content_length: relay.ctx.config.MAX_CONTENT_LENGTH,
      created_at_lower_limit: relay.ctx.config.CREATED_AT_LOWER_LIMIT,
      created_at_upper_limit: relay.ctx.config.CREATED_AT_UPPER_LIMIT,
      auth_required: false,
      min_pow_difficulty: 0,
    });
    const pre = await fetch(relay.url.replace('ws://', 'http://'), { method: 'OPTIONS' });
    expect(pre.headers.get('access-control-allow-origin')).toBe('*');
  });

  it('NIP-40: refuses an expired event, hides and purges one that expires', async () => {
    const a = newKey();
    const expired = sign(a.sk, { tags: [['expiration', String(now() - 1)]] });
    c.send(['EVENT', expired]);
    const m = await c.ok(expired.id);
    expect(m[2]).toBe(false);
    expect(m[3]).toMatch(/^invalid: /);
    const soon = sign(a.sk, { tags: [['expiration', String(now() + 2)]], content: 'soon gone' });
    c.send(['EVENT', soon]);
    expect((await c.ok(soon.id))[2]).toBe(true);
    expect((await c.req('e1', { ids: [soon.id] })).events.length).toBe(1);
    await sleep(3100);
    expect((await c.req('e2', { ids: [soon.id] })).events).toEqual([]);
    c.send(['COUNT', 'ec', { ids: [soon.id] }]);
    expect(await c.next((m) => m[0] === 'COUNT' && m[1] === 'ec')).toEqual(['COUNT', 'ec', { count: 0 }]);
  });

  it('NIP-42: AUTH with the challenge authenticates several pubkeys; a wrong challenge or relay is refused', async () => {
    const client = await RawClient.open(relay.url);
    const challenge = (await client.next((m) => m[0] === 'AUTH'))[1] as string;
    const a = newKey();
    const b = newKey();
    for (const k of [a, b]) {
      const auth = finalizeEvent(makeAuthEvent(relay.url, challenge), k.sk);
      client.send(['AUTH', auth]);
      expect(await client.ok(auth.id)).toEqual(['OK', auth.id, true, '']);
    }
    const wrong = finalizeEvent(makeAuthEvent(relay.url, 'not-the-challenge'), a.sk);
    client.send(['AUTH', wrong]);
    const w = await client.ok(wrong.id);
    expect(w[2]).toBe(false);
    const elsewhere = finalizeEvent(makeAuthEvent('wss://other.example.com', challenge), a.sk);
    client.send(['AUTH', elsewhere]);
    expect((await client.ok(elsewhere.id))[2]).toBe(false);
    const notAuthKind = sign(a.sk, {
      kind: 1,
      tags: [
        ['relay', relay.url],
        ['challenge', challenge],
      ],
    });
    client.send(['AUTH', notAuthKind]);
    expect((await client.ok(notAuthKind.id))[2]).toBe(false);
    // kind 22242 is never accepted as an EVENT (so never stored or broadcast)
    const asEvent = finalizeEvent(makeAuthEvent(relay.url, challenge), a.sk);
    client.send(['EVENT', asEvent]);
    expect((await client.ok(asEvent.id))[2]).toBe(false);
    // NIP-70: both authenticated pubkeys may publish their protected events, others may not
    for (const k of [a, b]) {
      const p = sign(k.sk, { tags: [['-']], content: 'protected' });
      client.send(['EVENT', p]);
      expect((await client.ok(p.id))[2]).toBe(true);
    }
    const stranger = newKey();
    const p = sign(stranger.sk, { tags: [['-']] });
    client.send(['EVENT', p]);
    const r = await client.ok(p.id);
    expect(r[2]).toBe(false);
    expect(r[3]).toMatch(/^restricted: /);
    client.close();
  });

  it('NIP-70: a protected event without AUTH is refused with auth-required', async () => {
    const a = newKey();
    const p = sign(a.sk, { tags: [['-']] });
    c.send(['EVENT', p]);
    const r = await c.ok(p.id);
    expect(r[2]).toBe(false);
    expect(r[3]).toMatch(/^auth-required: /);
  });

  it('NIP-42 through nostr-tools: auth() then a protected event', async () => {
    const client = await nostrClient(relay.url);
    const a = newKey();
    await sleep(50);
    await client.auth(async (t) => finalizeEvent(t, a.sk));
    await client.publish(sign(a.sk, { tags: [['-']], content: 'mine' }));
    client.close();
  });

  it('NIP-45: COUNT over several filters, distinct events', async () => {
    const a = newKey();
    for (let i = 0; i < 3; i++) {
      const ev = sign(a.sk, { kind: 1, tags: [['t', 'count']], content: String(i) });
      c.send(['EVENT', ev]);
      await c.ok(ev.id);
    }
    const r = sign(a.sk, { kind: 7 });
    c.send(['EVENT', r]);
    await c.ok(r.id);
    c.send(['COUNT', 'c1', { authors: [a.pubkey], kinds: [1] }, { '#t': ['count'] }, { kinds: [7], authors: [a.pubkey] }]);
    expect(await c.next((m) => m[0] === 'COUNT' && m[1] === 'c1')).toEqual(['COUNT', 'c1', { count: 4 }]);
    const client = await nostrClient(relay.url);
    expect(await client.count([{ authors: [a.pubkey] }], {})).toBe(4);
    client.close();
  });

  it('serves /healthz, /readyz and Prometheus /metrics', async () => {
    const http = relay.url.replace('ws://', 'http://');
    expect((await fetch(http + '/healthz')).status).toBe(200);
    expect((await fetch(http + '/readyz')).status).toBe(200);
    const body = await (await fetch(http + '/metrics')).text();
    for (const name of [
      'relay_connections',
      'relay_messages_total',
      'relay_events_total',
      'relay_query_duration_seconds_bucket',
      'relay_commit_duration_seconds_bucket',
    ]) {
      expect(body).toContain(name);
    }
    expect(body).toMatch(/relay_events_total\{result="accepted"/);
    expect(body).toMatch(/relay_events_total\{result="refused",reason="invalid"\}/);
  });
});

describe.each(backends())('limits and proof of work on %s', (backend) => {
  let relay: TestRelay;
  beforeAll(async () => {
    relay = await startTestRelay(backend, {
      MIN_POW_DIFFICULTY: '8',
      MAX_SUBSCRIPTIONS: '2',
      MAX_FILTERS: '2',
      MAX_LIMIT: '3',
      MAX_EVENT_TAGS: '3',
      MAX_CONTENT_LENGTH: '10',
      MAX_MESSAGE_LENGTH: '2048',
      CREATED_AT_LOWER_LIMIT: '3600',
      CREATED_AT_UPPER_LIMIT: '60',
      MAX_CONNECTIONS_PER_IP: '3',
      MAX_MESSAGES_PER_SECOND: '20',
    });
  });
  afterAll(async () => {
    await relay?.stop();
  });

  const mined = (sk: Uint8Array, t: object = {}) => mine(sk, t, 8);

  it('NIP-13: refuses too little work with pow:, accepts enough', async () => {
    const c = await RawClient.open(relay.url);
    const a = newKey();
    let weak = sign(a.sk);
    while (weak.id.startsWith('00')) weak = sign(a.sk, { content: String(Math.random()) });
    c.send(['EVENT', weak]);
    const m = await c.ok(weak.id);
    expect(m[2]).toBe(false);
    expect(m[3]).toMatch(/^pow: /);
    const strong = mined(a.sk);
    c.send(['EVENT', strong]);
    expect((await c.ok(strong.id))[2]).toBe(true);
    const doc = await (await fetch(relay.url.replace('ws://', 'http://'), { headers: { Accept: 'application/nostr+json' } })).json();
    expect(doc.limitation.min_pow_difficulty).toBe(8);
    expect(doc.limitation.restricted_writes).toBe(true);
    c.close();
  });

  it('enforces tags, content, created_at, filters, subscriptions, limit and message size', async () => {
    const c = await RawClient.open(relay.url);
    const a = newKey();
    const pk = a.pubkey;
    const cases: [object, RegExp][] = [
      [
        {
          tags: [
            ['t', '1'],
            ['t', '2'],
            ['t', '3'],
            ['t', '4'],
          ],
        },
        /^invalid: /,
      ],
      [{ content: 'x'.repeat(11) }, /^invalid: /],
      [{ created_at: now() - 7200 }, /^invalid: .*past/],
      [{ created_at: now() + 600 }, /^invalid: .*future/],
    ];
    for (const [t, re] of cases) {
      const ev = mined(a.sk, { ...t });
      c.send(['EVENT', ev]);
      const m = await c.ok(ev.id);
      expect(m[2]).toBe(false);
      expect(m[3]).toMatch(re);
    }
    const f = await c.req('f', { kinds: [1] }, { kinds: [2] }, { kinds: [3] });
    expect(f.end[0]).toBe('CLOSED');
    for (let i = 0; i < 4; i++) {
      const ev = mined(a.sk, { content: String(i) });
      c.send(['EVENT', ev]);
      await c.ok(ev.id);
    }
    const lim = await c.req('s1', { authors: [pk], limit: 100 });
    expect(lim.events.length).toBe(3);
    await c.req('s2', { authors: [pk], limit: 1 });
    const third = await c.req('s3', { authors: [pk] });
    expect(third.end[0]).toBe('CLOSED');
    expect(third.end[2]).toMatch(/^rate-limited: /);
    c.send(['CLOSE', 's1']);
    const again = await c.req('s3', { authors: [pk], limit: 1 });
    expect(again.end[0]).toBe('EOSE');
    c.send(JSON.stringify(['REQ', 'big', { kinds: [1], '#t': Array.from({ length: 200 }, (_, i) => 'x'.repeat(20) + i) }]));
    expect((await c.notice())[1]).toMatch(/^invalid: .*larger/);
    const ok = mined(a.sk, { content: 'still ok' });
    c.send(['EVENT', ok]);
    expect((await c.ok(ok.id))[2]).toBe(true);
    c.close();
  });

  it('limits connections per IP and messages per second', async () => {
    await sleep(200); // let the earlier tests' connections finish closing
    const open = await Promise.all([RawClient.open(relay.url), RawClient.open(relay.url), RawClient.open(relay.url)]);
    await expect(RawClient.open(relay.url)).rejects.toThrow(/429/);
    open[0].close();
    await sleep(100);
    const again = await RawClient.open(relay.url);
    for (let i = 0; i < 60; i++) again.send(['CLOSE', 'x' + i]);
    expect((await again.notice())[1]).toMatch(/^rate-limited: /);
    again.close();
    open.slice(1).forEach((x) => x.close());
  });

  it('answers a flood with one NOTICE, and closes a connection that keeps flooding', async () => {
    await sleep(200);
    const c = await RawClient.open(relay.url);
    // Burst 40 (2 × 20/s); the next 40 are refused with one NOTICE; one more burst's worth closes it.
    for (let i = 0; i < 40 + 45; i++) c.send(['CLOSE', 'y' + i]);
    await until(() => c.closed, 5000);
    expect(c.messages.filter((m) => m[0] === 'NOTICE' && /^rate-limited: /.test(String(m[1]))).length).toBe(1);
    // A client that slows down is not closed: the next connection works.
    const d = await RawClient.open(relay.url);
    d.send(['CLOSE', 'z']);
    await sleep(100);
    expect(d.closed).toBe(false);
    d.close();
  });
});
