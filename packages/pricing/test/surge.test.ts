import { describe, expect, it } from 'vitest';
import {
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
