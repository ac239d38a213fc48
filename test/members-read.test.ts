import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { finalizeEvent } from 'nostr-tools/pure';
import { makeAuthEvent } from 'nostr-tools/nip42';
import { NWCClient } from '@paidrelay/lightning';
import { settle } from '../apps/admission/src/settle.ts';
import { newKey, nostrClient, RawClient, sign, sleep, until } from '../apps/relay/test/harness.ts';
import { startStack, type TestStack } from './stack.ts';

type Key = ReturnType<typeof newKey>;

const ENV = {
  PRICE_ADMISSION_MSAT: '21000',
  PRICE_SUBSCRIPTION_MSAT: '1000',
  SUBSCRIPTION_PERIOD_SECONDS: '3',
  READ_ACCESS: 'members',
  RECONCILE_INTERVAL_SECONDS: '3600',
};

async function reader(url: string, ...keys: Key[]): Promise<RawClient> {
  const c = await RawClient.open(url);
  const challenge = (await c.next((m) => m[0] === 'AUTH'))[1] as string;
  for (const k of keys) {
    const auth = finalizeEvent(makeAuthEvent(url, challenge), k.sk);
    c.send(['AUTH', auth]);
    expect((await c.ok(auth.id))[2]).toBe(true);
  }
  return c;
}

const ids = (events: Record<string, unknown>[]) => events.map((e) => e.id as string).sort();

async function count(c: RawClient, id: string, ...filters: object[]): Promise<unknown[]> {
  c.send(['COUNT', id, ...filters]);
  return c.next((m) => (m[0] === 'COUNT' || m[0] === 'CLOSED') && m[1] === id);
}

describe.each(process.env.TEST_DATABASE_URL ? (['pglite', 'postgres'] as const) : (['pglite'] as const))(
  'members-only reads on %s',
  (backend) => {
    let t: TestStack;
    let w: RawClient;
    const writer = newKey();
    const notes: ReturnType<typeof sign>[] = [];
    beforeAll(async () => {
      // the writer is allow-listed: a member without paying
      t = await startStack({ ...ENV, ALLOWED_PUBKEYS: writer.pubkey }, { backend });
      w = await RawClient.open(t.relayUrl);
      for (let i = 0; i < 2; i++) notes.push(await post(sign(writer.sk, { content: `members only ${i}` })));
    });
    afterAll(async () => {
      w?.close();
      await t?.stop();
    });

    async function post(ev: ReturnType<typeof sign>) {
      w.send(['EVENT', ev]);
      expect((await w.ok(ev.id))[2]).toBe(true);
      return ev;
    }

    /** Buys `product` for the key and settles it as the wallet's notification would. */
    async function grant(k: Key, product: 'admission' | 'subscription') {
      const res = await fetch(t.apiBase + '/api/invoices', {
        method: 'POST',
        body: JSON.stringify({ pubkey: k.pubkey, product }),
        headers: { 'Content-Type': 'application/json' },
      });
      const inv = (await res.json()) as { payment_hash: string; amount_msat: number };
      expect(await settle(t.stack.admission.ctx, inv.payment_hash, inv.amount_msat)).toBe(true);
    }

    it('NIP-11 says reads are for members, with the pay page', async () => {
      const doc = (await (await fetch(t.relayUrl.replace('ws', 'http'), { headers: { Accept: 'application/nostr+json' } })).json()) as any;
      expect(doc.read_policies.members_only).toMatchObject({ kinds: 'all', read_own_always: true, payments_url: t.paymentsUrl });
      expect(doc.read_policies.members_only.except_kinds).toEqual([13194, 23194, 23195, 23196, 23197]);
      // wallet traffic and a reader's own events need no membership: not every read needs AUTH
      expect(doc.limitation.auth_required).toBe(false);
    });

    it('a stranger is asked to authenticate; a never-paid key is told where to pay, yet reads what is its own', async () => {
      const anon = await reader(t.relayUrl);
      for (const f of [{ kinds: [1] }, { ids: [notes[0].id] }, { authors: [writer.pubkey] }]) {
        const r = await anon.req('x', f);
        expect(r.end[0]).toBe('CLOSED');
        expect(r.end[2]).toMatch(/^auth-required: /);
        expect(r.events).toEqual([]);
        await anon.next((m) => m[0] === 'AUTH', 1000);
      }
      expect((await count(anon, 'c', { kinds: [1] }))[2]).toMatch(/^auth-required: /);
      // NIP-47 traffic stays readable by the parties (wallets work over a members-only relay)
      expect((await anon.req('nwc', { kinds: [23196, 23197], '#p': [newKey().pubkey] })).end[0]).toBe('EOSE');

      const unpaid = newKey();
      const tagged = await post(sign(writer.sk, { content: 'for you', tags: [['p', unpaid.pubkey]] }));
      const c = await reader(t.relayUrl, unpaid);
      const r = await c.req('feed', { kinds: [1], authors: [writer.pubkey] });
      expect(r.end[0]).toBe('CLOSED');
      const why = r.end[2] as string;
      expect(why).toMatch(/^restricted: reading requires membership: /);
      const url = new URL(why.slice(why.indexOf('http')));
      expect(url.origin + url.pathname).toBe(t.paymentsUrl);
      expect(url.searchParams.get('pubkey')).toBe(unpaid.pubkey);
      expect((await count(c, 'c', { kinds: [1] }))[2]).toMatch(/^restricted: /);
      // READ_OWN_ALWAYS: what is p-tagged to it, and its own
      expect(ids((await c.req('mine', { '#p': [unpaid.pubkey] })).events)).toEqual([tagged.id]);
      expect((await c.req('own', { authors: [unpaid.pubkey] })).end[0]).toBe('EOSE');
      anon.close();
      c.close();
    });

    it('an admitted key (paid with the payer wallet over this relay) reads stored and live, and COUNTs', async () => {
      const k = newKey();
      const payer = new NWCClient({ nostrWalletConnectUrl: t.payerNwc });
      try {
        const res = await fetch(t.apiBase + '/api/invoices', {
          method: 'POST',
          body: JSON.stringify({ pubkey: k.pubkey, product: 'admission' }),
          headers: { 'Content-Type': 'application/json' },
        });
        const inv = (await res.json()) as { bolt11: string };
        await payer.payInvoice({ invoice: inv.bolt11 });
      } finally {
        payer.close();
      }
      // nostr-tools, answering the challenge as it arrives
      const client = await nostrClient(t.relayUrl);
      let asked = 0;
      const signer = async (tpl: Parameters<typeof finalizeEvent>[0]) => {
        asked++;
        return finalizeEvent(tpl, k.sk);
      };
      client.onauth = signer;
      const c = await reader(t.relayUrl, k);
      const stored = await until(async () => {
        const r = await c.req('feed', { kinds: [1], authors: [writer.pubkey] });
        return r.end[0] === 'EOSE' ? r.events : undefined;
      });
      expect(ids(stored)).toEqual(expect.arrayContaining(notes.map((n) => n.id)));
      expect((await count(c, 'c', { ids: notes.map((n) => n.id) }))[2]).toEqual({ count: 2 });
      const got: string[] = [];
      // as a client does: refused with auth-required, it waits for its AUTH to be accepted and asks again
      for (let attempt = 0; ; attempt++) {
        const closed = await new Promise<string | undefined>((resolve) => {
          client.subscribe([{ kinds: [1], authors: [writer.pubkey], limit: 1 }], {
            onevent: (e) => got.push(e.id),
            oneose: () => resolve(undefined),
            onclose: (reason) => resolve(reason),
          });
        });
        if (closed === undefined) break;
        expect(closed).toMatch(/^auth-required: /);
        expect(attempt).toBe(0);
        await until(async () => asked > 0);
        await client.auth(signer); // the AUTH already sent: resolves on its OK
      }
      expect(got.length).toBe(1);
      const fresh = await post(sign(writer.sk, { content: 'live for members' }));
      await until(async () => got.includes(fresh.id));
      client.close();
      c.close();
    });

    it('a subscription that ends: live delivery stops at once, the next REQ is refused', async () => {
      const k = newKey();
      const c = await reader(t.relayUrl, k);
      await grant(k, 'subscription');
      await until(async () => (await c.req('probe', { ids: [notes[0].id] })).end[0] === 'EOSE');
      const started = Date.now();
      expect((await c.req('feed', { kinds: [1], authors: [writer.pubkey], limit: 0 })).end[0]).toBe('EOSE');
      const during = await post(sign(writer.sk, { content: 'while subscribed' }));
      await c.next((m) => m[0] === 'EVENT' && m[1] === 'feed' && (m[2] as { id: string }).id === during.id);
      expect(Date.now() - started).toBeLessThan(2000);
      // SUBSCRIPTION_PERIOD_SECONDS=3: wait until it has ended (second resolution)
      const account = (await (await fetch(`${t.apiBase}/api/accounts/${k.pubkey}`)).json()) as { admitted_until: number };
      await sleep(Math.max(0, (account.admitted_until + 1) * 1000 - Date.now()));
      const after = await post(sign(writer.sk, { content: 'after it ended' }));
      // READ_OWN_ALWAYS still lets through what is p-tagged to the reader; it comes after `after`
      const marker = await post(sign(writer.sk, { content: 'to you', tags: [['p', k.pubkey]] }));
      await c.next((m) => m[0] === 'EVENT' && m[1] === 'feed' && (m[2] as { id: string }).id === marker.id);
      expect(c.messages.filter((m) => m[0] === 'EVENT' && (m[2] as { id: string }).id === after.id)).toEqual([]);
      const r = await c.req('again', { kinds: [1], authors: [writer.pubkey] });
      expect(r.end[0]).toBe('CLOSED');
      expect(r.end[2]).toMatch(/^restricted: reading requires membership: /);
      c.close();
    });
  },
);
