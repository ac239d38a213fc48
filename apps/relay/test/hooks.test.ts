import { describe, expect, it } from 'vitest';
import { loadConfig } from '@paidrelay/config';
import { paymentInfo } from '@paidrelay/payment-gate';
import { isPaid, pricingFromConfig } from '@paidrelay/pricing';
import { resolveHooks, type RelayCore } from '../src/hooks.ts';
import { relayInfo } from '../src/nip11.ts';
import { sellsAnything } from '../src/sells.ts';
import type { PaymentGate } from '../src/gate.ts';

const core = {} as RelayCore;
const gate = { check: () => ({ action: 'accept' }) } as unknown as PaymentGate;

describe('relay hooks', () => {
  it('joins the lists of every source in order, built ones included', async () => {
    const a = () => undefined;
    const b = () => undefined;
    const h = await resolveHooks([{ writePolicies: [a], purge: [async () => 1] }, async () => ({ writePolicies: [b], gate })], core);
    expect(h.writePolicies).toEqual([a, b]);
    expect(h.purge).toHaveLength(1);
    expect(h.gate).toBe(gate);
    expect((await resolveHooks([], core)).gate).toBeUndefined();
  });

  it('refuses two payment gates', async () => {
    await expect(resolveHooks([{ gate }, { gate }], core)).rejects.toThrow(/two payment gates/);
  });

  it('joins the management methods of every source; refuses one name given twice', async () => {
    const m = { parse: () => [], run: async () => 1, change: false };
    expect(Object.keys((await resolveHooks([{ management: { a: m } }, { management: { b: m } }], core)).management)).toEqual(['a', 'b']);
    await expect(resolveHooks([{ management: { a: m } }, { management: { a: m } }], core)).rejects.toThrow(
      /two management methods named a/,
    );
  });

  it('the core document sells nothing; the payment hook adds exactly the enforced fields', () => {
    const config = loadConfig({ PRICE_ADMISSION_MSAT: '21000', PRICE_EVENT_MSAT: '0', MIN_POW_DIFFICULTY: '0' });
    const doc = relayInfo(config, 'a'.repeat(64));
    expect(doc.limitation).toMatchObject({ payment_required: false, restricted_writes: false });
    expect(doc.fees).toBeUndefined();
    const paid = paymentInfo(pricingFromConfig(config), () => 0)(doc);
    expect(paid.limitation).toMatchObject({ payment_required: true, restricted_writes: true, max_limit: config.MAX_LIMIT });
    expect(paid.fees).toEqual({ admission: [{ amount: 21000, unit: 'msats' }] });
    expect(paid.payments_url).toBe(config.PAYMENTS_URL);
  });
});

describe('main.ts: the payment wiring is loaded whenever something may be sold', () => {
  const cases: Record<string, string>[] = [
    { PRICE_ADMISSION_MSAT: '0', PRICE_EVENT_MSAT: '0' },
    { PRICE_ADMISSION_MSAT: '1', PRICE_EVENT_MSAT: '0' },
    { PRICE_ADMISSION_MSAT: '0', PRICE_EVENT_MSAT: '1' },
    { PRICE_ADMISSION_MSAT: '0', PRICE_EVENT_MSAT: '0', PRICE_SUBSCRIPTION_MSAT: '5' },
    { PRICE_ADMISSION_MSAT: '0', PRICE_EVENT_MSAT: '0', PRICE_PUBLICATION_MSAT: '5' },
    { PRICE_ADMISSION_MSAT: '0', PRICE_EVENT_MSAT: '0', PRICE_PUBLICATION_PER_KB_MSAT: '5' },
    { PRICE_ADMISSION_MSAT: '0', PRICE_EVENT_MSAT: '0', PRICE_PUBLICATION_KINDS: '1:100' },
    { PRICE_ADMISSION_MSAT: '0', PRICE_EVENT_MSAT: '0', PRICE_PUBLICATION_KINDS: '1:0' },
    { PRICE_ADMISSION_MSAT: '0', PRICE_EVENT_MSAT: '0', READ_ACCESS: 'members' },
    // Admins can set prices at run time (NIP-86 setprices).
    { PRICE_ADMISSION_MSAT: '0', PRICE_EVENT_MSAT: '0', ADMIN_PUBKEYS: 'a'.repeat(64) },
    {},
  ];
  it.each(cases)('%o', (env) => {
    const config = loadConfig(env);
    const needed = isPaid(pricingFromConfig(config)) || config.READ_ACCESS === 'members';
    if (needed) expect(sellsAnything(config)).toBe(true);
    const open = Object.values(env).every((v) => v === '0') && Object.keys(env).length > 0;
    if (env.ADMIN_PUBKEYS) expect(sellsAnything(config)).toBe(true);
    expect(sellsAnything(config)).toBe(!open);
  });
});
