import { describe, expect, it } from 'vitest';
import { createHash } from 'node:crypto';
import type { Nip47Transaction } from '@getalby/sdk/nwc';
import { mapLookup, parseNwcConnectionString, redactNwc } from '../src/nwc.ts';

const preimage = '11'.repeat(32);
const hash = createHash('sha256').update(Buffer.from(preimage, 'hex')).digest('hex');
const NOW = 1_800_000_000;
const tx = (t: Partial<Nip47Transaction>) => ({ payment_hash: hash, amount: 5_000, ...t }) as Nip47Transaction;

describe('mapLookup (lookup_invoice answer -> our state)', () => {
  it('says settled only when the wallet does, with a matching preimage', () => {
    expect(mapLookup(tx({ state: 'settled', preimage, settled_at: NOW - 5 }), hash, NOW)).toEqual({
      state: 'settled',
      amountMsat: 5_000,
      preimage,
      settledAt: NOW - 5,
    });
    expect(mapLookup(tx({ state: 'pending', expires_at: NOW + 60 }), hash, NOW)).toEqual({ state: 'pending', amountMsat: 5_000 });
    expect(mapLookup(tx({ state: 'accepted', expires_at: NOW - 1 }), hash, NOW).state).toBe('pending');
    expect(mapLookup(tx({ state: 'failed' }), hash, NOW).state).toBe('failed');
  });

  it('treats a pending invoice past its expiry as expired', () => {
    expect(mapLookup(tx({ state: 'pending', expires_at: NOW - 1 }), hash, NOW)).toEqual({ state: 'expired', amountMsat: 5_000 });
    expect(mapLookup(tx({ state: 'expired' as Nip47Transaction['state'] }), hash, NOW).state).toBe('expired');
  });

  it('understands older wallets that send no state', () => {
    expect(mapLookup(tx({ preimage, settled_at: NOW - 1 }), hash, NOW).state).toBe('settled');
    expect(mapLookup(tx({ expires_at: NOW + 10 }), hash, NOW).state).toBe('pending');
    expect(mapLookup(tx({ expires_at: NOW - 10 }), hash, NOW).state).toBe('expired');
    // An empty preimage is no proof.
    expect(mapLookup(tx({ preimage: '', settled_at: 0, expires_at: NOW + 10 }), hash, NOW).state).toBe('pending');
  });

  it('refuses a settled answer whose preimage does not hash to the payment hash', () => {
    expect(() => mapLookup(tx({ state: 'settled', preimage: '22'.repeat(32), settled_at: NOW }), hash, NOW)).toThrow(/preimage/);
  });
});

describe('NWC connection strings', () => {
  const pk = 'b889ff5b1513b641e2a139f661a661364979c5beee91842f8f0ef42ab558e9d4';
  const secret = '71a8c14c1407c113601079c4302dab36460f0ccd0ad506f1f2dc73b5100e4f3c';

  it('parse, with several relays and a lud16', () => {
    const s = `nostr+walletconnect://${pk}?relay=wss%3A%2F%2Frelay.example&relay=ws%3A%2F%2F127.0.0.1%3A7777&secret=${secret}&lud16=me%40example.com`;
    expect(parseNwcConnectionString(s)).toEqual({
      walletPubkey: pk,
      relayUrls: ['wss://relay.example', 'ws://127.0.0.1:7777'],
      secret,
      lud16: 'me@example.com',
    });
  });

  it('never show the secret in messages', () => {
    expect(redactNwc(`nostr+walletconnect://${pk}?relay=x&secret=${secret}`)).toBe(`nostr+walletconnect://${pk}?relay=x&secret=<redacted>`);
  });
});
