import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { npubEncode } from 'nostr-tools/nip19';
import { newKey, RawClient, sign } from '../apps/relay/test/harness.ts';
import { startStack, type TestStack } from './stack.ts';

/** GET /api/held/:event_id: what the pay page needs to sell one held event, and never its content. */

const backend = process.env.TEST_DATABASE_URL ? 'postgres' : 'pglite';

describe(`the held event API (${backend})`, () => {
  let t: TestStack;
  let c: RawClient;
  const author = newKey();
  const other = newKey();
  let ev: ReturnType<typeof sign>;

  beforeAll(async () => {
    t = await startStack({ PRICE_ADMISSION_MSAT: '21000', PRICE_EVENT_MSAT: '5000', RECONCILE_INTERVAL_SECONDS: '3600' }, { backend });
    c = await RawClient.open(t.relayUrl);
    ev = sign(author.sk, { content: 'a private draft, not for everyone' });
    c.send(['EVENT', ev]);
    const ok = await c.ok(ev.id);
    expect(ok[2]).toBe(false);
    expect(String(ok[3])).toMatch(/^blocked: payment required/);
  });
  afterAll(async () => {
    c?.close();
    await t?.stop();
  });

  const get = async (path: string) => {
    const res = await fetch(t.apiBase + path);
    return { status: res.status, body: (await res.json()) as Record<string, unknown> };
  };
  /** Refused events are held in the background: wait until this one is. */
  const held = async (id: string) => {
    for (let i = 0; i < 100; i++) {
      const r = await get(`/api/held/${id}`);
      if (r.status === 200) return r;
      await new Promise((res) => setTimeout(res, 50));
    }
    throw new Error('event was not held');
  };

  it('names the held event, its author and its price, never its content', async () => {
    const r = await held(ev.id);
    expect(r.body).toEqual({ id: ev.id, pubkey: author.pubkey, kind: 1, amount_msat: 5000, expires_at: expect.any(Number) });
    expect(JSON.stringify(r.body)).not.toContain('private draft');
    for (const pk of [author.pubkey, npubEncode(author.pubkey), author.pubkey.toUpperCase()]) {
      expect((await get(`/api/held/${ev.id}?pubkey=${pk}`)).body).toEqual(r.body);
    }
  });

  it('with another pubkey it is a 404 exactly like an unknown id', async () => {
    const unknown = await get(`/api/held/${'f'.repeat(64)}`);
    expect(unknown.status).toBe(404);
    for (const q of [`?pubkey=${other.pubkey}`, `?pubkey=${npubEncode(other.pubkey)}`]) {
      const r = await get(`/api/held/${ev.id}${q}`);
      expect(r.status, q).toBe(404);
      expect(r.body).toEqual(unknown.body);
    }
  });

  it('a malformed pubkey is a 400 with a message (whether or not the event exists)', async () => {
    for (const id of [ev.id, 'e'.repeat(64)]) {
      const r = await get(`/api/held/${id}?pubkey=npub1nope`);
      expect(r.status).toBe(400);
      expect(r.body.error).toMatch(/pubkey/);
    }
  });

  it('the short pay URL from the refusal is all the pay page needs', async () => {
    const ev2 = sign(author.sk, { content: 'second draft' });
    c.send(['EVENT', ev2]);
    const reason = String((await c.ok(ev2.id))[3]);
    const pay = new URL(reason.slice(reason.lastIndexOf('http')));
    expect(pay.pathname).toBe(`/pay/e/${ev2.id}`);
    const page = await fetch(pay);
    expect(page.status).toBe(200);
    expect(await page.text()).toContain('<html');
    expect((await held(ev2.id)).body).toMatchObject({ id: ev2.id, pubkey: author.pubkey });
  });
});
