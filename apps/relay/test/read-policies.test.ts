import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { finalizeEvent } from 'nostr-tools/pure';
import { makeAuthEvent } from 'nostr-tools/nip42';
import { backends, newKey, nostrClient, RawClient, sign, sleep, startTestRelay, type TestRelay } from './harness.ts';

type Key = ReturnType<typeof newKey>;
const now = () => Math.floor(Date.now() / 1000);

/** A raw client that has answered the relay's challenge for each key (none: a stranger). */
async function reader(url: string, ...keys: Key[]): Promise<RawClient> {
  const c = await RawClient.open(url);
  const challenge = (await c.next((m) => m[0] === 'AUTH'))[1] as string;
  for (const k of keys) {
    const auth = finalizeEvent(makeAuthEvent(url, challenge), k.sk);
    c.send(['AUTH', auth]);
    expect(await c.ok(auth.id)).toEqual(['OK', auth.id, true, '']);
  }
  return c;
}

async function publish(c: RawClient, ...events: ReturnType<typeof sign>[]) {
  for (const ev of events) {
    c.send(['EVENT', ev]);
    expect((await c.ok(ev.id))[2]).toBe(true);
  }
}

const ids = (events: Record<string, unknown>[]) => events.map((e) => e.id as string).sort();

async function count(c: RawClient, id: string, ...filters: object[]): Promise<unknown[]> {
  c.send(['COUNT', id, ...filters]);
  return c.next((m) => (m[0] === 'COUNT' || m[0] === 'CLOSED') && m[1] === id);
}

/** Waits (without taking it) until the client has an EVENT `id` for `subId`. */
async function arrived(c: RawClient, subId: string, id: string, ms = 5000): Promise<void> {
  const end = Date.now() + ms;
  while (!c.messages.some((m) => m[0] === 'EVENT' && m[1] === subId && (m[2] as { id: string }).id === id)) {
    if (Date.now() > end) throw new Error(`event ${id} did not reach ${subId}`);
    await sleep(10);
  }
}

/** Live EVENTs received so far for a subscription (taken out of the client's inbox). */
function live(c: RawClient, subId: string): string[] {
  const got = c.messages.filter((m) => m[0] === 'EVENT' && m[1] === subId).map((m) => (m[2] as { id: string }).id);
  c.messages = c.messages.filter((m) => !(m[0] === 'EVENT' && m[1] === subId));
  return got.sort();
}

describe.each(backends())('read policies on an open relay, %s', (backend) => {
  let relay: TestRelay;
  let pub: RawClient;
  beforeAll(async () => {
    relay = await startTestRelay(backend);
    pub = await RawClient.open(relay.url);
  });
  afterAll(async () => {
    pub?.close();
    await relay?.stop();
  });

  /** alice writes bob a DM; a gift wrap (signed by a throwaway key) is for bob; a public note tags bob. */
  async function conversation() {
    const alice = newKey();
    const bob = newKey();
    const wrapper = newKey();
    const dm = sign(alice.sk, { kind: 4, tags: [['p', bob.pubkey]], content: 'secret?iv=abc' });
    const gift = sign(wrapper.sk, { kind: 1059, tags: [['p', bob.pubkey]], content: 'sealed' });
    const note = sign(alice.sk, { kind: 1, tags: [['p', bob.pubkey]], content: 'hi @bob' });
    return { alice, bob, dm, gift, note };
  }

  it('stored DMs and gift wraps: refused to a stranger (with a fresh AUTH), hidden from filters without kinds', async () => {
    const { bob, alice, dm, gift, note } = await conversation();
    await publish(pub, dm, gift, note);
    const c = await reader(relay.url);
    const r = await c.req('dms', { kinds: [4, 1059], '#p': [bob.pubkey] });
    expect(r.end[0]).toBe('CLOSED');
    expect(r.end[2]).toMatch(/^auth-required: /);
    expect(r.events).toEqual([]);
    // NIP-42: a challenge follows the refusal, and it is one the relay accepts
    const challenge = (await c.next((m) => m[0] === 'AUTH', 1000))[1] as string;
    expect(typeof challenge).toBe('string');
    // a kind list with one private kind among public ones is refused too
    expect((await c.req('mixed', { kinds: [1, 4], authors: [alice.pubkey] })).end[2]).toMatch(/^auth-required: /);
    await c.next((m) => m[0] === 'AUTH', 1000);
    const counted = await count(c, 'cdm', { kinds: [4] });
    expect(counted[0]).toBe('CLOSED');
    expect(counted[2]).toMatch(/^auth-required: /);
    await c.next((m) => m[0] === 'AUTH', 1000);
    // without kinds: every public event, no private one
    expect(ids((await c.req('tagged', { '#p': [bob.pubkey] })).events)).toEqual([note.id]);
    expect(ids((await c.req('byAuthor', { authors: [alice.pubkey] })).events)).toEqual([note.id]);
    expect(ids((await c.req('byId', { ids: [dm.id, gift.id, note.id] })).events)).toEqual([note.id]);
    expect(await count(c, 'ctag', { '#p': [bob.pubkey] })).toEqual(['COUNT', 'ctag', { count: 1 }]);
    // the challenge sent after the refusal authenticates; bob then reads his messages
    const auth = finalizeEvent(makeAuthEvent(relay.url, challenge), bob.sk);
    c.send(['AUTH', auth]);
    expect((await c.ok(auth.id))[2]).toBe(true);
    expect(ids((await c.req('dms2', { kinds: [4, 1059], '#p': [bob.pubkey] })).events)).toEqual([dm.id, gift.id].sort());
    c.close();
  });

  it('stored: an authenticated stranger gets none, the recipient and the author get theirs (REQ and COUNT)', async () => {
    const { alice, bob, dm, gift, note } = await conversation();
    await publish(pub, dm, gift, note);
    const carol = newKey();
    const stranger = await reader(relay.url, carol);
    expect((await stranger.req('a', { kinds: [4, 1059], '#p': [bob.pubkey] })).events).toEqual([]);
    expect((await stranger.req('b', { kinds: [4], authors: [alice.pubkey] })).events).toEqual([]);
    expect(ids((await stranger.req('c', { '#p': [bob.pubkey] })).events)).toEqual([note.id]);
    expect(ids((await stranger.req('d', { ids: [dm.id, gift.id, note.id] })).events)).toEqual([note.id]);
    expect(await count(stranger, 'e', { kinds: [4, 1059], '#p': [bob.pubkey] })).toEqual(['COUNT', 'e', { count: 0 }]);
    expect(await count(stranger, 'f', { '#p': [bob.pubkey] })).toEqual(['COUNT', 'f', { count: 1 }]);

    const recipient = await reader(relay.url, bob);
    expect(ids((await recipient.req('a', { kinds: [4, 1059], '#p': [bob.pubkey] })).events)).toEqual([dm.id, gift.id].sort());
    expect(ids((await recipient.req('b', { kinds: [4], authors: [alice.pubkey] })).events)).toEqual([dm.id]);
    expect(ids((await recipient.req('c', { '#p': [bob.pubkey] })).events)).toEqual([dm.id, gift.id, note.id].sort());
    expect(await count(recipient, 'd', { kinds: [4, 1059], '#p': [bob.pubkey] })).toEqual(['COUNT', 'd', { count: 2 }]);
    expect(await count(recipient, 'e', { ids: [dm.id, gift.id, note.id] })).toEqual(['COUNT', 'e', { count: 3 }]);

    const author = await reader(relay.url, alice);
    expect(ids((await author.req('a', { kinds: [4], authors: [alice.pubkey] })).events)).toEqual([dm.id]);
    expect(ids((await author.req('b', { kinds: [4, 1059], '#p': [bob.pubkey] })).events)).toEqual([dm.id]);
    expect(ids((await author.req('c', { authors: [alice.pubkey] })).events)).toEqual([dm.id, note.id].sort());
    expect(await count(author, 'd', { kinds: [4, 1059], '#p': [bob.pubkey] })).toEqual(['COUNT', 'd', { count: 1 }]);

    // several pubkeys on one connection: what any of them may read
    const both = await reader(relay.url, carol, bob);
    expect(ids((await both.req('a', { kinds: [4, 1059], '#p': [bob.pubkey] })).events)).toEqual([dm.id, gift.id].sort());
    // limits still hold per filter
    expect((await recipient.req('lim', { '#p': [bob.pubkey], limit: 2 })).events.length).toBe(2);
    for (const c of [stranger, recipient, author, both]) c.close();
  });

  it('live: a subscription never receives a DM or gift wrap its reader could not fetch', async () => {
    const { alice, bob, dm, gift, note } = await conversation();
    const carol = newKey();
    const anon = await reader(relay.url);
    const stranger = await reader(relay.url, carol);
    const recipient = await reader(relay.url, bob);
    const author = await reader(relay.url, alice);
    const subs: [RawClient, string, object][] = [
      [anon, 'any', { since: now() - 60 }],
      [anon, 'tag', { '#p': [bob.pubkey] }],
      [stranger, 'dms', { kinds: [4, 1059], '#p': [bob.pubkey] }],
      [stranger, 'tag', { '#p': [bob.pubkey] }],
      [recipient, 'dms', { kinds: [4, 1059], '#p': [bob.pubkey] }],
      [recipient, 'all', { '#p': [bob.pubkey] }],
      [author, 'mine', { kinds: [4] }],
      [author, 'tag', { '#p': [bob.pubkey] }],
    ];
    for (const [c, id, f] of subs) expect((await c.req(id, f)).end[0]).toBe('EOSE');
    await publish(pub, dm, gift, note);
    // the note reaches every subscription that can match it; by then the private ones have been sent too
    for (const [c, id] of [
      [anon, 'tag'],
      [anon, 'any'],
      [stranger, 'tag'],
      [recipient, 'all'],
      [author, 'tag'],
    ] as const)
      await arrived(c, id, note.id);
    await sleep(100);
    const anonAny = live(anon, 'any');
    expect(anonAny).toContain(note.id);
    expect(anonAny).not.toContain(dm.id);
    expect(anonAny).not.toContain(gift.id);
    expect(live(anon, 'tag')).toEqual([note.id]);
    expect(live(stranger, 'dms')).toEqual([]);
    expect(live(stranger, 'tag')).toEqual([note.id]);
    expect(live(recipient, 'dms')).toEqual([dm.id, gift.id].sort());
    expect(live(recipient, 'all')).toEqual([dm.id, gift.id, note.id].sort());
    expect(live(author, 'mine')).toEqual([dm.id]);
    expect(live(author, 'tag')).toEqual([dm.id, note.id].sort());
    for (const c of [anon, stranger, recipient, author]) c.close();
  });

  it('NIP-47 wallet traffic goes only to filters naming it by authors or #p', async () => {
    const client = newKey();
    const wallet = newKey();
    const request = sign(client.sk, { kind: 23194, tags: [['p', wallet.pubkey]], content: 'encrypted request' });
    const notification = sign(wallet.sk, { kind: 23196, tags: [['p', client.pubkey]], content: 'encrypted notification' });
    const c = await reader(relay.url);
    const subs: [string, object, string[]][] = [
      ['kinds', { kinds: [23194, 23195, 23196, 23197] }, []],
      ['any', { since: now() - 60 }, []],
      ['service', { kinds: [23194], authors: [client.pubkey], '#p': [wallet.pubkey] }, [request.id]],
      ['byP', { kinds: [23194], '#p': [wallet.pubkey] }, [request.id]],
      ['byAuthor', { authors: [client.pubkey] }, [request.id]],
      ['notes', { kinds: [23196, 23197], '#p': [client.pubkey] }, [notification.id]],
      ['otherP', { kinds: [23196], '#p': [newKey().pubkey] }, []],
    ];
    for (const [id, f] of subs) expect((await c.req(id, f)).end[0]).toBe('EOSE');
    const marker = sign(client.sk, { kind: 1, tags: [['p', wallet.pubkey]], content: 'marker' });
    await publish(pub, request, notification, marker);
    await arrived(c, 'any', marker.id);
    await sleep(100);
    for (const [id, , want] of subs) {
      const got = live(c, id).filter((x) => x !== marker.id);
      expect(got, id).toEqual(want.sort());
    }
    c.close();
  });

  it('an EVENT refused with auth-required is followed by a fresh AUTH challenge', async () => {
    const c = await reader(relay.url);
    const k = newKey();
    const protectedEv = sign(k.sk, { tags: [['-']] });
    c.send(['EVENT', protectedEv]);
    const m = await c.ok(protectedEv.id);
    expect(m[3]).toMatch(/^auth-required: /);
    const challenge = (await c.next((x) => x[0] === 'AUTH', 1000))[1] as string;
    const auth = finalizeEvent(makeAuthEvent(relay.url, challenge), k.sk);
    c.send(['AUTH', auth]);
    expect((await c.ok(auth.id))[2]).toBe(true);
    c.send(['EVENT', protectedEv]);
    expect((await c.ok(protectedEv.id))[2]).toBe(true);
    c.close();
  });

  it('NIP-11 describes the read policies; auth_required stays false', async () => {
    const res = await fetch(relay.url.replace('ws://', 'http://'), { headers: { Accept: 'application/nostr+json' } });
    const doc = (await res.json()) as Record<string, any>;
    expect(doc.limitation.auth_required).toBe(false);
    expect(doc.read_policies.private_kinds.kinds).toEqual([4, 1059]);
    expect(doc.read_policies.wallet_traffic.kinds).toEqual([23194, 23195, 23196, 23197]);
    expect(doc.read_policies.members_only).toBeUndefined();
  });

  it('nostr-tools: CLOSED auth-required, then onauth answers the fresh challenge, then DMs stored and live', async () => {
    const { alice, bob, dm } = await conversation();
    await publish(pub, dm);
    const relayClient = await nostrClient(relay.url);
    await sleep(50); // the challenge sent on connect arrives before anyone asked for AUTH
    let asked = 0;
    const signer = async (t: Parameters<typeof finalizeEvent>[0]) => {
      asked++;
      return finalizeEvent(t, bob.sk);
    };
    const closed = await new Promise<string>((resolve) => {
      relayClient.subscribe([{ kinds: [4], '#p': [bob.pubkey] }], {
        onevent: () => resolve('got an event'),
        onclose: (reason) => {
          // answer the challenge that follows the refusal
          relayClient.onauth = signer;
          resolve(reason);
        },
      });
    });
    expect(closed).toMatch(/^auth-required: /);
    for (let i = 0; i < 100 && asked === 0; i++) await sleep(10);
    expect(asked).toBe(1);
    await relayClient.auth(signer); // the AUTH already on its way: resolves on its OK
    const received: string[] = [];
    let eose!: () => void;
    const eosed = new Promise<void>((r) => (eose = r));
    const sub = relayClient.subscribe([{ kinds: [4], '#p': [bob.pubkey] }], { onevent: (e) => received.push(e.id), oneose: () => eose() });
    await eosed;
    expect(received).toEqual([dm.id]);
    const second = sign(alice.sk, { kind: 4, tags: [['p', bob.pubkey]], content: 'again?iv=def' });
    await publish(pub, second);
    for (let i = 0; i < 100 && received.length < 2; i++) await sleep(10);
    expect(received).toEqual([dm.id, second.id]);
    sub.close();
    relayClient.close();
  });
});

// Configuration, not storage: one backend is enough (Postgres when there is one, it starts faster).
describe.each(backends().slice(-1))('read policies when configured on %s', (backend) => {
  it('PRIVATE_KINDS empty serves DMs like any event; AUTH_REQUIRED is advertised and sends AUTH', async () => {
    const open = await startTestRelay(backend, { PRIVATE_KINDS: '', PRIVATE_WALLET_TRAFFIC: 'false' });
    try {
      const c = await reader(open.url);
      const a = newKey();
      const dm = sign(a.sk, { kind: 4, tags: [['p', newKey().pubkey]] });
      await publish(c, dm);
      expect(ids((await c.req('x', { kinds: [4], authors: [a.pubkey] })).events)).toEqual([dm.id]);
      const doc = (await (
        await fetch(open.url.replace('ws://', 'http://'), { headers: { Accept: 'application/nostr+json' } })
      ).json()) as any;
      expect(doc.read_policies).toBeUndefined();
      c.close();
    } finally {
      await open.stop();
    }
    const closed = await startTestRelay(backend, { AUTH_REQUIRED: 'true' });
    try {
      const c = await reader(closed.url);
      const r = await c.req('x', { kinds: [1] });
      expect(r.end[2]).toMatch(/^auth-required: /);
      await c.next((m) => m[0] === 'AUTH', 1000);
      const doc = (await (
        await fetch(closed.url.replace('ws://', 'http://'), { headers: { Accept: 'application/nostr+json' } })
      ).json()) as any;
      expect(doc.limitation.auth_required).toBe(true);
      c.close();
    } finally {
      await closed.stop();
    }
  });
});

describe.runIf(process.env.TEST_DATABASE_URL && process.env.TEST_REDIS_URL)('read policies across replicas (Postgres and Redis)', () => {
  let a: TestRelay;
  let b: TestRelay;
  beforeAll(async () => {
    a = await startTestRelay('postgres', { REDIS_URL: process.env.TEST_REDIS_URL! });
    b = await startTestRelay('postgres', { REDIS_URL: process.env.TEST_REDIS_URL! }, { databaseUrl: a.databaseUrl });
  });
  afterAll(async () => {
    await b?.stop();
    await a?.stop();
  });

  it('a DM stored on one replica reaches only its recipient on the other', async () => {
    const alice = newKey();
    const bob = newKey();
    const anon = await reader(b.url);
    const recipient = await reader(b.url, bob);
    // (no kinds; Redis may carry other tests' events, hence the author)
    expect((await anon.req('any', { authors: [alice.pubkey] })).end[0]).toBe('EOSE');
    expect((await recipient.req('dms', { kinds: [4], '#p': [bob.pubkey] })).end[0]).toBe('EOSE');
    const w = await reader(a.url);
    const dm = sign(alice.sk, { kind: 4, tags: [['p', bob.pubkey]] });
    const note = sign(alice.sk, { kind: 1, content: 'after the dm' });
    await publish(w, dm, note);
    await arrived(recipient, 'dms', dm.id);
    await arrived(anon, 'any', note.id);
    await sleep(100);
    expect(live(anon, 'any')).toEqual([note.id]);
    expect(live(recipient, 'dms')).toEqual([dm.id]);
    for (const c of [anon, recipient, w]) c.close();
  });
});
