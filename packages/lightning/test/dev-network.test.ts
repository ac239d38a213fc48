import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import '../src/websocket.ts';
import { NWCClient, NWCWalletService, NWCWalletServiceKeyPair, Nip47WalletError } from '@getalby/sdk/nwc';
import { generateSecretKey, getPublicKey } from 'nostr-tools/pure';
import { connectNwc, decodeBolt11, LightningError, type LightningBackend, type Payment } from '../src/index.ts';
import { DevLightningNetwork } from '../src/dev/index.ts';
import { startMiniRelay, type MiniRelay } from './mini-relay.ts';

const sha = (b: Buffer | string) => createHash('sha256').update(b).digest('hex');
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
async function until<T>(f: () => T | undefined, ms = 5000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = f();
    if (v !== undefined && v !== false) return v;
    if (Date.now() > end) throw new Error('timed out');
    await sleep(20);
  }
}
async function walletError(p: Promise<unknown>): Promise<{ code: string; message: string }> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(Nip47WalletError);
  return err as Nip47WalletError;
}

describe('dev Lightning network over NIP-47 (in-memory test relay)', () => {
  let relay: MiniRelay;
  let dataDir: string;
  let net: DevLightningNetwork;
  let backend: LightningBackend;
  let payer: NWCClient;

  beforeAll(async () => {
    relay = await startMiniRelay();
    dataDir = mkdtempSync(join(tmpdir(), 'ln-dev-'));
    net = await DevLightningNetwork.start({ relayUrl: relay.url, dataDir });
    backend = await connectNwc(net.relayWalletNwc);
    payer = new NWCClient({ nostrWalletConnectUrl: net.payerWalletNwc });
  });
  afterAll(async () => {
    payer?.close();
    await backend?.close();
    await net?.close();
    await relay?.close();
    rmSync(dataDir, { recursive: true, force: true });
  });

  it('hands out connection strings and writes the payer one to dev-wallet/payer.nwc', () => {
    const re = /^nostr\+walletconnect:\/\/[0-9a-f]{64}\?relay=ws%3A%2F%2F127\.0\.0\.1%3A\d+&secret=[0-9a-f]{64}$/;
    expect(net.relayWalletNwc).toMatch(re);
    expect(net.payerWalletNwc).toMatch(re);
    expect(net.relayWalletNwc).not.toBe(net.payerWalletNwc);
    expect(readFileSync(join(dataDir, 'dev-wallet', 'payer.nwc'), 'utf8').trim()).toBe(net.payerWalletNwc);
    expect(statSync(join(dataDir, 'dev-wallet', 'keys.json')).mode & 0o077).toBe(0);
    expect(backend.kind).toBe('nwc');
  });

  it('answers get_info and get_balance', async () => {
    const info = await payer.getInfo();
    expect(info.network).toBe('regtest');
    expect(info.pubkey).toBe(net.nodePubkey);
    expect(info.methods).toContain('pay_invoice');
    expect((await payer.getBalance()).balance).toBe(100_000_000);
  });

  it('runs an invoice from make_invoice to payment_received to lookup_invoice', async () => {
    const zap = JSON.stringify({ kind: 9734, content: '', tags: [['amount', '21000']] });
    const received: Payment[] = [];
    const off = await backend.onPaymentReceived((p) => received.push(p));
    const inv = await backend.makeInvoice({ amountMsat: 21_000, description: zap, descriptionHash: sha(zap), expirySeconds: 600 });
    const d = decodeBolt11(inv.bolt11);
    expect(d.paymentHash).toBe(inv.paymentHash);
    expect(d.amountMsat).toBe(21_000);
    expect(d.descriptionHash).toBe(sha(zap));
    expect(inv.expiresAt - inv.createdAt).toBe(600);
    expect(await backend.lookupInvoice(inv.paymentHash)).toEqual({ state: 'pending', amountMsat: 21_000 });

    const before = (await payer.getBalance()).balance;
    const paid = await payer.payInvoice({ invoice: inv.bolt11 });
    expect(sha(Buffer.from(paid.preimage, 'hex'))).toBe(inv.paymentHash);
    await until(() => received.length === 1);
    await sleep(200);
    expect(received).toHaveLength(1);
    expect(received[0]).toMatchObject({ paymentHash: inv.paymentHash, amountMsat: 21_000, preimage: paid.preimage });

    const look = await backend.lookupInvoice(inv.paymentHash);
    expect(look).toMatchObject({ state: 'settled', amountMsat: 21_000, preimage: paid.preimage });
    expect(look.settledAt).toBe(received[0]!.settledAt);
    expect((await payer.getBalance()).balance).toBe(before - 21_000);
    expect(net.balanceMsat('relay')).toBe(100_000_000 - net.balanceMsat('payer'));

    const again = await walletError(payer.payInvoice({ invoice: inv.bolt11 }));
    expect(again.code).toBe('PAYMENT_FAILED');
    expect(again.message).toMatch(/already paid/);
    expect((await payer.getBalance()).balance).toBe(before - 21_000);

    // Both notification encodings went to the relay wallet's client.
    const clientPubkey = getPublicKey(
      Buffer.from(new URL(net.relayWalletNwc.replace('nostr+walletconnect:', 'http:')).searchParams.get('secret')!, 'hex'),
    );
    const kinds = relay.received
      .filter((e) => e.tags.some((t) => t[0] === 'p' && t[1] === clientPubkey) && e.kind >= 23196)
      .map((e) => e.kind);
    expect(kinds.sort()).toEqual([23196, 23197]);
    off();
  });

  it('refuses to pay an expired invoice, and says expired', async () => {
    const inv = await backend.makeInvoice({ amountMsat: 5_000, expirySeconds: 1 });
    await sleep(inv.expiresAt * 1000 - Date.now() + 50);
    const err = await walletError(payer.payInvoice({ invoice: inv.bolt11 }));
    expect(err.code).toBe('PAYMENT_FAILED');
    expect(err.message).toMatch(/expired/);
    expect(await backend.lookupInvoice(inv.paymentHash)).toEqual({ state: 'expired', amountMsat: 5_000 });
  });

  it("enforces each connection's methods and NIP-47 error codes", async () => {
    const relayClient = new NWCClient({ nostrWalletConnectUrl: net.relayWalletNwc });
    try {
      const inv = await payer.makeInvoice({ amount: 1_000 });
      expect((await walletError(relayClient.payInvoice({ invoice: inv.invoice }))).code).toBe('RESTRICTED');
      expect((await walletError(payer.lookupInvoice({ payment_hash: 'ab'.repeat(32) }))).code).toBe('NOT_FOUND');
      const big = await backend.makeInvoice({ amountMsat: 200_000_000, expirySeconds: 60 });
      expect((await walletError(payer.payInvoice({ invoice: big.bolt11 }))).code).toBe('INSUFFICIENT_BALANCE');
      expect((await walletError(payer.payInvoice({ invoice: 'lnbcrt1nonsense' }))).code).toBe('OTHER');
    } finally {
      relayClient.close();
    }
    await expect(backend.lookupInvoice('ab'.repeat(32))).rejects.toMatchObject({ code: 'NOT_FOUND' });
    await expect(backend.makeInvoice({ amountMsat: 0, expirySeconds: 60 })).rejects.toMatchObject({ code: 'BAD_REQUEST' });
  });

  it('keeps invoices, payments and connection strings across a restart', async () => {
    const inv = await backend.makeInvoice({ amountMsat: 3_333, description: 'before restart', expirySeconds: 600 });
    const paid = await payer.payInvoice({ invoice: inv.bolt11 });
    const pending = await backend.makeInvoice({ amountMsat: 4_444, expirySeconds: 600 });
    const strings = [net.relayWalletNwc, net.payerWalletNwc];
    const payerBalance = net.balanceMsat('payer');
    payer.close();
    await backend.close();
    await net.close();

    net = await DevLightningNetwork.start({ relayUrl: relay.url, dataDir });
    expect([net.relayWalletNwc, net.payerWalletNwc]).toEqual(strings);
    backend = await net.connectRelayWallet();
    expect(backend.kind).toBe('dev');
    payer = new NWCClient({ nostrWalletConnectUrl: strings[1] });
    expect(await backend.lookupInvoice(inv.paymentHash)).toMatchObject({ state: 'settled', amountMsat: 3_333, preimage: paid.preimage });
    expect((await payer.getBalance()).balance).toBe(payerBalance);
    const received: Payment[] = [];
    await backend.onPaymentReceived((p) => received.push(p));
    await payer.payInvoice({ invoice: pending.bolt11 });
    await until(() => received.length === 1);
    expect(received[0]).toMatchObject({ paymentHash: pending.paymentHash, amountMsat: 4_444 });
  });
});

describe('when the relay restarts (and forgets everything)', () => {
  it('the wallet services and the NWC backend reconnect, and new clients can connect again', async () => {
    let relay = await startMiniRelay();
    const port = Number(new URL(relay.url).port);
    const dataDir = mkdtempSync(join(tmpdir(), 'ln-dev-'));
    const net = await DevLightningNetwork.start({ relayUrl: relay.url, dataDir });
    const backend = await connectNwc(net.relayWalletNwc);
    const received: Payment[] = [];
    await backend.onPaymentReceived((p) => received.push(p));
    let payer: NWCClient | undefined;
    try {
      await relay.close();
      relay = await startMiniRelay(port);
      // The services republish their info event once reconnected (the SDK backs off 1 s first).
      await until(() => relay.stored().filter((e) => e.kind === 13194).length === 2, 10_000);
      payer = new NWCClient({ nostrWalletConnectUrl: net.payerWalletNwc });
      const inv = await backend.makeInvoice({ amountMsat: 1_234, expirySeconds: 60 });
      await payer.payInvoice({ invoice: inv.bolt11 });
      await until(() => received.length === 1, 10_000);
      expect(received[0]).toMatchObject({ paymentHash: inv.paymentHash, amountMsat: 1_234 });
    } finally {
      payer?.close();
      await backend.close();
      await net.close();
      await relay.close();
      rmSync(dataDir, { recursive: true, force: true });
    }
  });
});

describe('connectNwc refuses', () => {
  it('malformed connection strings, without echoing the secret', async () => {
    const secret = 'cd'.repeat(32);
    for (const bad of [
      '',
      'https://example.com',
      `nostr+walletconnect://nothex?relay=ws%3A%2F%2F127.0.0.1%3A1&secret=${secret}`,
      `nostr+walletconnect://${'ab'.repeat(32)}?secret=${secret}`,
      `nostr+walletconnect://${'ab'.repeat(32)}?relay=ws%3A%2F%2F127.0.0.1%3A1`,
      `nostr+walletconnect://${'ab'.repeat(32)}?relay=ws%3A%2F%2F127.0.0.1%3A1&secret=123`,
      `nostr+walletconnect://${'ab'.repeat(32)}?relay=https%3A%2F%2Fexample.com&secret=${secret}`,
    ]) {
      const err = await connectNwc(bad).then(
        () => undefined,
        (e: unknown) => e as LightningError,
      );
      expect(err, bad).toBeInstanceOf(LightningError);
      expect(err!.code, bad).toBe('BAD_CONNECTION_STRING');
      expect(err!.message).not.toContain(secret);
    }
  });

  it('a wallet that cannot make_invoice and lookup_invoice', async () => {
    const relay = await startMiniRelay();
    const serviceSecret = Buffer.from(generateSecretKey()).toString('hex');
    const clientSecret = Buffer.from(generateSecretKey()).toString('hex');
    const service = new NWCWalletService({ relayUrls: [relay.url] });
    const keypair = new NWCWalletServiceKeyPair(serviceSecret, getPublicKey(Buffer.from(clientSecret, 'hex')));
    const unsub = await service.subscribe(keypair, {
      getInfo: async () => ({
        result: {
          alias: 'payonly',
          color: '',
          pubkey: '',
          network: 'regtest',
          block_height: 0,
          block_hash: '',
          methods: ['pay_invoice', 'get_balance'],
        },
        error: undefined,
      }),
    });
    await service.publishWalletServiceInfoEvent(serviceSecret, ['pay_invoice', 'get_balance', 'get_info'], []);
    try {
      const url = `nostr+walletconnect://${keypair.walletPubkey}?relay=${encodeURIComponent(relay.url)}&secret=${clientSecret}`;
      await expect(connectNwc(url)).rejects.toMatchObject({
        code: 'UNSUPPORTED_WALLET',
        message: expect.stringMatching(/lacks make_invoice and lookup_invoice/),
      });
    } finally {
      unsub();
      service.close();
      await relay.close();
    }
  });

  it('a wallet that is not there', async () => {
    const relay = await startMiniRelay();
    try {
      const url = `nostr+walletconnect://${'ab'.repeat(32)}?relay=${encodeURIComponent(relay.url)}&secret=${'cd'.repeat(32)}`;
      await expect(connectNwc(url)).rejects.toMatchObject({ code: 'NETWORK', message: expect.stringMatching(/no info event/) });
    } finally {
      await relay.close();
    }
  }, 20_000);
});

describe('DevLightningNetwork.start', () => {
  it('fails clearly when the relay cannot be reached', async () => {
    const dataDir = mkdtempSync(join(tmpdir(), 'ln-dev-'));
    try {
      await expect(DevLightningNetwork.start({ relayUrl: 'ws://127.0.0.1:1', dataDir })).rejects.toThrow(
        /dev wallet (relay|payer): cannot connect to the relay ws:\/\/127\.0\.0\.1:1/,
      );
    } finally {
      rmSync(dataDir, { recursive: true, force: true });
    }
  });

  it('is refused in production', async () => {
    await expect(DevLightningNetwork.start({ relayUrl: 'ws://127.0.0.1:1', dataDir: tmpdir(), production: true })).rejects.toThrow(
      /development and tests only/,
    );
  });
});
