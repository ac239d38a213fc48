import { describe, expect, it } from 'vitest';
import { loadConfig } from '@paidrelay/config';
import {
  admissionOffer,
  counterKeys,
  DEFAULT_SURGE,
  offersFor,
  pricingFromConfig,
  senderNumbers,
  surgeWindow,
  type SurgeInputs,
} from '../src/index.ts';

const NOW = 1_800_000_000;
const p = DEFAULT_SURGE;

describe('spam pricing as a sender and a network see it', () => {
  it('the admission price of a network doubles per step of admissions bought from it, and says why', () => {
    expect(admissionOffer(21_000, 9, p)).toEqual({ amountMsat: 21_000, baseMsat: 21_000, multiplier: 1, why: '' });
    expect(admissionOffer(21_000, 10, p)).toMatchObject({
      amountMsat: 42_000,
      multiplier: 2,
      why: 'many admissions from your network lately',
    });
    expect(admissionOffer(21_000, 35, p)).toMatchObject({ amountMsat: 168_000, multiplier: 8 });
    expect(admissionOffer(21_000, 1_000, undefined)).toMatchObject({ amountMsat: 21_000, multiplier: 1 });
  });

  it('offers admission and a subscription at the network price, other products as they are', () => {
    const pricing = pricingFromConfig(
      loadConfig({ PRICE_ADMISSION_MSAT: '21000', PRICE_SUBSCRIPTION_MSAT: '5000', PRICE_EVENT_MSAT: '2000' }),
    );
    const labels = Object.fromEntries(offersFor(pricing, 10).map((o) => [o.product, o.label]));
    expect(labels.admission).toBe('admission for 42 sats (many admissions from your network lately; 21 sats when quiet)');
    expect(labels.subscription).toMatch(/^30 days of writing for 10 sats \(many admissions from your network lately; 5 sats when quiet\)$/);
    expect(labels.event).toBe('2 sats for one held event');
    expect(Object.fromEntries(offersFor(pricing, 0).map((o) => [o.product, o.label])).admission).toBe('admission for 21 sats');
  });

  it("a sender's numbers are the gate's: multiplier and why, allowance at its trust and what is left", () => {
    const s: SurgeInputs = {
      policy: p,
      history: { admittedSince: NOW, paidMsat: p.trustPaidMsat / 2 },
      day: { events: 1_000, bytes: 1_000_000 },
      window: { events: 350, bytes: 100_000 },
      networkWindow: { events: 0, bytes: 0 },
      networkAdmissions: 20,
      loadLevel: 0,
    };
    expect(senderNumbers(s, NOW)).toEqual({
      multiplier: 8,
      why: '350 events from you in the last hour',
      allowance: { events: 1_025, bytes: 8_519_680 },
      allowanceLeft: { events: 25, bytes: 7_519_680 },
      windowSeconds: 3_600,
      admissionMultiplier: 4,
      trust: 0.5,
    });
  });

  it('names the counters by window slot, as the gate counts in them', () => {
    expect(surgeWindow(p)).toEqual({ slotSeconds: 60, slots: 60 });
    expect(counterKeys('ab', '10.0.0.0/24', { ...p, windowSeconds: 600 })).toEqual({
      day: 'd:ab',
      window: 'w:10:ab',
      network: 'n:10:10.0.0.0/24',
      admissions: 'a:10:10.0.0.0/24',
    });
  });
});
