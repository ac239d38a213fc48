/**
 * End to end: the dev Lightning network's NIP-47 wallet services, our own relay in between,
 * the production NWC backend (connectNwc) on the relay operator's side and a plain
 * @getalby/sdk NWCClient on the payer's side.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { finalizeEvent, generateSecretKey, getPublicKey } from 'nostr-tools/pure';
import {
  connectNwc,
  decodeBolt11,
  NIP47_EVENT_KINDS,
  Nip47WalletError,
  NWCClient,
  type LightningBackend,
  type Payment,
} from '@paidrelay/lightning';
import { DevLightningNetwork } from '@paidrelay/lightning/dev';
import { backends, RawClient, sleep, startTestRelay, type TestRelay } from '../apps/relay/test/harness.ts';

const sha256 = (b: Buffer | string) => createHash('sha256').update(b).digest('hex');

function nwcParts(nwc: string) {
  const u = new URL(nwc.replace('nostr+walletconnect://', 'http://'));
  return {
    walletPubkey: u.host,
    clientPubkey: getPublicKey(Buffer.from(u.searchParams.get('secret')!, 'hex')),
    relay: u.searchParams.get('relay'),
  };
}

async function walletError(p: Promise<unknown>): Promise<Nip47WalletError> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(Nip47WalletError);
  return err as Nip47WalletError;
}

async function waitFor(pred: () => boolean, ms = 5000): Promise<void> {
  const end = Date.now() + ms;
  while (!pred()) {
    if (Date.now() > end) throw new Error('timed out');
    await sleep(20);
  }
}

describe.each(backends())('dev Lightning network over NIP-47 through our relay (%s)', (backend) => {
  let relay: TestRelay;
  let dataDir: string;
  let net: DevLightningNetwork;
  let ln: LightningBackend;
  let payer: NWCClient;
  const received: Payment[] = [];
  let unsubscribe: () => void;

  beforeAll(async () => {
    relay = await startTestRelay(backend);
    dataDir = mkdtempSync(join(tmpdir(), 'paidrelay-ln-e2e-'));
    net = await DevLightningNetwork.start({ relayUrl: relay.url, dataDir });
    ln = await connectNwc(net.relayWalletNwc);
    payer = new NWCClient({ nostrWalletConnectUrl: net.payerWalletNwc });
    unsubscribe = await ln.onPaymentReceived((p) => received.push(p));
  });

  afterAll(async () => {
    unsubscribe?.();
    payer?.close();
    await ln?.close();
    await net?.close();
    await relay?.stop();
    if (dataDir) rmSync(dataDir, { recursive: true, force: true });
  });

  it('connection strings point at our relay; the payer one is in dev-wallet/payer.nwc', () => {
    expect(nwcParts(net.relayWalletNwc).relay).toBe(relay.url);
    expect(nwcParts(net.payerWalletNwc).relay).toBe(relay.url);
    expect(readFileSync(join(dataDir, 'dev-wallet', 'payer.nwc'), 'utf8').trim()).toBe(net.payerWalletNwc);
    expect(ln.kind).toBe('nwc');
  });

  it('pays an invoice: one payment_received, settled lookup with the preimage, exact balances', async () => {
    const zapRequest = JSON.stringify({ kind: 9734, content: 'e2e', tags: [['relays', relay.url]] });
    const inv = await ln.makeInvoice({
      amountMsat: 21_000,
      description: zapRequest,
      descriptionHash: sha256(zapRequest),
      expirySeconds: 600,
    });
    const d = decodeBolt11(inv.bolt11);
    expect(d.network).toBe('regtest');
    expect(inv.bolt11.startsWith('lnbcrt210n1')).toBe(true);
    expect(d.amountMsat).toBe(21_000);
    expect(d.paymentHash).toBe(inv.paymentHash);
    expect(d.descriptionHash).toBe(sha256(zapRequest));
    expect(inv.amountMsat).toBe(21_000);
    expect(inv.expiresAt - inv.createdAt).toBe(600);
    expect(await ln.lookupInvoice(inv.paymentHash)).toEqual({ state: 'pending', amountMsat: 21_000 });

    const balanceBefore = (await payer.getBalance()).balance;
    expect(balanceBefore).toBe(100_000_000);
    const paid = await payer.payInvoice({ invoice: inv.bolt11 });
    expect(sha256(Buffer.from(paid.preimage, 'hex'))).toBe(inv.paymentHash);
    expect(paid.fees_paid).toBe(0);

    await waitFor(() => received.length >= 1);
    await sleep(300); // a second notification would have arrived by now
    expect(received).toEqual([
      { paymentHash: inv.paymentHash, amountMsat: 21_000, preimage: paid.preimage, settledAt: expect.any(Number) },
    ]);

    const look = await ln.lookupInvoice(inv.paymentHash);
    expect(look.state).toBe('settled');
    expect(look.amountMsat).toBe(21_000);
    expect(look.preimage).toBe(paid.preimage);
    expect(sha256(Buffer.from(look.preimage!, 'hex'))).toBe(inv.paymentHash);
    expect(look.settledAt).toBe(received[0]!.settledAt);

    expect((await payer.getBalance()).balance).toBe(balanceBefore - 21_000);
    expect(net.balanceMsat('relay')).toBe(21_000);
  });

  it('refuses to pay an invoice twice, and an expired one', async () => {
    const inv = await ln.makeInvoice({ amountMsat: 1_500, description: 'twice', expirySeconds: 600 });
    await payer.payInvoice({ invoice: inv.bolt11 });
    const before = (await payer.getBalance()).balance;
    const twice = await walletError(payer.payInvoice({ invoice: inv.bolt11 }));
    expect(twice.code).toBe('PAYMENT_FAILED');
    expect(twice.message).toMatch(/already paid/);

    const short = await ln.makeInvoice({ amountMsat: 2_500, expirySeconds: 1 });
    await sleep(short.expiresAt * 1000 - Date.now() + 100);
    const expired = await walletError(payer.payInvoice({ invoice: short.bolt11 }));
    expect(expired.code).toBe('PAYMENT_FAILED');
    expect(expired.message).toMatch(/expired/);
    expect(await ln.lookupInvoice(short.paymentHash)).toEqual({ state: 'expired', amountMsat: 2_500 });

    expect((await payer.getBalance()).balance).toBe(before);
    await waitFor(() => received.length >= 2);
    await sleep(300);
    expect(received.map((p) => p.amountMsat)).toEqual([21_000, 1_500]);
  });

  it('the relay keeps the info events (replaceable) and none of the ephemeral NIP-47 traffic', async () => {
    const c = await RawClient.open(relay.url);
    try {
      const walletPubkeys = [nwcParts(net.relayWalletNwc).walletPubkey, nwcParts(net.payerWalletNwc).walletPubkey];
      const info = await c.req('info', { kinds: [13194], authors: walletPubkeys });
      expect(info.end[0]).toBe('EOSE');
      expect(info.events.map((e) => e.pubkey).sort()).toEqual([...walletPubkeys].sort());
      const relayInfo = info.events.find((e) => e.pubkey === walletPubkeys[0])!;
      expect(relayInfo.content).toBe('get_info get_balance make_invoice lookup_invoice list_transactions notifications');
      expect(relayInfo.tags).toEqual([
        ['encryption', 'nip44_v2 nip04'],
        ['notifications', 'payment_received'],
      ]);
      const traffic = await c.req('traffic', { kinds: [23194, 23195, 23196, 23197] });
      expect(traffic.end[0]).toBe('EOSE');
      expect(traffic.events).toEqual([]);
    } finally {
      c.close();
    }
  });

  it('sends payment_received in both encodings (kinds 23196 and 23197) to the wallet client', async () => {
    const { walletPubkey, clientPubkey } = nwcParts(net.relayWalletNwc);
    const c = await RawClient.open(relay.url);
    try {
      const sub = await c.req('n', { kinds: [23196, 23197], authors: [walletPubkey], '#p': [clientPubkey] });
      expect(sub.end[0]).toBe('EOSE');
      const inv = await ln.makeInvoice({ amountMsat: 999, expirySeconds: 600 });
      await payer.payInvoice({ invoice: inv.bolt11 });
      const a = await c.next((m) => m[0] === 'EVENT' && m[1] === 'n');
      const b = await c.next((m) => m[0] === 'EVENT' && m[1] === 'n');
      expect([(a[2] as { kind: number }).kind, (b[2] as { kind: number }).kind].sort()).toEqual([23196, 23197]);
    } finally {
      c.close();
    }
  });

  it('keeps up with many invoices paid at once: each notified exactly once, balances exact', async () => {
    const n = 16;
    const start = received.length;
    const payerBefore = (await payer.getBalance()).balance;
    const relayBefore = net.balanceMsat('relay');
    const amounts = Array.from({ length: n }, (_, i) => 1_000 + i);
    const invoices = await Promise.all(amounts.map((a) => ln.makeInvoice({ amountMsat: a, description: `bulk ${a}`, expirySeconds: 600 })));
    expect(new Set(invoices.map((i) => i.paymentHash)).size).toBe(n);
    const paid = await Promise.all(invoices.map((i) => payer.payInvoice({ invoice: i.bolt11 })));
    paid.forEach((p, k) => expect(sha256(Buffer.from(p.preimage, 'hex'))).toBe(invoices[k]!.paymentHash));
    await waitFor(() => received.length >= start + n, 20_000);
    await sleep(300);
    const got = received.slice(start);
    expect(got).toHaveLength(n);
    expect(got.map((p) => p.paymentHash).sort()).toEqual(invoices.map((i) => i.paymentHash).sort());
    const total = amounts.reduce((a, b) => a + b, 0);
    expect((await payer.getBalance()).balance).toBe(payerBefore - total);
    expect(net.balanceMsat('relay')).toBe(relayBefore + total);
    const states = await Promise.all(invoices.map((i) => ln.lookupInvoice(i.paymentHash)));
    expect(states.map((s) => s.state)).toEqual(Array(n).fill('settled'));
  }, 90_000);

  it('after a restart on the same dataDir: same connection strings, lookups still settled, payments go on', async () => {
    const inv = await ln.makeInvoice({ amountMsat: 4_200, description: 'before the restart', expirySeconds: 600 });
    const paid = await payer.payInvoice({ invoice: inv.bolt11 });
    const pending = await ln.makeInvoice({ amountMsat: 800, expirySeconds: 600 });
    const payerBalance = (await payer.getBalance()).balance;
    const strings = { relay: net.relayWalletNwc, payer: net.payerWalletNwc };

    unsubscribe();
    payer.close();
    await ln.close();
    await net.close();

    net = await DevLightningNetwork.start({ relayUrl: relay.url, dataDir });
    expect(net.relayWalletNwc).toBe(strings.relay);
    expect(net.payerWalletNwc).toBe(strings.payer);
    ln = await connectNwc(strings.relay);
    payer = new NWCClient({ nostrWalletConnectUrl: strings.payer });
    expect(await ln.lookupInvoice(inv.paymentHash)).toEqual({
      state: 'settled',
      amountMsat: 4_200,
      preimage: paid.preimage,
      settledAt: expect.any(Number),
    });
    expect((await payer.getBalance()).balance).toBe(payerBalance);
    expect((await walletError(payer.payInvoice({ invoice: inv.bolt11 }))).code).toBe('PAYMENT_FAILED');

    const after: Payment[] = [];
    unsubscribe = await ln.onPaymentReceived((p) => after.push(p));
    await payer.payInvoice({ invoice: pending.bolt11 });
    await waitFor(() => after.length >= 1);
    expect(after[0]).toMatchObject({ paymentHash: pending.paymentHash, amountMsat: 800 });
    expect((await payer.getBalance()).balance).toBe(payerBalance - 800);

    // One info event per wallet: the restart replaced them.
    const c = await RawClient.open(relay.url);
    try {
      const info = await c.req('info2', { kinds: [13194], authors: [nwcParts(strings.relay).walletPubkey] });
      expect(info.events).toHaveLength(1);
    } finally {
      c.close();
    }
  });
});

describe("on a paid relay (admission price) that lets its own wallets' NIP-47 traffic through", () => {
  let relay: TestRelay;
  let dataDir: string;
  let net: DevLightningNetwork | undefined;
  let ln: LightningBackend | undefined;
  let payer: NWCClient | undefined;

  beforeAll(async () => {
    dataDir = mkdtempSync(join(tmpdir(), 'paidrelay-ln-e2e-'));
    const walletPubkeys = await DevLightningNetwork.walletPubkeys(dataDir);
    relay = await startTestRelay('pglite', { PRICE_ADMISSION_MSAT: '1000', WALLET_PUBKEYS: walletPubkeys.join(',') });
  });
  afterAll(async () => {
    payer?.close();
    await ln?.close();
    await net?.close();
    await relay?.stop();
    if (dataDir) rmSync(dataDir, { recursive: true, force: true });
  });

  it('carries the wallet traffic, while an ordinary note from the same key is refused', async () => {
    net = await DevLightningNetwork.start({ relayUrl: relay.url, dataDir });
    ln = await connectNwc(net.relayWalletNwc);
    payer = new NWCClient({ nostrWalletConnectUrl: net.payerWalletNwc });
    const got: Payment[] = [];
    await ln.onPaymentReceived((p) => got.push(p));
    const inv = await ln.makeInvoice({ amountMsat: 1_000, description: 'admission', expirySeconds: 600 });
    const paid = await payer.payInvoice({ invoice: inv.bolt11 });
    await waitFor(() => got.length === 1);
    expect(got[0]).toMatchObject({ paymentHash: inv.paymentHash, amountMsat: 1_000, preimage: paid.preimage });
    expect(await ln.lookupInvoice(inv.paymentHash)).toMatchObject({ state: 'settled', preimage: paid.preimage });

    const c = await RawClient.open(relay.url);
    try {
      const note = finalizeEvent({ kind: 1, created_at: Math.floor(Date.now() / 1000), tags: [], content: 'hi' }, generateSecretKey());
      c.send(['EVENT', note]);
      const ok = await c.ok(note.id);
      expect(ok[2]).toBe(false);
      expect(String(ok[3])).toMatch(/^blocked: payment required: 1 sat for admission: /);
      // The same kinds from any other key pay like every other write: no free storage or broadcast.
      const sk = generateSecretKey();
      for (const kind of NIP47_EVENT_KINDS) {
        const ev = finalizeEvent(
          { kind, created_at: Math.floor(Date.now() / 1000), tags: [['p', getPublicKey(sk)]], content: 'x'.repeat(1000) },
          sk,
        );
        c.send(['EVENT', ev]);
        const r = await c.ok(ev.id);
        expect(r[2]).toBe(false);
        expect(String(r[3])).toMatch(/^blocked: payment required:/);
      }
    } finally {
      c.close();
    }
  });
});
