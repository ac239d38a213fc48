import { describe, expect, it } from 'vitest';
import { createECDH, createHash, randomBytes } from 'node:crypto';
import { createBolt11, decodeBolt11 } from '../src/bolt11.ts';
import { LightningError } from '../src/types.ts';

const nodeSecret = 'e126f68f7eafcc8b74f54d269fe206be715000f94dac067d1c04a8ca3b2db734';
const ecdh = createECDH('secp256k1');
ecdh.setPrivateKey(Buffer.from(nodeSecret, 'hex'));
const nodePubkey = ecdh.getPublicKey('hex', 'compressed');
const hash = (s: string | Buffer) => createHash('sha256').update(s).digest('hex');

function make(
  amountMsat: number,
  extra: { description?: string; descriptionHash?: string; network?: 'regtest' | 'testnet' | 'mainnet' } = {},
) {
  const preimage = randomBytes(32);
  const paymentHash = hash(preimage);
  const bolt11 = createBolt11({
    nodeSecret,
    paymentHash,
    paymentSecret: randomBytes(32).toString('hex'),
    amountMsat,
    timestamp: 1_700_000_000,
    expirySeconds: 600,
    ...extra,
  });
  return { bolt11, paymentHash };
}

describe('BOLT11', () => {
  it('round-trips amount, hash, description, expiry and the signing node', () => {
    const { bolt11, paymentHash } = make(21_000, { description: 'admission to paidrelay' });
    expect(bolt11.startsWith('lnbcrt210n1')).toBe(true);
    const d = decodeBolt11(bolt11);
    expect(d.network).toBe('regtest');
    expect(d.paymentHash).toBe(paymentHash);
    expect(d.amountMsat).toBe(21_000);
    expect(d.description).toBe('admission to paidrelay');
    expect(d.descriptionHash).toBeUndefined();
    expect(d.createdAt).toBe(1_700_000_000);
    expect(d.expiresAt).toBe(1_700_000_600);
    expect(d.payeeNodeKey).toBe(nodePubkey);
    expect(d.paymentSecret).toMatch(/^[0-9a-f]{64}$/);
  });

  it.each([
    [1, 'lnbcrt10p1'],
    [7, 'lnbcrt70p1'],
    [1_000, 'lnbcrt10n1'],
    [1_001, 'lnbcrt10010p1'],
    [123_456_789, 'lnbcrt1234567890p1'],
    [100_000_000, 'lnbcrt1m1'],
    [250_000_000_000, 'lnbcrt2500m1'],
  ])('encodes %i msat exactly (%s)', (msat, prefix) => {
    const { bolt11 } = make(msat);
    expect(bolt11.startsWith(prefix)).toBe(true);
    expect(decodeBolt11(bolt11).amountMsat).toBe(msat);
  });

  it('commits to a description hash (NIP-57) instead of the description', () => {
    const zapRequest = JSON.stringify({ kind: 9734, content: 'zap!', tags: [['p', 'ab'.repeat(32)]] });
    const dh = hash(zapRequest);
    const { bolt11 } = make(5_000, { descriptionHash: dh });
    const d = decodeBolt11(bolt11);
    expect(d.descriptionHash).toBe(dh);
    expect(d.description).toBeUndefined();
  });

  it('uses the network prefix asked for', () => {
    expect(make(1000, { network: 'testnet' }).bolt11.startsWith('lntb10n1')).toBe(true);
    expect(decodeBolt11(make(1000, { network: 'mainnet' }).bolt11).network).toBe('mainnet');
  });

  it('refuses a tampered invoice, garbage, and bad parameters', () => {
    const { bolt11 } = make(1000);
    const i = 30;
    const tampered = bolt11.slice(0, i) + (bolt11[i] === 'q' ? 'p' : 'q') + bolt11.slice(i + 1);
    expect(() => decodeBolt11(tampered)).toThrow(LightningError);
    expect(() => decodeBolt11('lnbcrt1hello')).toThrow(/BOLT11|network/);
    expect(() => decodeBolt11('not an invoice')).toThrow(LightningError);
    expect(() => make(0)).toThrow(/positive/);
    expect(() => make(1.5)).toThrow(/positive/);
    expect(() => make(10, { description: 'x'.repeat(640) })).toThrow(/639/);
    expect(() => make(10, { descriptionHash: 'zz' })).toThrow(/hex/);
  });

  it('decodes the BOLT11 specification example (mainnet, 2500u, "1 cup coffee")', () => {
    const spec =
      'lnbc2500u1pvjluezsp5zyg3zyg3zyg3zyg3zyg3zyg3zyg3zyg3zyg3zyg3zyg3zyg3zygspp5qqqsyqcyq5rqwzqfqqqsyqcyq5rqwzqfqqqsyqcyq5rqwzqfqypqdq5xysxxatsyp3k7enxv4jsxqzpu9qrsgquk0rl77nj30yxdy8j9vdx85fkpmdla2087ne0xh8nhedh8w27kyke0lp53ut353s06fv3qfegext0eh0ymjpf39tuven09sam30g4vgpfna3rh';
    const d = decodeBolt11(spec);
    expect(d.network).toBe('mainnet');
    expect(d.amountMsat).toBe(250_000_000);
    expect(d.paymentHash).toBe('0001020304050607080900010203040506070809000102030405060708090102');
    expect(d.createdAt).toBe(1496314658);
    expect(d.expiresAt).toBe(1496314658 + 60);
    expect(d.description).toBe('1 cup coffee');
    expect(d.payeeNodeKey).toBe('03e7156ae33b0a208d0744199163177e909e80176e55d97a2f221ede0f934dd9ad');
  });

  it('decodes an upper-case invoice (as QR codes carry it)', () => {
    const { bolt11, paymentHash } = make(42_000);
    expect(decodeBolt11(bolt11.toUpperCase()).paymentHash).toBe(paymentHash);
  });
});
