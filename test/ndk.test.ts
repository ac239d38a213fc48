import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import NDK, {
  NDKEvent,
  NDKPrivateKeySigner,
  NDKPublishError,
  NDKRelayAuthPolicies,
  NDKZapper,
  zapInvoiceFromEvent,
  type NDKFilter,
  type NDKRelay,
  type NDKSubscription,
} from '@nostr-dev-kit/ndk';
import { generateSecretKey, getPublicKey } from 'nostr-tools/pure';
import { configSchema } from '@paidrelay/config';
import { NWCClient } from '@paidrelay/lightning';
import { startStack, type TestStack } from './stack.ts';
import { until } from '../apps/relay/test/harness.ts';

/**
 * Client compatibility: NDK (@nostr-dev-kit/ndk) as the Nostr client of the whole product, as
 * `pnpm start` runs it (relay, admission service, dev Lightning network, PGlite) with the
 * default prices. Real WebSockets and real NWC payments over the relay; nothing mocked.
 *
 * NDK must never look outside (this machine, like CI, may have no internet): the outbox model
 * and user relays are off, a connection filter admits only the test relay, and every WebSocket
 * and fetch of this process is checked to go to loopback.
 */

const isLoopback = (url: string) => ['127.0.0.1', 'localhost', '[::1]'].includes(new URL(url).hostname);
const dialled: string[] = [];
const fetched: string[] = [];
const refusedRelays: string[] = [];

class LoopbackOnlyWebSocket extends WebSocket {
  constructor(url: string | URL, protocols?: string | string[], opts?: WebSocket.ClientOptions) {
    dialled.push(String(url));
    if (!isLoopback(String(url))) throw new Error(`test: refusing to dial ${String(url)}`);
    super(url, protocols, opts);
  }
}

const realFetch = globalThis.fetch;
const loopbackOnlyFetch: typeof fetch = (input, init) => {
  const url = typeof input === 'string' ? input : input instanceof URL ? input.href : input.url;
  fetched.push(url);
  if (!isLoopback(url)) return Promise.reject(new Error(`test: refusing to fetch ${url}`));
  return realFetch(input, init);
};

const hex = (b: Uint8Array) => Buffer.from(b).toString('hex');
const newKey = () => {
  const sk = generateSecretKey();
  return { sk, pubkey: getPublicKey(sk) };
};

/** The last whitespace-separated token of a refusal, an http(s) URL. */
function payUrlOf(reason: string): URL {
  const url = new URL(reason.trim().split(/\s+/).pop()!);
  expect(url.protocol).toMatch(/^https?:$/);
  return url;
}

describe('NDK against the whole product with the default prices', () => {
  const defaults = configSchema.parse({});
  let t: TestStack;
  let payer: NWCClient;
  let relayUrl: string; // ws://127.0.0.1:<port>/ as NDK writes it; the relay calls itself ws://localhost:<port>
  const ndks: NDK[] = [];

  /** An NDK that talks to the test relay only, signed in with NDK's signIn policy when it has a key. */
  function makeNdk(sk?: Uint8Array): { ndk: NDK; relay: NDKRelay } {
    const ndk = new NDK({
      explicitRelayUrls: [relayUrl],
      enableOutboxModel: false,
      autoConnectUserRelays: false,
      signer: sk ? new NDKPrivateKeySigner(hex(sk)) : undefined,
      relayConnectionFilter: (url) => {
        if (url !== relayUrl) refusedRelays.push(url);
        return url === relayUrl;
      },
    });
    if (sk) ndk.relayAuthDefaultPolicy = NDKRelayAuthPolicies.signIn({ ndk });
    ndks.push(ndk);
    const relay = ndk.pool.getRelay(relayUrl, false);
    return { ndk, relay };
  }

  /** Connects; with a key, resolves once the relay answered NDK's AUTH with OK true. */
  async function connect(sk?: Uint8Array) {
    const c = makeNdk(sk);
    const authed = sk
      ? new Promise<void>((resolve, reject) => {
          const timer = setTimeout(() => reject(new Error('NDK did not sign in')), 5000);
          c.relay.once('authed', () => {
            clearTimeout(timer);
            resolve();
          });
        })
      : Promise.resolve();
    await c.ndk.connect(3000);
    expect(c.relay.connected).toBe(true);
    await authed;
    return c;
  }

  const api = async (path: string, body?: unknown) => {
    const res = await fetch(
      t.apiBase + path,
      body === undefined ? {} : { method: 'POST', body: JSON.stringify(body), headers: { 'Content-Type': 'application/json' } },
    );
    return { status: res.status, body: (await res.json()) as Record<string, any> };
  };

  /** A live NDK subscription (closeOnEose false), once the relay has sent EOSE: the rest comes live. */
  async function subscribeLive(ndk: NDK, filter: NDKFilter) {
    const live: NDKEvent[] = [];
    let sub!: NDKSubscription;
    await new Promise<void>((resolve) => {
      sub = ndk.subscribe(filter, { closeOnEose: false, groupable: false }, { onEvent: (e) => void live.push(e), onEose: () => resolve() });
    });
    return { live, sub };
  }

  /** Publishes with NDK; the error NDK rejects with, or undefined when the relay said OK true. */
  const publish = (ev: NDKEvent) =>
    ev.publish().then(
      () => undefined,
      (e: unknown) => e as NDKPublishError,
    );

  beforeAll(async () => {
    (globalThis as { WebSocket?: unknown }).WebSocket = LoopbackOnlyWebSocket;
    globalThis.fetch = loopbackOnlyFetch;
    expect(defaults.PRICE_ADMISSION_MSAT).toBe(21000);
    expect(defaults.PRICE_EVENT_MSAT).toBe(2000);
    t = await startStack({
      PRICE_ADMISSION_MSAT: String(defaults.PRICE_ADMISSION_MSAT),
      PRICE_EVENT_MSAT: String(defaults.PRICE_EVENT_MSAT),
    });
    relayUrl = `ws://127.0.0.1:${new URL(t.relayUrl).port}/`;
    expect(t.relayUrl).toBe(`ws://localhost:${new URL(t.relayUrl).port}`);
    payer = new NWCClient({ nostrWalletConnectUrl: t.payerNwc });
  });

  afterAll(async () => {
    for (const ndk of ndks) for (const r of ndk.pool.relays.values()) r.disconnect();
    payer?.close();
    await t?.stop();
    globalThis.fetch = realFetch;
  });

  const alice = newKey();
  let aliceNdk: NDK;
  let reader: NDK;
  let refused: NDKEvent;

  it('reads NIP-11 through NDK: the default fees, the pay page, no software field', async () => {
    const { relay } = makeNdk();
    const info = (await relay.fetchInfo(true)) as Record<string, any>;
    expect(info.fees.admission).toEqual([{ amount: 21000, unit: 'msats' }]);
    expect(info.payments_url).toBe(t.paymentsUrl);
    expect(info.limitation.payment_required).toBe(true);
    expect(info).not.toHaveProperty('software');
  });

  it("signs in with NDK's signIn policy over ws://127.0.0.1 (its relay tag is the URL it dialled)", async () => {
    ({ ndk: aliceNdk } = await connect(alice.sk));
    ({ ndk: reader } = await connect());
    // A protected event (NIP-70) passes the auth check only for an authenticated author: it
    // gets as far as the payment gate.
    const p = new NDKEvent(aliceNdk, { kind: 1, content: 'protected', tags: [['-']] });
    const err = await publish(p);
    expect(err).toBeInstanceOf(NDKPublishError);
    expect([...err!.errors.values()][0].message).toMatch(/^blocked: payment required: /);
  });

  it("a refused publish rejects with NDKPublishError; the relay's reason and pay URL are in err.errors, not err.message", async () => {
    refused = new NDKEvent(aliceNdk, { kind: 1, content: 'hello from NDK, before paying' });
    const err = await publish(refused);
    expect(err).toBeInstanceOf(NDKPublishError);
    expect(err!.message).toBe('Not enough relays received the event (0 published, 1 required)');
    expect(refused.publishStatus).toBe('error');
    const errors = [...err!.errors.entries()];
    expect(errors.map(([r]) => r.url)).toEqual([relayUrl]);
    const reason = errors[0][1].message;
    expect(reason).toMatch(/^blocked: payment required: 21 sats for admission or 2 sats for this event: /);
    expect(err!.relayErrors).toContain(reason);
    const url = payUrlOf(reason);
    expect(url.origin).toBe(new URL(t.paymentsUrl).origin);
    expect(url.href).toContain(refused.id);
  });

  it("the held event's own invoice (2 sats) paid over NWC publishes it: a live NDK subscription gets it, fetchEvent finds it", async () => {
    const { live, sub } = await subscribeLive(reader, { kinds: [1], authors: [alice.pubkey] });
    const inv = await api('/api/invoices', { pubkey: alice.pubkey, product: 'event', event_id: refused.id });
    expect(inv.status).toBe(201);
    expect(inv.body.amount_msat).toBe(2000);
    await payer.payInvoice({ invoice: inv.body.bolt11 });
    await until(async () => live.some((e) => e.id === refused.id));
    const fetched = await reader.fetchEvent(refused.id);
    expect(fetched?.rawEvent()).toMatchObject({ id: refused.id, sig: refused.sig, content: refused.content });
    // paying for one event admits nobody
    expect((await api(`/api/accounts/${alice.pubkey}`)).body.admitted).toBe(false);
    sub.stop();
  });

  it('admission (21 sats) paid over NWC: the next NDK publish succeeds, live and fetched', async () => {
    const inv = await api('/api/invoices', { pubkey: alice.pubkey, product: 'admission' });
    expect(inv.body.amount_msat).toBe(21000);
    await payer.payInvoice({ invoice: inv.body.bolt11 });
    await until(async () => (await api(`/api/accounts/${alice.pubkey}`)).body.admitted === true);
    const { live, sub } = await subscribeLive(reader, { kinds: [1], authors: [alice.pubkey], since: Math.floor(Date.now() / 1000) - 5 });
    // the relay hears of the payment within a second
    const ok = await until(async () => {
      const ev = new NDKEvent(aliceNdk, { kind: 1, content: 'admitted, from NDK ' + Math.random() });
      const relays = await ev.publish().catch(() => undefined);
      return relays && relays.size === 1 && ev;
    }, 3000);
    expect(ok.publishStatus).toBe('success');
    await until(async () => live.some((e) => e.id === ok.id));
    const got = await reader.fetchEvents({ ids: [ok.id] });
    expect([...got].map((e) => e.id)).toEqual([ok.id]);
    sub.stop();
  });

  it("NDKZapper zaps the relay's own pubkey (lud06 from its kind 0, paid by lnPay over NWC): the zapper is admitted, the receipt is on the relay", async () => {
    const zed = newKey();
    const { ndk } = await connect(zed.sk);
    const relayPubkey = t.stack.relay.ctx.key.pubkey;
    const target = ndk.getUser({ pubkey: relayPubkey });
    const profile = await target.fetchProfile();
    expect(profile?.lud06).toMatch(/^LNURL1/);
    expect(profile?.lud16).toBeUndefined(); // http payments URL: lud06 only
    const invoices: string[] = [];
    const zapper = new NDKZapper(target, 21000, 'msat', {
      comment: 'for the relay, from NDK',
      lnPay: async ({ pr }) => {
        invoices.push(pr);
        const paid = await payer.payInvoice({ invoice: pr });
        return { preimage: paid.preimage };
      },
    });
    const results = await zapper.zap(['nip57']);
    const [confirmation] = [...results.values()];
    expect(confirmation).toMatchObject({ preimage: expect.stringMatching(/^[0-9a-f]{64}$/) });
    expect(invoices).toHaveLength(1);

    await until(async () => (await api(`/api/accounts/${zed.pubkey}`)).body.admitted === true);
    const receipt = await until(async () => {
      const evs = await reader.fetchEvents({ kinds: [9735], '#p': [relayPubkey] });
      return [...evs].find((e) => e.tagValue('bolt11') === invoices[0]);
    });
    expect(receipt.pubkey).toBe(relayPubkey);
    expect(zapInvoiceFromEvent(receipt)).toMatchObject({
      zappee: zed.pubkey,
      zapped: relayPubkey,
      amount: 21000,
      comment: 'for the relay, from NDK',
    });
    const request = JSON.parse(receipt.tagValue('description')!) as { pubkey: string; tags: string[][] };
    expect(request.pubkey).toBe(zed.pubkey);
    expect(request.tags).toContainEqual(['relays', relayUrl]);

    // admitted by the zap: NDK publishes
    const note = await until(async () => {
      const ev = new NDKEvent(ndk, { kind: 1, content: 'zapped my way in ' + Math.random() });
      return (await ev.publish().catch(() => undefined)) && ev;
    }, 3000);
    expect(note.publishStatus).toBe('success');
  });

  it('NDK dialled and fetched nothing but the test stack', () => {
    expect(refusedRelays).toEqual([]);
    expect(dialled.length).toBeGreaterThan(0);
    expect(dialled.filter((u) => !isLoopback(u))).toEqual([]);
    expect(fetched.filter((u) => !isLoopback(u))).toEqual([]);
  });
});
