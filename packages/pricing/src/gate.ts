import { powDifficulty } from '@paidrelay/nostr';
import { heldEventPrice, isPaid, payUrl, publicationPrice, requiresAdmission, type Pricing } from './pricing.ts';

/** What the relay knows of a pubkey from its cache. */
export type Account = {
  /** Admitted at all (a one-time admission or a subscription). */
  admitted: boolean;
  /** End of the subscription (unix seconds); null for a one-time admission that never ends. */
  admittedUntil: number | null;
  balanceMsat: number;
};

export type GateDecision =
  | { action: 'accept' }
  | { action: 'debit'; amountMsat: number }
  | { action: 'refuse'; amountMsat: number; reason: string };

export function isAdmitted(a: Account | undefined, now: number): boolean {
  return !!a && a.admitted && (a.admittedUntil === null || a.admittedUntil > now);
}

/**
 * The payment gate, as a pure function: is this write paid for? Free paths first
 * (allow-list, waived kinds, enough proof of work), then admission, then the per-event price.
 */
export function gate(
  p: Pricing,
  ev: { id: string; pubkey: string; kind: number },
  jsonBytes: number,
  account: Account | undefined,
  now: number,
): GateDecision {
  if (!isPaid(p)) return { action: 'accept' };
  if (p.allowed.has(ev.pubkey) || p.waivedKinds.has(ev.kind)) return { action: 'accept' };
  if (p.freePowDifficulty > 0 && powDifficulty(ev.id) >= p.freePowDifficulty) return { action: 'accept' };
  const url = payUrl(p, ev.pubkey, ev.id);
  const perEvent = heldEventPrice(p, ev.kind, jsonBytes);

  if (requiresAdmission(p) && !isAdmitted(account, now)) {
    const amount = p.admissionMsat > 0 ? p.admissionMsat : p.subscriptionMsat;
    const what = p.admissionMsat > 0 ? 'for admission' : `for ${Math.round(p.subscriptionPeriodSeconds / 86400)} days of writing`;
    const alt = p.eventMsat > 0 ? `, or ${p.eventMsat} msat for this event alone` : '';
    return { action: 'refuse', amountMsat: amount, reason: `blocked: payment required: ${amount} msat ${what}${alt}: ${url}` };
  }
  const price = publicationPrice(p, ev.kind, jsonBytes);
  if (price > 0) {
    const balance = account?.balanceMsat ?? 0;
    if (balance >= price) return { action: 'debit', amountMsat: price };
    return {
      action: 'refuse',
      amountMsat: price,
      reason: `blocked: payment required: ${price} msat for this event (balance ${balance} msat), add credit or pay for it: ${url}`,
    };
  }
  if (!requiresAdmission(p) && p.eventMsat > 0) {
    return { action: 'refuse', amountMsat: perEvent, reason: `blocked: payment required: ${perEvent} msat for this event: ${url}` };
  }
  return { action: 'accept' };
}
