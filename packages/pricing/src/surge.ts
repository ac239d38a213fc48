/**
 * Spam pricing, as pure functions: a free daily allowance that grows with trust, and beyond it a
 * price that doubles with the sender's recent volume (per pubkey and per network) and with the
 * relay's load. Counters, clocks and settings are inputs; nothing here looks anything up.
 */

/** An amount of writing: events and bytes of their JSON. */
export type Volume = { events: number; bytes: number };

export type SurgePolicy = {
  /** Daily allowance of a freshly admitted key, and of a fully trusted one. */
  allowanceFresh: Volume;
  allowanceFull: Volume;
  /** Account age (seconds) that alone earns the full allowance; and paid history (msat) that does. */
  trustAgeSeconds: number;
  trustPaidMsat: number;
  /** The sliding window whose volume drives the multiplier (seconds). */
  windowSeconds: number;
  /** The multiplier doubles for each further step of volume in the window; 0 turns a dimension off. */
  pubkeyStep: Volume;
  networkStep: Volume;
  /** Admissions bought from one network in the window for each doubling of its admission price. */
  networkAdmissionStep: number;
  /** The largest multiplier (a power of two is easiest to read). */
  maxMultiplier: number;
  /** Relay-wide writes per second (all replicas) that count as full load; 0 turns load pricing off. */
  capacityPerSecond: number;
};

export const DEFAULT_SURGE: SurgePolicy = {
  allowanceFresh: { events: 50, bytes: 256 * 1024 },
  allowanceFull: { events: 2_000, bytes: 16 * 1024 * 1024 },
  trustAgeSeconds: 30 * 86_400,
  trustPaidMsat: 10_000_000,
  windowSeconds: 3_600,
  pubkeyStep: { events: 100, bytes: 1024 * 1024 },
  networkStep: { events: 500, bytes: 5 * 1024 * 1024 },
  networkAdmissionStep: 10,
  maxMultiplier: 1_024,
  capacityPerSecond: 0,
};

/** What the relay knows of a key's history: since when it is admitted, and what it paid in all. */
export type History = { admittedSince: number | null; paidMsat: number };

/** Trust from 0 (fresh) to 1 (full allowance): the larger of its age share and its paid share. */
export function trust(h: History, now: number, p: SurgePolicy): number {
  const age = h.admittedSince === null || p.trustAgeSeconds <= 0 ? 0 : (now - h.admittedSince) / p.trustAgeSeconds;
  const paid = p.trustPaidMsat <= 0 ? 0 : h.paidMsat / p.trustPaidMsat;
  return Math.min(1, Math.max(0, age, paid));
}

/** The daily allowance at a given trust, between the fresh and the full one. */
export function dailyAllowance(t: number, p: SurgePolicy): Volume {
  const lerp = (a: number, b: number) => Math.floor(a + (b - a) * t);
  return {
    events: lerp(p.allowanceFresh.events, p.allowanceFull.events),
    bytes: lerp(p.allowanceFresh.bytes, p.allowanceFull.bytes),
  };
}

/** What is left of an allowance after `used` (never negative). */
export function allowanceLeft(allowance: Volume, used: Volume): Volume {
  return { events: Math.max(0, allowance.events - used.events), bytes: Math.max(0, allowance.bytes - used.bytes) };
}

/** This event (of `jsonBytes`) still fits in what is left of the allowance. */
export function fitsAllowance(left: Volume, jsonBytes: number): boolean {
  return left.events >= 1 && left.bytes >= jsonBytes;
}

/** Whole steps of volume: how many times the multiplier has doubled for this counter. */
export function doublings(v: Volume, step: Volume): number {
  const e = step.events > 0 ? Math.floor(v.events / step.events) : 0;
  const b = step.bytes > 0 ? Math.floor(v.bytes / step.bytes) : 0;
  return Math.max(e, b);
}

function capped(exponent: number, max: number): number {
  if (max <= 1) return 1;
  return exponent >= Math.log2(max) ? max : 2 ** exponent;
}

/** The volume multiplier: doubles per step of the sender's or its network's volume in the window. */
export function volumeMultiplier(pubkey: Volume, network: Volume, p: SurgePolicy): number {
  return capped(Math.max(doublings(pubkey, p.pubkeyStep), doublings(network, p.networkStep)), p.maxMultiplier);
}

/** The admission price multiplier of a network, from the admissions bought from it in the window. */
export function admissionMultiplier(admissionsFromNetwork: number, p: SurgePolicy): number {
  if (p.networkAdmissionStep <= 0) return 1;
  return capped(Math.floor(admissionsFromNetwork / p.networkAdmissionStep), p.maxMultiplier);
}

/** Load above this share of capacity raises the load level, below the other share lowers it. */
export const LOAD_UP = 0.9;
export const LOAD_DOWN = 0.6;

/**
 * The next relay-wide load level (the base price is multiplied by 2^level), one step per
 * evaluation: up while the write rate is at or above 90% of capacity, down while under 60%,
 * unchanged between (the hysteresis that keeps it from flapping).
 */
export function nextLoadLevel(level: number, writesPerSecond: number, p: SurgePolicy): number {
  if (p.capacityPerSecond <= 0) return 0;
  const share = writesPerSecond / p.capacityPerSecond;
  const maxLevel = Math.max(0, Math.floor(Math.log2(Math.max(1, p.maxMultiplier))));
  if (share >= LOAD_UP) return Math.min(maxLevel, level + 1);
  if (share < LOAD_DOWN) return Math.max(0, level - 1);
  return level;
}

/** A price times a multiplier, in whole msat. */
export function surged(baseMsat: number, multiplier: number): number {
  return Math.round(baseMsat * multiplier);
}

/** Proof of work asked at a multiplier: one more leading zero bit per doubling. */
export function surgedDifficulty(baseBits: number, multiplier: number): number {
  if (baseBits <= 0) return 0;
  return baseBits + Math.ceil(Math.log2(Math.max(1, multiplier)));
}
