import { describe, expect, it } from 'vitest';
import { loadConfig } from '@paidrelay/config';
import {
  gate,
  pricingFromConfig,
  type SurgeInputs,
  admissionMultiplier,
  allowanceLeft,
  DEFAULT_SURGE,
  dailyAllowance,
  doublings,
  fitsAllowance,
  nextLoadLevel,
  surged,
  surgedDifficulty,
  trust,
  volumeMultiplier,
} from '../src/index.ts';

const NOW = 1_800_000_000;
const DAY = 86_400;
const p = DEFAULT_SURGE;

describe('surge pricing', () => {
  it('trust grows with age or with paid history, whichever is further, up to 1', () => {
    expect(trust({ admittedSince: NOW, paidMsat: 21_000 }, NOW, p)).toBeCloseTo(0.0021);
    expect(trust({ admittedSince: NOW - 15 * DAY, paidMsat: 0 }, NOW, p)).toBeCloseTo(0.5);
    expect(trust({ admittedSince: NOW - DAY, paidMsat: 5_000_000 }, NOW, p)).toBeCloseTo(0.5);
    expect(trust({ admittedSince: NOW - 400 * DAY, paidMsat: 0 }, NOW, p)).toBe(1);
    expect(trust({ admittedSince: null, paidMsat: 0 }, NOW, p)).toBe(0);
    expect(trust({ admittedSince: NOW + DAY, paidMsat: 0 }, NOW, p)).toBe(0);
  });

  it('the allowance runs from the fresh one to the full one', () => {
    expect(dailyAllowance(0, p)).toEqual(p.allowanceFresh);
    expect(dailyAllowance(1, p)).toEqual(p.allowanceFull);
    expect(dailyAllowance(0.5, p).events).toBe(Math.floor((p.allowanceFresh.events + p.allowanceFull.events) / 2));
  });

  it('an event fits while one event and its bytes are left', () => {
    const left = allowanceLeft({ events: 50, bytes: 1000 }, { events: 49, bytes: 600 });
    expect(left).toEqual({ events: 1, bytes: 400 });
    expect(fitsAllowance(left, 400)).toBe(true);
    expect(fitsAllowance(left, 401)).toBe(false);
    expect(fitsAllowance(allowanceLeft({ events: 50, bytes: 1000 }, { events: 60, bytes: 0 }), 1)).toBe(false);
  });

  it('the multiplier doubles per step of pubkey or network volume, and is capped', () => {
    expect(volumeMultiplier({ events: 0, bytes: 0 }, { events: 0, bytes: 0 }, p)).toBe(1);
    expect(volumeMultiplier({ events: 99, bytes: 0 }, { events: 0, bytes: 0 }, p)).toBe(1);
    expect(volumeMultiplier({ events: 100, bytes: 0 }, { events: 0, bytes: 0 }, p)).toBe(2);
    expect(volumeMultiplier({ events: 350, bytes: 0 }, { events: 0, bytes: 0 }, p)).toBe(8);
    expect(volumeMultiplier({ events: 0, bytes: 3 * 1024 * 1024 }, { events: 0, bytes: 0 }, p)).toBe(8);
    // A network of many fresh keys: each key is quiet, the network is not.
    expect(volumeMultiplier({ events: 5, bytes: 0 }, { events: 2_000, bytes: 0 }, p)).toBe(16);
    expect(volumeMultiplier({ events: 1e9, bytes: 0 }, { events: 0, bytes: 0 }, p)).toBe(p.maxMultiplier);
    expect(doublings({ events: 1e6, bytes: 1e9 }, { events: 0, bytes: 0 })).toBe(0);
  });

  it('a network pays more for each further step of admissions bought from it', () => {
    expect(admissionMultiplier(9, p)).toBe(1);
    expect(admissionMultiplier(10, p)).toBe(2);
    expect(admissionMultiplier(45, p)).toBe(16);
    expect(admissionMultiplier(1e6, p)).toBe(p.maxMultiplier);
    expect(admissionMultiplier(1e6, { ...p, networkAdmissionStep: 0 })).toBe(1);
  });

  it('load rises one level per evaluation near capacity, falls under 60%, holds between', () => {
    const q = { ...p, capacityPerSecond: 1_000 };
    expect(nextLoadLevel(0, 899, q)).toBe(0);
    expect(nextLoadLevel(0, 900, q)).toBe(1);
    expect(nextLoadLevel(1, 950, q)).toBe(2);
    expect(nextLoadLevel(2, 700, q)).toBe(2);
    expect(nextLoadLevel(2, 599, q)).toBe(1);
    expect(nextLoadLevel(0, 0, q)).toBe(0);
    expect(nextLoadLevel(10, 5_000, q)).toBe(10);
    expect(nextLoadLevel(3, 5_000, { ...q, capacityPerSecond: 0 })).toBe(0);
  });

  it('prices stay whole msat; proof of work asks one bit more per doubling', () => {
    expect(surged(2_000, 8)).toBe(16_000);
    expect(surged(1_001, 1)).toBe(1_001);
    expect(surgedDifficulty(20, 1)).toBe(20);
    expect(surgedDifficulty(20, 8)).toBe(23);
    expect(surgedDifficulty(0, 8)).toBe(0);
  });
});

describe('the gate with spam pricing', () => {
  const pk = 'a'.repeat(64);
  const ev = (id = 'f'.repeat(64)) => ({ id, pubkey: pk, kind: 1, tags: [] as string[][] });
  const pricing = (env: Record<string, string>) =>
    pricingFromConfig(loadConfig({ PRICE_ADMISSION_MSAT: '0', PRICE_EVENT_MSAT: '0', ...env }));
  const quiet: SurgeInputs = {
    policy: p,
    history: { admittedSince: NOW, paidMsat: 0 },
    day: { events: 0, bytes: 0 },
    window: { events: 0, bytes: 0 },
    networkWindow: { events: 0, bytes: 0 },
    networkAdmissions: 0,
    loadLevel: 0,
  };
  const admitted = (balanceMsat = 0) => ({ admitted: true, admittedUntil: null, balanceMsat });
  const paid = pricing({ PRICE_ADMISSION_MSAT: '21000', PRICE_EVENT_MSAT: '2000' });

  it('admitted: free within the daily allowance, then the per-event price from the balance or refused', () => {
    expect(gate(paid, ev(), 500, admitted(), NOW, { ...quiet, day: { events: 49, bytes: 10_000 } })).toEqual({ action: 'accept' });
    const spent = { ...quiet, day: { events: 50, bytes: 10_000 } };
    expect(gate(paid, ev(), 500, admitted(5_000), NOW, spent)).toEqual({ action: 'debit', amountMsat: 2_000 });
    const d = gate(paid, ev(), 500, admitted(), NOW, spent);
    expect(d).toMatchObject({ action: 'refuse', amountMsat: 2_000, eventMsat: 2_000 });
    expect(d.action === 'refuse' && d.reason).toMatch(
      /^blocked: payment required: 2 sats for this event \(daily allowance of 50 events used; balance 0 sats\), add credit or pay for it: http:\/\/\S+\/pay\/e\/f{64}$/,
    );
    // Without spam pricing inputs, an admitted key writes free as before.
    expect(gate(paid, ev(), 500, admitted(), NOW)).toEqual({ action: 'accept' });
    // A key trusted for a year has the full allowance.
    const old = { ...spent, history: { admittedSince: NOW - 400 * 86_400, paidMsat: 0 } };
    expect(gate(paid, ev(), 500, admitted(), NOW, old)).toEqual({ action: 'accept' });
  });

  it('beyond the allowance the price doubles with volume, and the refusal says why and the quiet price', () => {
    const busy = { ...quiet, day: { events: 400, bytes: 0 }, window: { events: 350, bytes: 0 } };
    const d = gate(paid, ev(), 500, admitted(), NOW, busy);
    expect(d).toMatchObject({ action: 'refuse', amountMsat: 16_000, eventMsat: 16_000 });
    expect(d.action === 'refuse' && d.reason).toContain(
      '16 sats for this event (350 events from you in the last hour; 2 sats when quiet; daily allowance of 50 events used; balance 0 sats)',
    );
    const network = { ...busy, window: { events: 60, bytes: 0 }, networkWindow: { events: 2_000, bytes: 0 } };
    const n = gate(paid, ev(), 500, admitted(), NOW, network);
    expect(n).toMatchObject({ amountMsat: 32_000 });
    expect(n.action === 'refuse' && n.reason).toContain('2,000 events from your network in the last hour');
    const loaded = gate(paid, ev(), 500, admitted(100_000), NOW, { ...busy, loadLevel: 2 });
    expect(loaded).toEqual({ action: 'debit', amountMsat: 64_000 });
  });

  it('a per-event relay surges every write; admission surges with admissions bought from the network', () => {
    const perEvent = pricing({ PRICE_EVENT_MSAT: '1000' });
    expect(gate(perEvent, ev(), 100, undefined, NOW, quiet)).toMatchObject({ action: 'refuse', amountMsat: 1_000 });
    const d = gate(perEvent, ev(), 100, undefined, NOW, { ...quiet, window: { events: 200, bytes: 0 } });
    expect(d).toMatchObject({ action: 'refuse', amountMsat: 4_000, eventMsat: 4_000 });
    expect(d.action === 'refuse' && d.reason).toMatch(
      /^blocked: payment required: 4 sats for this event \(200 events from you in the last hour; 1 sat when quiet\): /,
    );
    const a = gate(paid, ev(), 100, undefined, NOW, { ...quiet, networkAdmissions: 20 });
    expect(a).toMatchObject({ action: 'refuse', amountMsat: 84_000, eventMsat: 2_000 });
    expect(a.action === 'refuse' && a.reason).toContain(
      '84 sats for admission (many admissions from your network lately; 21 sats when quiet) or 2 sats for this event',
    );
  });

  it('never surges what is free by policy; proof of work asks one more bit per doubling', () => {
    const allowed = pricing({ PRICE_EVENT_MSAT: '1000', ALLOWED_PUBKEYS: pk });
    const flood = { ...quiet, window: { events: 1e6, bytes: 0 }, networkWindow: { events: 1e6, bytes: 0 } };
    expect(gate(allowed, ev(), 100, undefined, NOW, flood)).toEqual({ action: 'accept' });
    const pow = pricing({ PRICE_EVENT_MSAT: '1000', FREE_POW_DIFFICULTY: '8' });
    const eightBits = `00${'f'.repeat(62)}`;
    expect(gate(pow, ev(eightBits), 100, undefined, NOW, quiet)).toEqual({ action: 'accept' });
    expect(gate(pow, ev(eightBits), 100, undefined, NOW, { ...quiet, window: { events: 100, bytes: 0 } }).action).toBe('refuse');
    expect(gate(pow, ev(`007${'f'.repeat(61)}`), 100, undefined, NOW, { ...quiet, window: { events: 100, bytes: 0 } })).toEqual({
      action: 'accept',
    });
  });
});
