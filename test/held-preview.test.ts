import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { npubEncode } from 'nostr-tools/nip19';
import { newKey, RawClient, sign } from '../apps/relay/test/harness.ts';
import { startStack, type TestStack } from './stack.ts';

/** GET /api/held/:event_id shows a refused event's preview only to a caller naming its author. */

const backend = process.env.TEST_DATABASE_URL ? 'postgres' : 'pglite';

describe(`held event preview (${backend})`, () => {
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
  const held = async (id: string, pubkey: string) => {
    for (let i = 0; i < 100; i++) {
      const r = await get(`/api/held/${id}?pubkey=${pubkey}`);
      if (r.status === 200) return r;
      await new Promise((res) => setTimeout(res, 50));
    }
    throw new Error('event was not held');
  };

  it('with the author (hex or npub, as the pay URL has it) the preview is shown', async () => {
    await held(ev.id, author.pubkey);
    for (const pk of [author.pubkey, npubEncode(author.pubkey), author.pubkey.toUpperCase()]) {
      const r = await get(`/api/held/${ev.id}?pubkey=${pk}`);
      expect(r.status).toBe(200);
      expect(r.body).toMatchObject({ id: ev.id, pubkey: author.pubkey, kind: 1, content_preview: 'a private draft, not for everyone', amount_msat: 5000 });
    }
  });

  it('without the author it is a 404 exactly like an unknown id: neither content nor existence leaks', async () => {
    const unknown = await get(`/api/held/${'f'.repeat(64)}?pubkey=${author.pubkey}`);
    expect(unknown.status).toBe(404);
    for (const q of ['', '?pubkey=', `?pubkey=${other.pubkey}`, `?pubkey=${npubEncode(other.pubkey)}`, `?x=${author.pubkey}`]) {
      const r = await get(`/api/held/${ev.id}${q}`);
      expect(r.status, q).toBe(404);
      expect(r.body).toEqual(unknown.body);
      expect(JSON.stringify(r.body)).not.toContain('private draft');
    }
  });

  it('a malformed pubkey is a 400 with a message (whether or not the event exists)', async () => {
    for (const id of [ev.id, 'e'.repeat(64)]) {
      const r = await get(`/api/held/${id}?pubkey=npub1nope`);
      expect(r.status).toBe(400);
      expect(r.body.error).toMatch(/pubkey/);
    }
  });

  it('the pay URL from the refusal is enough for the pay page to load the preview', async () => {
    const ev2 = sign(author.sk, { content: 'second draft' });
    c.send(['EVENT', ev2]);
    const reason = String((await c.ok(ev2.id))[3]);
    const pay = new URL(reason.slice(reason.lastIndexOf('http')));
    const r = await held(pay.searchParams.get('event')!, encodeURIComponent(pay.searchParams.get('pubkey')!));
    expect(r.status).toBe(200);
    expect(r.body.content_preview).toBe('second draft');
  });
});
