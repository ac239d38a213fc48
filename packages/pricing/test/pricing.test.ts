import { describe, expect, it } from 'vitest';
import { loadConfig } from '@paidrelay/config';
import { npubEncode } from 'nostr-tools/nip19';
import { gate, isPaid, nip11Payments, parsePubkey, payUrl, pricingFromConfig, publicationPrice } from '../src/index.ts';

const pk = 'a'.repeat(64);
const ev = (kind = 1, id = 'f'.repeat(64)) => ({ id, pubkey: pk, kind });
const pricing = (env: Record<string, string>) => pricingFromConfig(loadConfig({ PRICE_ADMISSION_MSAT: '0', ...env }));
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
    WAIVED_KINDS: '9735',
    FREE_POW_DIFFICULTY: '8',
  });

  it('free paths: allow-list, waived kinds, enough proof of work', () => {
    expect(gate(p, { ...ev(), pubkey: 'b'.repeat(64) }, 10, undefined, NOW)).toEqual({ action: 'accept' });
    expect(gate(p, ev(9735), 10, undefined, NOW)).toEqual({ action: 'accept' });
    expect(gate(p, ev(1, '00' + 'f'.repeat(62)), 10, undefined, NOW)).toEqual({ action: 'accept' });
    expect(gate(p, ev(1, '01' + 'f'.repeat(62)), 10, undefined, NOW).action).toBe('refuse');
  });

  it('not admitted: refuse with the admission price and the pay URL for this pubkey and event', () => {
    const d = gate(p, ev(), 10, undefined, NOW);
    expect(d).toEqual({
      action: 'refuse',
      amountMsat: 21000,
      reason: `blocked: payment required: 21000 msat for admission, or 5000 msat for this event alone: ${payUrl(p, pk, 'f'.repeat(64))}`,
    });
    expect(payUrl(p, pk, 'f'.repeat(64))).toBe(`http://localhost:7778/pay?pubkey=${pk}&event=${'f'.repeat(64)}`);
  });

  it('admitted: debit the price when the balance covers it, refuse when it does not', () => {
    const admitted = { admitted: true, admittedUntil: null, balanceMsat: 1000 };
    expect(gate(p, ev(), 10, admitted, NOW)).toEqual({ action: 'debit', amountMsat: 1000 });
    const d = gate(p, ev(), 10, { ...admitted, balanceMsat: 999 }, NOW);
    expect(d.action).toBe('refuse');
    expect((d as { reason: string }).reason).toMatch(/^blocked: payment required: 1000 msat for this event \(balance 999 msat\)/);
  });

  it('a subscription counts until it ends', () => {
    const sub = pricing({ PRICE_SUBSCRIPTION_MSAT: '5000', SUBSCRIPTION_PERIOD_SECONDS: '2592000' });
    const acc = { admitted: true, admittedUntil: NOW + 10, balanceMsat: 0 };
    expect(gate(sub, ev(), 10, acc, NOW)).toEqual({ action: 'accept' });
    const d = gate(sub, ev(), 10, acc, NOW + 10);
    expect(d.action).toBe('refuse');
    expect((d as { reason: string }).reason).toMatch(/^blocked: payment required: 5000 msat for 30 days of writing: /);
  });

  it('pay-per-event only: every event has its own price', () => {
    const ppe = pricing({ PRICE_EVENT_MSAT: '300' });
    const d = gate(ppe, ev(), 10, undefined, NOW);
    expect(d).toMatchObject({ action: 'refuse', amountMsat: 300 });
  });
});
