import { isWalletKind, isWellFormedZapReceipt, KIND_ZAP_RECEIPT, powDifficulty, type NostrEvent } from '@paidrelay/nostr';
import { isAdmitted } from '@paidrelay/db/accounts';
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
  | { action: 'refuse'; amountMsat: number; reason: string };

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
 * The payment gate, as a pure function: is this write paid for? Free paths first
 * (policy, enough proof of work), then admission, then the per-event price.
 */
export function gate(p: Pricing, ev: GateEvent, jsonBytes: number, account: Account | undefined, now: number): GateDecision {
  if (!isPaid(p)) return { action: 'accept' };
  if (isFreeByPolicy(p, ev, jsonBytes)) return { action: 'accept' };
  if (p.freePowDifficulty > 0 && powDifficulty(ev.id) >= p.freePowDifficulty) return { action: 'accept' };
  const perEvent = heldEventPrice(p, ev.kind, jsonBytes);
  // Written out only for a refusal: a write that passes costs no text.
  const url = () => payUrl(p, ev.pubkey, ev.id);
  const orThisEvent = () => (perEvent > 0 ? ` or ${formatSats(perEvent)} for this event` : '');

  if (requiresAdmission(p) && !isAdmitted(account, now)) {
    const amount = p.admissionMsat > 0 ? p.admissionMsat : p.subscriptionMsat;
    const what = p.admissionMsat > 0 ? 'for admission' : `for ${Math.round(p.subscriptionPeriodSeconds / 86400)} days of writing`;
    return {
      action: 'refuse',
      amountMsat: amount,
      reason: `blocked: payment required: ${formatSats(amount)} ${what}${orThisEvent()}: ${url()}`,
    };
  }
  const price = publicationPrice(p, ev.kind, jsonBytes);
  if (price > 0) {
    const balance = account?.balanceMsat ?? 0;
    if (balance >= price) return { action: 'debit', amountMsat: price };
    return {
      action: 'refuse',
      amountMsat: price,
      reason: `blocked: payment required: ${formatSats(price)} for this event (balance ${formatSats(balance)}), add credit or pay for it: ${url()}`,
    };
  }
  if (!requiresAdmission(p) && p.eventMsat > 0) {
    return {
      action: 'refuse',
      amountMsat: perEvent,
      reason: `blocked: payment required: ${formatSats(perEvent)} for this event: ${url()}`,
    };
  }
  return { action: 'accept' };
}
