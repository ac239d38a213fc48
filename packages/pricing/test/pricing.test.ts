import { describe, expect, it } from 'vitest';
import { loadConfig } from '@paidrelay/config';
import { npubEncode } from 'nostr-tools/nip19';
import { getPublicKey } from 'nostr-tools/pure';
import {
  formatSats,
  gate,
  isFreeByPolicy,
  isPaid,
  nwcPubkeys,
  nip11Payments,
  parsePubkey,
  payUrl,
  pricingFromConfig,
  publicationPrice,
} from '../src/index.ts';

const pk = 'a'.repeat(64);
const ev = (kind = 1, id = 'f'.repeat(64)) => ({ id, pubkey: pk, kind, tags: [] as string[][] });
const pricing = (env: Record<string, string>) =>
  pricingFromConfig(loadConfig({ PRICE_ADMISSION_MSAT: '0', PRICE_EVENT_MSAT: '0', ...env }));
const NOW = 1_800_000_000;

describe('pricing', () => {
  it('an open relay: every price zero, everything accepted, NIP-11 says so', () => {
    const p = pricing({});
    expect(isPaid(p)).toBe(false);
    expect(gate(p, ev(), 100, undefined, NOW)).toEqual({ action: 'accept' });
    expect(nip11Payments(p)).toEqual({ payment_required: false, restricted_writes: false });
  });

  it('reads per-kind and per-size publication prices', () => {
    const p = pricing({ PRICE_PUBLICATION_MSAT: '100', PRICE_PUBLICATION_KINDS: '7:10, 30023:1000', PRICE_PUBLICATION_PER_KB_MSAT: '5' });
    expect(publicationPrice(p, 1, 10)).toBe(105);
    expect(publicationPrice(p, 7, 2048)).toBe(20);
    expect(publicationPrice(p, 30023, 3000)).toBe(1015);
    expect(nip11Payments(p).fees!.publication).toEqual([
      { kinds: [7], amount: 10, unit: 'msats' },
      { kinds: [30023], amount: 1000, unit: 'msats' },
      { amount: 100, unit: 'msats' },
      { amount: 5, unit: 'msats', per: 'kilobyte' },
    ]);
  });

  it('refuses malformed price and list settings', () => {
    expect(() => pricing({ PRICE_PUBLICATION_KINDS: '1=5' })).toThrow(/PRICE_PUBLICATION_KINDS/);
    expect(() => pricing({ ALLOWED_PUBKEYS: 'bob' })).toThrow(/ALLOWED_PUBKEYS/);
    expect(() => pricing({ WAIVED_KINDS: '70000' })).toThrow(/WAIVED_KINDS/);
  });

  it('parses hex and npub pubkeys', () => {
    expect(parsePubkey(pk)).toBe(pk);
    expect(parsePubkey(npubEncode(pk))).toBe(pk);
    expect(parsePubkey('A'.repeat(64))).toBe(pk);
    expect(parsePubkey('npub1xyz')).toBeUndefined();
    expect(parsePubkey('abc')).toBeUndefined();
  });
});

describe('gate', () => {
  const p = pricing({
    PRICE_ADMISSION_MSAT: '21000',
    PRICE_PUBLICATION_MSAT: '1000',
    PRICE_EVENT_MSAT: '5000',
    ALLOWED_PUBKEYS: npubEncode('b'.repeat(64)),
    WAIVED_KINDS: '7',
    FREE_POW_DIFFICULTY: '8',
  });

  it('free paths: allow-list, waived kinds, enough proof of work', () => {
    expect(gate(p, { ...ev(), pubkey: 'b'.repeat(64) }, 10, undefined, NOW)).toEqual({ action: 'accept' });
    expect(gate(p, ev(7), 10, undefined, NOW)).toEqual({ action: 'accept' });
    expect(gate(p, ev(1, '00' + 'f'.repeat(62)), 10, undefined, NOW)).toEqual({ action: 'accept' });
    expect(gate(p, ev(1, '01' + 'f'.repeat(62)), 10, undefined, NOW).action).toBe('refuse');
  });

  it('not admitted: refuse with the admission price and the pay URL for this pubkey and event', () => {
    const d = gate(p, ev(), 10, undefined, NOW);
    expect(d).toEqual({
      action: 'refuse',
      amountMsat: 21000,
      eventMsat: 5000,
      reason: `blocked: payment required: 21 sats for admission or 5 sats for this event: ${payUrl(p, pk, 'f'.repeat(64))}`,
    });
    expect(payUrl(p, pk, 'f'.repeat(64))).toBe(`http://localhost:7778/pay/e/${'f'.repeat(64)}`);
    expect(payUrl(p, pk)).toBe(`http://localhost:7778/pay?pubkey=${pk}`);
  });

  it('admitted: debit the price when the balance covers it, refuse when it does not', () => {
    const admitted = { admitted: true, admittedUntil: null, balanceMsat: 1000 };
    expect(gate(p, ev(), 10, admitted, NOW)).toEqual({ action: 'debit', amountMsat: 1000 });
    const d = gate(p, ev(), 10, { ...admitted, balanceMsat: 999 }, NOW);
    expect(d.action).toBe('refuse');
    expect((d as { reason: string }).reason).toMatch(/^blocked: payment required: 1 sat for this event \(balance 0.999 sats\)/);
  });

  it('a subscription counts until it ends', () => {
    const sub = pricing({ PRICE_SUBSCRIPTION_MSAT: '5000', SUBSCRIPTION_PERIOD_SECONDS: '2592000' });
    const acc = { admitted: true, admittedUntil: NOW + 10, balanceMsat: 0 };
    expect(gate(sub, ev(), 10, acc, NOW)).toEqual({ action: 'accept' });
    const d = gate(sub, ev(), 10, acc, NOW + 10);
    expect(d.action).toBe('refuse');
    expect((d as { reason: string }).reason).toMatch(/^blocked: payment required: 5 sats for 30 days of writing: /);
  });

  it('formats amounts as sats, exactly', () => {
    expect([1000, 21000, 2000, 1500, 1, 10_000_000].map(formatSats)).toEqual([
      '1 sat',
      '21 sats',
      '2 sats',
      '1.5 sats',
      '0.001 sats',
      '10,000 sats',
    ]);
  });

  it('pay-per-event only: every event has its own price', () => {
    const ppe = pricing({ PRICE_EVENT_MSAT: '300' });
    const d = gate(ppe, ev(), 10, undefined, NOW);
    expect(d).toMatchObject({ action: 'refuse', amountMsat: 300 });
  });
});

describe('free paths that are not free for everyone', () => {
  const relayKey = 'c'.repeat(64);
  const walletKey = 'd'.repeat(64);
  const secret = '1'.repeat(64);
  const clientKey = getPublicKey(Buffer.from(secret, 'hex'));
  const p = pricingFromConfig(
    loadConfig({
      PRICE_ADMISSION_MSAT: '21000',
      ZAP_RECEIPT_PUBKEYS: npubEncode('e'.repeat(64)),
      NWC_URL: `nostr+walletconnect://${walletKey}?relay=wss%3A%2F%2Fexample&secret=${secret}`,
    }),
    { relayPubkey: relayKey, walletPubkeys: ['f'.repeat(64)] },
  );
  const zapRequest = JSON.stringify({
    kind: 9734,
    id: '1'.repeat(64),
    pubkey: '2'.repeat(64),
    sig: '3'.repeat(128),
    tags: [],
    content: '',
    created_at: NOW,
  });
  const receipt = (
    pubkey: string,
    tags: string[][] = [
      ['p', relayKey],
      ['bolt11', 'lnbcrt10n1xyz'],
      ['description', zapRequest],
    ],
  ) => ({
    id: '0'.repeat(64),
    pubkey,
    kind: 9735,
    tags,
  });

  it('nothing is waived by default', () => {
    expect(pricing({}).waivedKinds.size).toBe(0);
  });

  it('a zap receipt is free only from the relay key or a trusted LNURL server, well formed and small', () => {
    expect(isFreeByPolicy(p, receipt(relayKey), 2000)).toBe(true);
    expect(isFreeByPolicy(p, receipt('e'.repeat(64)), 2000)).toBe(true);
    expect(isFreeByPolicy(p, receipt(pk), 2000)).toBe(false);
    expect(gate(p, receipt(pk), 2000, undefined, NOW).action).toBe('refuse');
    expect(isFreeByPolicy(p, receipt(relayKey), 16385)).toBe(false);
    expect(
      isFreeByPolicy(
        p,
        receipt(relayKey, [
          ['p', relayKey],
          ['bolt11', 'lnbc1'],
        ]),
        500,
      ),
    ).toBe(false);
    expect(
      isFreeByPolicy(
        p,
        receipt(relayKey, [
          ['p', relayKey],
          ['bolt11', 'lnbc1'],
          ['description', '{"kind":1}'],
        ]),
        500,
      ),
    ).toBe(false);
    expect(
      isFreeByPolicy(
        p,
        receipt(relayKey, [
          ['p', relayKey],
          ['bolt11', 'lnbc1'],
          ['description', 'not json'],
        ]),
        500,
      ),
    ).toBe(false);
  });

  it('wallet traffic is free only for the wallets the relay uses', () => {
    expect(nwcPubkeys(`nostr+walletconnect://${walletKey}?relay=wss%3A%2F%2Fx&secret=${secret}`)).toEqual([walletKey, clientKey]);
    for (const kind of [13194, 23194, 23195, 23196, 23197]) {
      expect(isFreeByPolicy(p, { ...ev(kind), pubkey: walletKey }, 500)).toBe(true);
      expect(isFreeByPolicy(p, { ...ev(kind), pubkey: clientKey }, 500)).toBe(true);
      expect(isFreeByPolicy(p, { ...ev(kind), pubkey: 'f'.repeat(64) }, 500)).toBe(true);
      expect(isFreeByPolicy(p, ev(kind), 500)).toBe(false);
      expect(gate(p, ev(kind), 500, undefined, NOW).action).toBe('refuse');
    }
    expect(() => pricing({ WALLET_PUBKEYS: 'nope' })).toThrow(/WALLET_PUBKEYS/);
  });
});
