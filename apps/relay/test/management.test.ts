import { createHash } from 'node:crypto';
import { request } from 'node:http';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { getToken } from 'nostr-tools/nip98';
import { npubEncode } from 'nostr-tools/nip19';
import { finalizeEvent, type EventTemplate } from 'nostr-tools/pure';
import { listAudit } from '@paidrelay/db';
import { backends, newKey, RawClient, sign, sleep, startTestRelay, type TestRelay } from './harness.ts';

/**
 * NIP-86 management through real HTTP POSTs signed with nostr-tools' NIP-98 helper, on a paid
 * relay (so the allow-list has something to waive), on PGlite and Postgres; then two replicas
 * sharing a database over real Redis.
 */

const now = () => Math.floor(Date.now() / 1000);
const RPC = 'application/nostr+json+rpc';

type Key = ReturnType<typeof newKey>;
type RpcOptions = {
  /** The URL signed in the `u` tag (default: the one posted to). */
  signUrl?: string;
  httpMethod?: string;
  /** The object whose JSON hash goes in the `payload` tag (default: the body's). */
  payload?: Record<string, unknown>;
  /** Changes the event before it is signed (created_at). */
  edit?: (t: EventTemplate) => EventTemplate;
  /** A token made earlier (replay). */
  token?: string;
  /** Replaces the Authorization header (undefined: none at all). */
  authorization?: string | null;
};

function httpUrl(relay: TestRelay): string {
  return `http://127.0.0.1:${relay.port}/`;
}

async function token(url: string, sk: Uint8Array, method: string, params: unknown[], o: RpcOptions = {}): Promise<string> {
  return getToken(
    o.signUrl ?? url,
    o.httpMethod ?? 'post',
    (t) => finalizeEvent(o.edit ? o.edit(t) : t, sk),
    true,
    o.payload ?? { method, params },
  );
}

async function rpc(relay: TestRelay, who: Key, method: string, params: unknown[] = [], o: RpcOptions = {}) {
  const url = httpUrl(relay);
  const body = JSON.stringify({ method, params });
  const auth = o.authorization === null ? undefined : (o.authorization ?? o.token ?? (await token(url, who.sk, method, params, o)));
  const res = await fetch(url, { method: 'POST', headers: { 'Content-Type': RPC, ...(auth ? { Authorization: auth } : {}) }, body });
  return { status: res.status, body: (await res.json()) as { result?: any; error?: string } };
}

async function ok(relay: TestRelay, who: Key, method: string, params: unknown[] = []) {
  const r = await rpc(relay, who, method, params);
  expect(r, `${method} ${JSON.stringify(params)}`).toMatchObject({ status: 200 });
  return r.body.result;
}

async function nip11(relay: TestRelay) {
  const res = await fetch(httpUrl(relay), { headers: { Accept: 'application/nostr+json' } });
  return (await res.json()) as Record<string, any>;
}

async function publish(c: RawClient, ev: ReturnType<typeof sign>) {
  c.send(['EVENT', ev]);
  const m = await c.ok(ev.id);
  return { ok: m[2] as boolean, reason: m[3] as string };
}

describe.each(backends())('NIP-86 management API on %s', (backend) => {
  const admin = newKey();
  const other = newKey(); // not an admin
  const writer = newKey(); // in ALLOWED_PUBKEYS: writes free
  const reporter = newKey();
  let relay: TestRelay;
  let c: RawClient;

  beforeAll(async () => {
    relay = await startTestRelay(backend, {
      ADMIN_PUBKEYS: `${npubEncode(admin.pubkey)}, ${newKey().pubkey}`,
      ALLOWED_PUBKEYS: `${writer.pubkey},${reporter.pubkey}`,
      PRICE_ADMISSION_MSAT: '21000',
      PRICE_EVENT_MSAT: '2000',
    });
    c = await RawClient.open(relay.url);
  });
  afterAll(async () => {
    c?.close();
    await relay?.stop();
  });

  it('supportedmethods lists every method; NIP-11 names NIP-86', async () => {
    const methods = await ok(relay, admin, 'supportedmethods');
    expect(methods).toEqual(
      expect.arrayContaining([
        'banpubkey',
        'unbanpubkey',
        'listbannedpubkeys',
        'allowpubkey',
        'unallowpubkey',
        'listallowedpubkeys',
        'banevent',
        'allowevent',
        'listbannedevents',
        'listeventsneedingmoderation',
        'allowkind',
        'disallowkind',
        'listallowedkinds',
        'blockip',
        'unblockip',
        'listblockedips',
        'changerelayname',
        'changerelaydescription',
        'changerelayicon',
      ]),
    );
    expect(methods).not.toContain('supportedmethods');
    expect((await nip11(relay)).supported_nips).toContain(86);
  });

  it('banpubkey: the next write is refused, stored events are hidden from REQ and COUNT, live ones too; unbanpubkey restores', async () => {
    const before = sign(writer.sk, { content: 'before the ban' });
    expect(await publish(c, before)).toMatchObject({ ok: true });
    const watcher = await RawClient.open(relay.url);
    watcher.send(['REQ', 'live', { kinds: [1], since: now() - 5 }]);
    await watcher.next((m) => m[0] === 'EOSE' && m[1] === 'live');

    expect(await ok(relay, admin, 'banpubkey', [writer.pubkey, 'spam'])).toBe(true);
    expect(await ok(relay, admin, 'listbannedpubkeys')).toEqual([{ pubkey: writer.pubkey, reason: 'spam' }]);
    const refused = await publish(c, sign(writer.sk, { content: 'after the ban' }));
    expect(refused.ok).toBe(false);
    expect(refused.reason).toMatch(/^blocked: /);
    for (const f of [{ ids: [before.id] }, { authors: [writer.pubkey] }, { kinds: [1], since: now() - 60 }]) {
      expect((await c.req('h', f)).events.map((e) => e.id)).not.toContain(before.id);
    }
    c.send(['COUNT', 'n', { ids: [before.id] }]);
    expect((await c.next((m) => m[0] === 'COUNT' && m[1] === 'n'))[2]).toEqual({ count: 0 });

    expect(await ok(relay, admin, 'unbanpubkey', [writer.pubkey])).toBe(true);
    expect(await ok(relay, admin, 'listbannedpubkeys')).toEqual([]);
    expect((await c.req('v', { ids: [before.id] })).events.map((e) => e.id)).toEqual([before.id]);
    const again = sign(writer.sk, { content: 'after the unban' });
    expect(await publish(c, again)).toMatchObject({ ok: true });
    // the live subscription saw neither the refused note nor anything hidden
    await watcher.next((m) => m[0] === 'EVENT' && (m[2] as { id: string }).id === again.id);
    watcher.close();
  });

  it('allowpubkey: writes free on a paid relay (the gate sees the union with ALLOWED_PUBKEYS); unallowpubkey ends it', async () => {
    const fresh = newKey();
    const first = await publish(c, sign(fresh.sk, { content: 'unpaid' }));
    expect(first.ok).toBe(false);
    expect(first.reason).toMatch(/^blocked: payment required/);
    expect(await ok(relay, admin, 'allowpubkey', [fresh.pubkey, 'a friend'])).toBe(true);
    expect(await publish(c, sign(fresh.sk, { content: 'free now' }))).toMatchObject({ ok: true });
    const listed = await ok(relay, admin, 'listallowedpubkeys');
    expect(listed).toEqual(
      expect.arrayContaining([{ pubkey: fresh.pubkey, reason: 'a friend' }, expect.objectContaining({ pubkey: writer.pubkey })]),
    );
    expect(await ok(relay, admin, 'unallowpubkey', [fresh.pubkey])).toBe(true);
    const after = await publish(c, sign(fresh.sk, { content: 'unpaid again' }));
    expect(after.reason).toMatch(/^blocked: payment required/);
  });

  it('banevent hides the event and refuses it again; allowevent lets it back; listbannedevents', async () => {
    const note = sign(writer.sk, { content: 'to be banned' });
    expect(await publish(c, note)).toMatchObject({ ok: true });
    expect(await ok(relay, admin, 'banevent', [note.id, 'illegal'])).toBe(true);
    expect((await c.req('b', { ids: [note.id] })).events).toEqual([]);
    const resent = await publish(c, note);
    expect(resent.ok).toBe(false);
    expect(resent.reason).toMatch(/^blocked: /);
    expect(await ok(relay, admin, 'listbannedevents')).toEqual([{ id: note.id, reason: 'illegal' }]);
    expect(await ok(relay, admin, 'allowevent', [note.id])).toBe(true);
    expect(await ok(relay, admin, 'listbannedevents')).toEqual([]);
    expect(await publish(c, note)).toMatchObject({ ok: true });
    expect((await c.req('b2', { ids: [note.id] })).events.map((e) => e.id)).toEqual([note.id]);
  });

  it('listeventsneedingmoderation: NIP-56 reports, counted with their reasons, until an admin decides', async () => {
    const target = sign(writer.sk, { content: 'reported' });
    expect(await publish(c, target)).toMatchObject({ ok: true });
    const report = (k: Key, type: string) =>
      sign(k.sk, {
        kind: 1984,
        tags: [
          ['e', target.id, type],
          ['p', writer.pubkey, type],
        ],
        content: '',
      });
    expect(await publish(c, report(reporter, 'spam'))).toMatchObject({ ok: true });
    expect(await publish(c, report(writer, 'illegal'))).toMatchObject({ ok: true });
    const listed = (await ok(relay, admin, 'listeventsneedingmoderation')) as {
      id: string;
      reports: number;
      reasons: string[];
      reason: string;
    }[];
    const entry = listed.find((e) => e.id === target.id);
    expect(entry).toMatchObject({ id: target.id, reports: 2 });
    expect(entry!.reasons.sort()).toEqual(['illegal', 'spam']);
    expect(await ok(relay, admin, 'banevent', [target.id, 'reported twice'])).toBe(true);
    expect(((await ok(relay, admin, 'listeventsneedingmoderation')) as { id: string }[]).map((e) => e.id)).not.toContain(target.id);
  });

  it('allowkind / disallowkind / listallowedkinds: with a list, only its kinds are accepted (NIP-11 restricted_writes)', async () => {
    expect(await ok(relay, admin, 'listallowedkinds')).toEqual([]);
    expect(await ok(relay, admin, 'allowkind', [1])).toBe(true);
    expect(await ok(relay, admin, 'allowkind', [30023])).toBe(true);
    expect(await ok(relay, admin, 'listallowedkinds')).toEqual([1, 30023]);
    const reaction = await publish(c, sign(writer.sk, { kind: 7, content: '+' }));
    expect(reaction.ok).toBe(false);
    expect(reaction.reason).toMatch(/^blocked: kind 7/);
    expect(await publish(c, sign(writer.sk, { kind: 1 }))).toMatchObject({ ok: true });
    expect((await nip11(relay)).limitation.restricted_writes).toBe(true);
    expect(await ok(relay, admin, 'disallowkind', [1])).toBe(true);
    expect(await ok(relay, admin, 'disallowkind', [30023])).toBe(true);
    expect(await ok(relay, admin, 'listallowedkinds')).toEqual([]);
    expect(await publish(c, sign(writer.sk, { kind: 7, content: '+' }))).toMatchObject({ ok: true });
  });

  it('blockip refuses new connections and writes from the address; unblockip', async () => {
    const open = await RawClient.open(relay.url);
    expect(await ok(relay, admin, 'blockip', ['127.0.0.1', 'flood'])).toBe(true);
    expect(await ok(relay, admin, 'listblockedips')).toEqual([{ ip: '127.0.0.1', reason: 'flood' }]);
    await expect(RawClient.open(relay.url)).rejects.toThrow(/403/);
    const w = await publish(open, sign(writer.sk, { content: 'from a blocked address' }));
    expect(w.ok).toBe(false);
    expect(w.reason).toMatch(/^blocked: /);
    expect(await ok(relay, admin, 'unblockip', ['127.0.0.1'])).toBe(true);
    expect(await ok(relay, admin, 'listblockedips')).toEqual([]);
    expect(await publish(open, sign(writer.sk, { content: 'unblocked' }))).toMatchObject({ ok: true });
    (await RawClient.open(relay.url)).close();
    open.close();
    // networks and IPv6 spellings are accepted, and a bad address is a 400
    expect(await ok(relay, admin, 'blockip', ['2001:0DB8:0:0::1'])).toBe(true);
    expect(await ok(relay, admin, 'listblockedips')).toEqual([{ ip: '2001:db8::1', reason: '' }]);
    expect(await ok(relay, admin, 'unblockip', ['2001:db8::1'])).toBe(true);
    expect((await rpc(relay, admin, 'blockip', ['not an address'])).status).toBe(400);
  });

  it('changerelayname / changerelaydescription / changerelayicon: NIP-11 follows without a restart', async () => {
    expect(await ok(relay, admin, 'changerelayname', ['Renamed relay'])).toBe(true);
    expect(await ok(relay, admin, 'changerelaydescription', ['Now with moderation'])).toBe(true);
    expect(await ok(relay, admin, 'changerelayicon', ['https://example.com/icon.png'])).toBe(true);
    expect(await nip11(relay)).toMatchObject({
      name: 'Renamed relay',
      description: 'Now with moderation',
      icon: 'https://example.com/icon.png',
    });
    expect((await rpc(relay, admin, 'changerelayicon', ['javascript:alert(1)'])).status).toBe(400);
  });

  it('every change is audited: who, when, method, params', async () => {
    const audit = await listAudit(relay.ctx.db.kysely, 1000);
    const methods = audit.map((a) => a.method);
    for (const m of ['banpubkey', 'unbanpubkey', 'allowpubkey', 'banevent', 'allowevent', 'allowkind', 'blockip', 'changerelayname']) {
      expect(methods).toContain(m);
    }
    expect(methods).not.toContain('listbannedpubkeys');
    const ban = audit.find((a) => a.method === 'banpubkey')!;
    expect(ban).toMatchObject({ pubkey: admin.pubkey, params: [writer.pubkey, 'spam'] });
    expect(Math.abs(ban.at - now())).toBeLessThan(120);
  });

  describe('401 with a JSON error and no effect', () => {
    // A fresh target per test, so one test's legitimate call is not another's "effect".
    let victim = newKey();
    beforeEach(() => {
      victim = newKey();
    });
    const attempt = (o: RpcOptions, who: Key = admin) => rpc(relay, who, 'banpubkey', [victim.pubkey, 'x'], o);
    const expectNoEffect = async (r: { status: number; body: { error?: string; result?: unknown } }) => {
      expect(r.status).toBe(401);
      expect(typeof r.body.error).toBe('string');
      expect(r.body.result ?? null).toBeNull();
      expect(((await ok(relay, admin, 'listbannedpubkeys')) as { pubkey: string }[]).map((e) => e.pubkey)).not.toContain(victim.pubkey);
      expect((await listAudit(relay.ctx.db.kysely, 1000)).some((a) => JSON.stringify(a.params).includes(victim.pubkey))).toBe(false);
    };

    it('no Authorization header', async () => {
      const r = await attempt({ authorization: null });
      expect(r.body.error).toMatch(/Authorization/);
      await expectNoEffect(r);
    });

    it('a bad signature', async () => {
      const t = await token(httpUrl(relay), admin.sk, 'banpubkey', [victim.pubkey, 'x']);
      const ev = JSON.parse(Buffer.from(t.slice('Nostr '.length), 'base64').toString());
      ev.sig = (ev.sig[0] === '0' ? '1' : '0') + ev.sig.slice(1);
      const r = await attempt({ authorization: 'Nostr ' + Buffer.from(JSON.stringify(ev)).toString('base64') });
      expect(r.body.error).toMatch(/signature/);
      await expectNoEffect(r);
    });

    it('a u tag naming another URL', async () => {
      const r = await attempt({ signUrl: `http://127.0.0.1:${relay.port}/other` });
      expect(r.body.error).toMatch(/u tag/);
      await expectNoEffect(r);
      await expectNoEffect(await attempt({ signUrl: `https://127.0.0.1:${relay.port}/` }));
      await expectNoEffect(await attempt({ signUrl: `http://example.com:${relay.port}/` }));
    });

    it('a method tag that is not POST', async () => {
      const r = await attempt({ httpMethod: 'get' });
      expect(r.body.error).toMatch(/method/);
      await expectNoEffect(r);
    });

    it('a payload tag that is not the hash of the body', async () => {
      const r = await attempt({ payload: { method: 'banpubkey', params: [victim.pubkey, 'y'] } });
      expect(r.body.error).toMatch(/payload/);
      await expectNoEffect(r);
    });

    it('a stale (or future) created_at', async () => {
      const r = await attempt({ edit: (t) => ({ ...t, created_at: now() - 120 }) });
      expect(r.body.error).toMatch(/created_at/);
      await expectNoEffect(r);
      await expectNoEffect(await attempt({ edit: (t) => ({ ...t, created_at: now() + 120 }) }));
    });

    it('a replayed authorization', async () => {
      const t = await token(httpUrl(relay), admin.sk, 'banpubkey', [victim.pubkey, 'x']);
      expect((await attempt({ token: t })).status).toBe(200);
      expect(await ok(relay, admin, 'unbanpubkey', [victim.pubkey])).toBe(true);
      const audited = (await listAudit(relay.ctx.db.kysely, 1000)).length;
      const r = await attempt({ token: t });
      expect(r.status).toBe(401);
      expect(r.body.error).toMatch(/already used/);
      expect(((await ok(relay, admin, 'listbannedpubkeys')) as { pubkey: string }[]).map((e) => e.pubkey)).not.toContain(victim.pubkey);
      expect((await listAudit(relay.ctx.db.kysely, 1000)).length).toBe(audited);
      // concurrent uses of one authorization: exactly one goes through
      const t2 = await token(httpUrl(relay), admin.sk, 'listbannedpubkeys', []);
      const statuses = await Promise.all(
        [1, 2, 3].map(() => rpc(relay, admin, 'listbannedpubkeys', [], { token: t2 }).then((x) => x.status)),
      );
      expect(statuses.sort()).toEqual([200, 401, 401]);
    });

    it('a key that is not an admin', async () => {
      const r = await attempt({}, other);
      expect(r.body.error).toMatch(/not an admin/);
      await expectNoEffect(r);
    });
  });

  it('bad requests: a malformed body is a 400, an unknown method a 400, a large body a 413, another content type a 415', async () => {
    const url = httpUrl(relay);
    const raw = '{"method": "banpubkey", "params": [';
    const ev = finalizeEvent(
      {
        kind: 27235,
        created_at: now(),
        content: '',
        tags: [
          ['u', url],
          ['method', 'POST'],
          ['payload', createHash('sha256').update(raw).digest('hex')],
        ],
      },
      admin.sk,
    );
    const res = await fetch(url, {
      method: 'POST',
      headers: { 'Content-Type': RPC, Authorization: 'Nostr ' + Buffer.from(JSON.stringify(ev)).toString('base64') },
      body: raw,
    });
    expect(res.status).toBe(400);
    expect(((await res.json()) as { error: string }).error).toMatch(/JSON/);
    const unknown = await rpc(relay, admin, 'deleteeverything', []);
    expect(unknown.status).toBe(400);
    expect(unknown.body.error).toMatch(/unsupported method/);
    const big = await fetch(url, { method: 'POST', headers: { 'Content-Type': RPC }, body: 'x'.repeat(70 * 1024) });
    expect(big.status).toBe(413);
    // the same without a Content-Length (chunked): the cap holds while reading
    const chunked = await new Promise<number>((resolve, reject) => {
      const r = request(url, { method: 'POST', headers: { 'Content-Type': RPC, 'Transfer-Encoding': 'chunked' } }, (res) => {
        res.resume();
        resolve(res.statusCode ?? 0);
      });
      r.on('error', (err) => (/EPIPE|ECONNRESET/.test(String(err)) ? undefined : reject(err)));
      for (let i = 0; i < 10; i++) r.write('x'.repeat(8 * 1024));
      r.end();
    });
    expect(chunked).toBe(413);
    const plain = await fetch(url, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: '{}' });
    expect(plain.status).toBe(415);
    expect(((await plain.json()) as { error: string }).error).toMatch(/nostr\+json\+rpc/);
  });
});

if (process.env.CI && !process.env.TEST_REDIS_URL) throw new Error('CI must set TEST_REDIS_URL');

describe.skipIf(!process.env.TEST_REDIS_URL).each(backends())('NIP-86 across two replicas over Redis on %s', (backend) => {
  const admin = newKey();
  const writer = newKey();
  let a: TestRelay;
  let b: TestRelay;

  beforeAll(async () => {
    const env = { ADMIN_PUBKEYS: admin.pubkey, REDIS_URL: process.env.TEST_REDIS_URL! };
    a = await startTestRelay(backend, env);
    // Postgres: the same database; PGlite: the same embedded database, handed in.
    b = await startTestRelay(backend, env, backend === 'postgres' ? { databaseUrl: a.databaseUrl } : { db: a.ctx.db });
  });
  afterAll(async () => {
    await b?.stop();
    await a?.stop();
  });

  it('a ban on replica A refuses the next write on replica B within a second; NIP-11 changes show on both', async () => {
    const cb = await RawClient.open(b.url);
    expect(await publish(cb, sign(writer.sk, { content: 'before' }))).toMatchObject({ ok: true });
    expect(await ok(a, admin, 'banpubkey', [writer.pubkey, 'spam'])).toBe(true);
    const banned = Date.now();
    let refused: { ok: boolean; reason: string } | undefined;
    while (Date.now() - banned < 1000) {
      const r = await publish(cb, sign(writer.sk, { content: `try ${Date.now()}` }));
      if (!r.ok) {
        refused = r;
        break;
      }
      await sleep(20);
    }
    expect(refused?.reason).toMatch(/^blocked: /);
    expect((await cb.req('w', { authors: [writer.pubkey] })).events).toEqual([]);

    expect(await ok(b, admin, 'changerelayname', ['Shared name'])).toBe(true);
    const changed = Date.now();
    let names: string[] = [];
    while (Date.now() - changed < 1000) {
      names = [(await nip11(a)).name, (await nip11(b)).name];
      if (names.every((n) => n === 'Shared name')) break;
      await sleep(20);
    }
    expect(names).toEqual(['Shared name', 'Shared name']);
    cb.close();
  });
});
