/**
 * Spam pricing as one sender and one network see it: the counters' windows and keys (the gate
 * counts in them, the admission API reads them), the admission price of a network, and the
 * numbers `/api/pricing?pubkey=` shows. Pure functions over the gate's own inputs.
 */
import { writeMultiplier, type SurgeInputs } from './gate.ts';
import { formatSats, productsOnSale, type Pricing, type Product } from './pricing.ts';
import { admissionMultiplier, allowanceLeft, dailyAllowance, surged, trust, type SurgePolicy, type Volume } from './surge.ts';

/** A sliding window of counters: `slots` slots of `slotSeconds` (the shape of @paidrelay/bus's VolumeWindow). */
export type CounterWindow = { slotSeconds: number; slots: number };

/** The last day in one-hour slots: the allowance's counter. */
export const DAY_WINDOW: CounterWindow = { slotSeconds: 3_600, slots: 24 };

/** The policy's sliding window, in 60 slots. */
export function surgeWindow(p: SurgePolicy): CounterWindow {
  return { slotSeconds: Math.max(1, Math.round(p.windowSeconds / 60)), slots: 60 };
}

/**
 * The shared counters of a sender and its network. The slot size is in the window keys: after a
 * change of the window, counters of another slot size (whose slot numbers mean other times) are
 * not read as this one's.
 */
export function counterKeys(pubkey: string, network: string, p: SurgePolicy) {
  const slot = surgeWindow(p).slotSeconds;
  return {
    /** The sender's writing in the last day (its allowance). */
    day: `d:${pubkey}`,
    /** The sender's writing in the window (its multiplier). */
    window: `w:${slot}:${pubkey}`,
    /** Its network's writing in the window. */
    network: `n:${slot}:${network}`,
    /** Admissions (and subscriptions) bought from its network in the window, counted when paid. */
    admissions: `a:${slot}:${network}`,
  };
}

/** What admission costs a network now: the base times its multiplier, and why in the refusal's words. */
export type AdmissionOffer = { amountMsat: number; baseMsat: number; multiplier: number; why: string };

export function admissionOffer(baseMsat: number, admissionsFromNetwork: number, p: SurgePolicy | undefined): AdmissionOffer {
  const multiplier = p ? admissionMultiplier(admissionsFromNetwork, p) : 1;
  const amountMsat = surged(baseMsat, multiplier);
  const why = amountMsat > baseMsat ? 'many admissions from your network lately' : '';
  return { amountMsat, baseMsat, multiplier, why };
}

/** "(many admissions from your network lately; 21 sats when quiet)", or '' at the base price. */
export function admissionBecause(o: AdmissionOffer): string {
  return o.why ? ` (${o.why}; ${formatSats(o.baseMsat)} when quiet)` : '';
}

/**
 * What is on sale for a network: admission and a subscription at its admission multiplier, the
 * label saying why when it is above the base price.
 */
export function offersFor(p: Pricing, admissionsFromNetwork: number): { product: Product; label: string }[] {
  const admission = admissionOffer(p.admissionMsat, admissionsFromNetwork, p.surge);
  const subscription = admissionOffer(p.subscriptionMsat, admissionsFromNetwork, p.surge);
  const at = { ...p, admissionMsat: admission.amountMsat, subscriptionMsat: subscription.amountMsat };
  return productsOnSale(at).map((o) => {
    if (o.product === 'admission') return { ...o, label: o.label + admissionBecause(admission) };
    if (o.product === 'subscription') return { ...o, label: o.label + admissionBecause(subscription) };
    return o;
  });
}

/** A sender's spam pricing now: what the gate would apply to its next write, and its allowance. */
export type SenderNumbers = {
  /** The write multiplier (volume × load, >= 1), and why in the refusal's words ('' at 1). */
  multiplier: number;
  why: string;
  /** The daily allowance at its trust, and what is left of it today. */
  allowance: Volume;
  allowanceLeft: Volume;
  windowSeconds: number;
  /** The admission multiplier of its network. */
  admissionMultiplier: number;
  /** 0 (fresh) to 1 (full allowance). */
  trust: number;
};

export function senderNumbers(s: SurgeInputs, now: number): SenderNumbers {
  const m = writeMultiplier(s);
  const t = trust(s.history, now, s.policy);
  const allowance = dailyAllowance(t, s.policy);
  return {
    multiplier: m.multiplier,
    why: m.why(),
    allowance,
    allowanceLeft: allowanceLeft(allowance, s.day),
    windowSeconds: s.policy.windowSeconds,
    admissionMultiplier: admissionMultiplier(s.networkAdmissions, s.policy),
    trust: t,
  };
}
