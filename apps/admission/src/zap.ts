import type { InvoiceRow } from '@paidrelay/db';
import type { NostrEvent } from '@paidrelay/nostr';
import { finalizeEvent } from 'nostr-tools/pure';
import { makeZapReceipt, validateZapRequest } from 'nostr-tools/nip57';

/**
 * NIP-57 appendix D: a zap request for our LNURL endpoint must be a valid signed kind 9734
 * with relays, exactly one p tag naming the relay's own key, at most one e tag, and an
 * amount tag (when present) equal to the amount being invoiced.
 */
export function checkZapRequest(
  json: string,
  amountMsat: number,
  relayPubkey: string,
): { ok: true; zapper: string } | { ok: false; reason: string } {
  const problem = validateZapRequest(json);
  if (problem) return { ok: false, reason: problem };
  const req = JSON.parse(json) as NostrEvent;
  const p = req.tags.filter((t) => t[0] === 'p');
  if (p.length !== 1 || p[0][1] !== relayPubkey) return { ok: false, reason: "zap request must have one p tag with the relay's pubkey" };
  const amount = req.tags.find((t) => t[0] === 'amount');
  if (amount && Number(amount[1]) !== amountMsat) return { ok: false, reason: 'zap request amount does not match the amount' };
  return { ok: true, zapper: req.pubkey };
}

/** The kind 9735 receipt for a paid zap invoice, signed with the relay's key. */
export function zapReceipt(secretKey: Uint8Array, invoice: InvoiceRow, preimage: string | undefined, paidAt: number): NostrEvent {
  const template = makeZapReceipt({
    zapRequest: invoice.zapRequest!,
    bolt11: invoice.bolt11,
    paidAt: new Date(paidAt * 1000),
    ...(preimage ? { preimage } : {}),
  });
  return finalizeEvent(template, secretKey) as NostrEvent;
}
