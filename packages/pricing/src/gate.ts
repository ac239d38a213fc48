import { isWalletKind, isWellFormedZapReceipt, KIND_ZAP_RECEIPT, powDifficulty, type NostrEvent } from '@paidrelay/nostr';
import { isAdmitted } from '@paidrelay/db/accounts';
import { admissionBecause, admissionOffer } from './sender.ts';
import {
  allowanceLeft,
  dailyAllowance,
  doublings,
  fitsAllowance,
  surged,
  surgedDifficulty,
  trust,
  volumeMultiplier,
  type History,
  type SurgePolicy,
  type Volume,
} from './surge.ts';
import { formatSats, heldEventPrice, isPaid, payUrl, publicationPrice, requiresAdmission, type Pricing } from './pricing.ts';

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
  | { action: 'refuse'; amountMsat: number; eventMsat: number; reason: string };

/** Admission is read from the account as the database defines it (one reading, in @paidrelay/db). */
export { isAdmitted };

type GateEvent = Pick<NostrEvent, 'id' | 'pubkey' | 'kind' | 'tags'>;

/**
 * Free by the operator's policy: allow-listed keys, waived kinds, the wallet traffic of the
 * wallets this relay uses, and well-formed zap receipts from trusted LNURL servers. A kind is
 * never free for just anyone by default: that would be free storage and broadcast.
 */
export function isFreeByPolicy(p: Pricing, ev: GateEvent, jsonBytes: number): boolean {
  if (p.allowed.has(ev.pubkey) || p.waivedKinds.has(ev.kind)) return true;
  if (isWalletKind(ev.kind)) return p.walletPubkeys.has(ev.pubkey);
  if (ev.kind === KIND_ZAP_RECEIPT) {
    return p.zapReceiptPubkeys.has(ev.pubkey) && jsonBytes <= p.zapReceiptMaxBytes && isWellFormedZapReceipt(ev);
  }
  return false;
}

/**
 * What the gate is told of the sender and the relay for spam pricing (surge.ts): counted by the
 * caller (shared between replicas), passed in, never looked up here.
 */
export type SurgeInputs = {
  policy: SurgePolicy;
  history: History;
  /** The key's writing in the last day (the allowance) and in the window (the multiplier). */
  day: Volume;
  window: Volume;
  /** Its network's writing in the window, and the admissions bought from that network in it. */
  networkWindow: Volume;
  networkAdmissions: number;
  /** The relay-wide load level: bases are multiplied by 2^level. */
  loadLevel: number;
};

/** The multiplier of a write's price, and why, in words for the refusal (written only when asked). */
export function writeMultiplier(s: SurgeInputs | undefined): { multiplier: number; why: () => string } {
  if (!s) return { multiplier: 1, why: () => '' };
  const own = doublings(s.window, s.policy.pubkeyStep);
  const net = doublings(s.networkWindow, s.policy.networkStep);
  const volume = volumeMultiplier(s.window, s.networkWindow, s.policy);
  const multiplier = Math.min(Math.max(1, s.policy.maxMultiplier), volume * 2 ** s.loadLevel);
  return { multiplier, why: () => explain(s, own, net) };
}

function explain(s: SurgeInputs, own: number, net: number): string {
  const hour = `in the last ${formatWindow(s.policy.windowSeconds)}`;
  const parts: string[] = [];
  if (own > 0 && own >= net) parts.push(`${formatVolume(s.window)} from you ${hour}`);
  else if (net > 0) parts.push(`${formatVolume(s.networkWindow)} from your network ${hour}`);
  if (s.loadLevel > 0) parts.push('the relay is busy');
  return parts.join('; ');
}

function formatWindow(seconds: number): string {
  if (seconds % 3600 === 0) return seconds === 3600 ? 'hour' : `${seconds / 3600} hours`;
  return seconds % 60 === 0 ? `${seconds / 60} minutes` : `${seconds} s`;
}

function formatVolume(v: Volume): string {
  return `${v.events.toLocaleString('en-US')} ${v.events === 1 ? 'event' : 'events'}`;
}

/**
 * A price at its multiplier, explained: "8 sats for this event (1,200 events from you in the
 * last hour; 2 sats when quiet; balance 0 sats)". `more` goes in the same parentheses.
 */
function priced(base: number, m: Multiplier, what: string, more?: () => string): { amount: number; text: () => string } {
  const amount = surged(base, m.multiplier);
  const text = () => {
    const parts = m.multiplier > 1 ? [m.why(), `${formatSats(base)} when quiet`] : [];
    if (more) parts.push(more());
    const because = parts.filter(Boolean).join('; ');
    return `${formatSats(amount)} ${what}${because ? ` (${because})` : ''}`;
  };
  return { amount, text };
}

type Multiplier = ReturnType<typeof writeMultiplier>;

/**
 * The payment gate, as a pure function: is this write paid for? Free paths first (policy,
 * enough proof of work), then admission, then the daily allowance and the per-event price.
 * With `surge`, prices beyond the allowance (and every per-event price) follow the sender's
 * volume and the relay's load, and so does the proof of work asked. A refusal says what this
 * one event costs (`eventMsat`): its held event's invoice.
 */
export function gate(
  p: Pricing,
  ev: GateEvent,
  jsonBytes: number,
  account: Account | undefined,
  now: number,
  surge?: SurgeInputs,
): GateDecision {
  if (!isPaid(p)) return { action: 'accept' };
  if (isFreeByPolicy(p, ev, jsonBytes)) return { action: 'accept' };
  const m = writeMultiplier(surge);
  if (p.freePowDifficulty > 0 && powDifficulty(ev.id) >= surgedDifficulty(p.freePowDifficulty, m.multiplier)) {
    return { action: 'accept' };
  }
  const perEvent = heldEventPrice(p, ev.kind, jsonBytes);
  const thisEvent = priced(perEvent, m, 'for this event');
  // Written out only for a refusal: a write that passes costs no text.
  const url = () => payUrl(p, ev.pubkey, ev.id);
  const refuse = (amountMsat: number, text: string): GateDecision => ({
    action: 'refuse',
    amountMsat,
    eventMsat: thisEvent.amount,
    reason: `blocked: payment required: ${text}: ${url()}`,
  });

  if (requiresAdmission(p) && !isAdmitted(account, now)) {
    const base = p.admissionMsat > 0 ? p.admissionMsat : p.subscriptionMsat;
    const offer = admissionOffer(base, surge?.networkAdmissions ?? 0, surge?.policy);
    const amount = offer.amountMsat;
    const busy = admissionBecause(offer);
    const what = p.admissionMsat > 0 ? 'for admission' : `for ${Math.round(p.subscriptionPeriodSeconds / 86400)} days of writing`;
    const orThisEvent = perEvent > 0 ? ` or ${thisEvent.text()}` : '';
    return refuse(amount, `${formatSats(amount)} ${what}${busy}${orThisEvent}`);
  }
  const balance = account?.balanceMsat ?? 0;
  const publication = publicationPrice(p, ev.kind, jsonBytes);
  if (publication > 0) {
    const price = priced(publication, m, 'for this event', () => `balance ${formatSats(balance)}`);
    if (balance >= price.amount) return { action: 'debit', amountMsat: price.amount };
    return refuse(price.amount, `${price.text()}, add credit or pay for it`);
  }
  if (!requiresAdmission(p)) {
    return p.eventMsat > 0 ? refuse(thisEvent.amount, thisEvent.text()) : { action: 'accept' };
  }
  // Admitted: free within the daily allowance; beyond it, each event at the per-event price.
  if (!surge || perEvent <= 0) return { action: 'accept' };
  const allowance = dailyAllowance(trust(surge.history, now, surge.policy), surge.policy);
  if (fitsAllowance(allowanceLeft(allowance, surge.day), jsonBytes)) return { action: 'accept' };
  if (balance >= thisEvent.amount) return { action: 'debit', amountMsat: thisEvent.amount };
  const used = () => `daily allowance of ${allowance.events.toLocaleString('en-US')} events used; balance ${formatSats(balance)}`;
  return refuse(thisEvent.amount, `${priced(perEvent, m, 'for this event', used).text()}, add credit or pay for it`);
}
