import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { finalizeEvent } from 'nostr-tools/pure';
import { makeAuthEvent } from 'nostr-tools/nip42';
import { newKey, nostrClient, RawClient, sign, startTestRelay, type TestRelay } from './harness.ts';

/**
 * NIP-42's relay tag, with RELAY_URL unset: the URL the client connected to (Host header, or
 * X-Forwarded-* behind a trusted proxy) is accepted, as khatru does; a configured RELAY_URL is
 * the only name accepted. Real WebSockets against a real relay.
 */

type Key = ReturnType<typeof newKey>;

// Storage is beside the point here: real Postgres when there is one (faster to start), else PGlite.
const backend = process.env.TEST_DATABASE_URL ? 'postgres' : 'pglite';

/** Opens a connection, waits for the challenge, sends AUTH naming `relayTag`, returns the OK and the client. */
async function authAs(url: string, relayTag: string, k: Key, headers: Record<string, string> = {}) {
  const c = await RawClient.open(url, headers);
  const challenge = (await c.next((m) => m[0] === 'AUTH'))[1] as string;
  const auth = finalizeEvent(makeAuthEvent(relayTag, challenge), k.sk);
  c.send(['AUTH', auth]);
  const ok = await c.ok(auth.id);
  return { c, ok };
}

/** NIP-70: a protected event is accepted only from an authenticated author, so it shows whether AUTH took. */
async function isAuthed(c: RawClient, k: Key): Promise<boolean> {
  const p = sign(k.sk, { tags: [['-']], content: 'protected ' + Math.random() });
  c.send(['EVENT', p]);
  const r = await c.ok(p.id);
  if (!r[2]) expect(r[3]).toMatch(/^auth-required: /);
  return r[2] === true;
}

describe('NIP-42 relay tag with RELAY_URL unset: the host the client connected to', () => {
  let relay: TestRelay;
  let ip: string; // ws://127.0.0.1:<port>: what the client dials, not the relay's own ws://localhost:<port>
  beforeAll(async () => {
    relay = await startTestRelay(backend, { RELAY_SOFTWARE_URL: 'https://example.org/paidrelay' });
    ip = `ws://127.0.0.1:${relay.port}`;
  });
  afterAll(async () => {
    await relay?.stop();
  });

  it('the relay calls itself localhost', () => {
    expect(relay.url).toBe(`ws://localhost:${relay.port}`);
  });

  it('accepts an AUTH naming 127.0.0.1 when connected to 127.0.0.1, in the forms clients write', async () => {
    for (const tag of [ip, `${ip}/`, `wss://127.0.0.1:${relay.port}`]) {
      const k = newKey();
      const { c, ok } = await authAs(ip, tag, k);
      expect(ok[2], tag).toBe(true);
      expect(await isAuthed(c, k)).toBe(true);
      c.close();
    }
  });

  it("still accepts the relay's own name, localhost", async () => {
    const k = newKey();
    const { c, ok } = await authAs(ip, relay.url, k);
    expect(ok[2]).toBe(true);
    c.close();
  });

  it('refuses an AUTH naming another host (or port) with invalid:, and the key is not authenticated', async () => {
    for (const tag of ['ws://relay.example.com', `ws://127.0.0.2:${relay.port}`, `ws://127.0.0.1:${relay.port + 1}`, `${ip}/other`]) {
      const k = newKey();
      const { c, ok } = await authAs(ip, tag, k);
      expect(ok[2], tag).toBe(false);
      expect(ok[3]).toBe('invalid: auth event relay tag does not match this relay');
      expect(await isAuthed(c, k)).toBe(false);
      c.close();
    }
  });

  it('takes the name from the Host header the client sent', async () => {
    const k = newKey();
    const { c, ok } = await authAs(ip, 'wss://Relay.Example.COM/', k, { Host: 'relay.example.com' });
    expect(ok[2]).toBe(true);
    c.close();
    const other = await authAs(ip, ip, newKey(), { Host: 'relay.example.com' });
    expect(other.ok[2]).toBe(false);
    other.c.close();
  });

  it('ignores X-Forwarded-* when TRUST_PROXY is off', async () => {
    const fwd = { 'X-Forwarded-Proto': 'https', 'X-Forwarded-Host': 'relay.example.com' };
    const bad = await authAs(ip, 'wss://relay.example.com', newKey(), fwd);
    expect(bad.ok[2]).toBe(false);
    expect(bad.ok[3]).toMatch(/^invalid: /);
    bad.c.close();
    const good = await authAs(ip, ip, newKey(), fwd);
    expect(good.ok[2]).toBe(true);
    good.c.close();
  });

  it('nostr-tools connected to 127.0.0.1 signs in (its relay tag is the URL it dialled)', async () => {
    const client = await nostrClient(ip);
    const a = newKey();
    await client.auth(async (t) => {
      expect(t.tags).toContainEqual(['relay', `${ip}/`]);
      return finalizeEvent(t, a.sk);
    });
    await client.publish(sign(a.sk, { tags: [['-']], content: 'mine, over 127.0.0.1' }));
    client.close();
  });

  it('NIP-11 software is RELAY_SOFTWARE_URL when set', async () => {
    const doc = (await (await fetch(`http://127.0.0.1:${relay.port}`, { headers: { Accept: 'application/nostr+json' } })).json()) as Record<
      string,
      unknown
    >;
    expect(doc.software).toBe('https://example.org/paidrelay');
  });
});

describe('NIP-42 relay tag with RELAY_URL set: strict', () => {
  let relay: TestRelay;
  let ip: string;
  beforeAll(async () => {
    relay = await startTestRelay(backend, { RELAY_URL: 'wss://relay.example.com' });
    ip = `ws://127.0.0.1:${relay.port}`;
  });
  afterAll(async () => {
    await relay?.stop();
  });

  it('refuses the host the client connected to, accepts only RELAY_URL', async () => {
    for (const [tag, headers] of [
      [ip, {}],
      [`ws://localhost:${relay.port}`, {}],
      ['wss://evil.example.com', { Host: 'evil.example.com' }],
    ] as const) {
      const k = newKey();
      const { c, ok } = await authAs(ip, tag, k, headers);
      expect(ok[2], tag).toBe(false);
      expect(ok[3]).toBe('invalid: auth event relay tag does not match this relay');
      expect(await isAuthed(c, k)).toBe(false);
      c.close();
    }
    const k = newKey();
    const { c, ok } = await authAs(ip, 'wss://relay.example.com/', k);
    expect(ok[2]).toBe(true);
    expect(await isAuthed(c, k)).toBe(true);
    c.close();
  });

  it('NIP-11 has no software field when RELAY_SOFTWARE_URL is unset', async () => {
    const doc = (await (await fetch(`http://127.0.0.1:${relay.port}`, { headers: { Accept: 'application/nostr+json' } })).json()) as Record<
      string,
      unknown
    >;
    expect(doc).not.toHaveProperty('software');
    expect(doc.name).toBe('paidrelay');
  });
});

describe('NIP-42 relay tag behind a trusted proxy (TRUST_PROXY=true)', () => {
  let relay: TestRelay;
  let ip: string;
  beforeAll(async () => {
    relay = await startTestRelay(backend, { TRUST_PROXY: 'true' });
    ip = `ws://127.0.0.1:${relay.port}`;
  });
  afterAll(async () => {
    await relay?.stop();
  });

  const fwd = { 'X-Forwarded-Proto': 'https', 'X-Forwarded-Host': 'relay.example.com', 'X-Forwarded-For': '203.0.113.7' };

  it('accepts the forwarded wss://host (default port 443 too), refuses the inner Host', async () => {
    for (const tag of ['wss://relay.example.com', 'wss://relay.example.com:443/', 'wss://RELAY.example.com']) {
      const k = newKey();
      const { c, ok } = await authAs(ip, tag, k, fwd);
      expect(ok[2], tag).toBe(true);
      expect(await isAuthed(c, k)).toBe(true);
      c.close();
    }
    for (const tag of [ip, 'wss://relay.example.com:8443', 'wss://other.example.com']) {
      const { c, ok } = await authAs(ip, tag, newKey(), fwd);
      expect(ok[2], tag).toBe(false);
      expect(ok[3]).toMatch(/^invalid: /);
      c.close();
    }
  });

  it('X-Forwarded-Proto https maps to wss: its default port is 443', async () => {
    const h = { 'X-Forwarded-Proto': 'https', 'X-Forwarded-Host': 'relay.example.com:443' };
    const a = await authAs(ip, 'wss://relay.example.com', newKey(), h);
    expect(a.ok[2]).toBe(true);
    a.c.close();
  });

  it('X-Forwarded-Proto http maps to ws: its default port is 80', async () => {
    const h = { 'X-Forwarded-Proto': 'http', 'X-Forwarded-Host': 'relay.example.com:80' };
    const a = await authAs(ip, 'ws://relay.example.com', newKey(), h);
    expect(a.ok[2]).toBe(true);
    a.c.close();
  });

  it('without forwarded headers, the Host header as sent', async () => {
    const a = await authAs(ip, ip, newKey());
    expect(a.ok[2]).toBe(true);
    a.c.close();
  });
});
