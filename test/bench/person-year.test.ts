import { describe, expect, it } from 'vitest';
import { loadConfig } from '@paidrelay/config';
import { pricingFromConfig, surgePolicyFromConfig } from '@paidrelay/pricing';
import { personYear, volumeSince } from './person-year.ts';

const config = (env: Record<string, string> = {}) => loadConfig({ PAYMENTS_URL: 'http://127.0.0.1:1/pay', ...env });

describe('person-year (the spam bench yardstick)', () => {
  it('counts the volume of a sliding window from ascending times', () => {
    expect(volumeSince([10, 20, 30, 40], 40, 15, 100)).toEqual({ events: 2, bytes: 200 });
    expect(volumeSince([], 40, 15, 100)).toEqual({ events: 0, bytes: 0 });
    expect(volumeSince([10, 20], 1000, 15, 100)).toEqual({ events: 0, bytes: 0 });
  });

  it('50 events a day for a year on the default config: the admission alone, 1.15 msat per event', () => {
    const c = config();
    const y = personYear(pricingFromConfig(c), surgePolicyFromConfig(c));
    expect(y.events).toBe(50 * 365);
    expect(y.paidMsat).toBe(c.PRICE_ADMISSION_MSAT);
    expect(y.msatPerEvent).toBeCloseTo(c.PRICE_ADMISSION_MSAT / (50 * 365), 6);
    expect(y.refusals).toBe(1);
  });

  it('beyond the daily allowance the person pays the per-event price for each further event', () => {
    const c = config({ ALLOWANCE_FRESH_EVENTS: '40', ALLOWANCE_FULL_EVENTS: '40', PRICE_EVENT_MSAT: '2000' });
    const y = personYear(pricingFromConfig(c), surgePolicyFromConfig(c), { days: 10 });
    expect(y.events).toBe(500);
    // The day is a sliding 24 hours, as the relay counts it: on the first day the 10 events over
    // the 40 of the allowance pay 2 sats each; from then on each event sees the 49 before it in
    // its last 24 hours, so every one pays. Plus the admission.
    expect(y.paidMsat).toBe(c.PRICE_ADMISSION_MSAT + (10 + 9 * 50) * 2000);
  });
});
