import type { NostrEvent } from './event.ts';
import { isHex64 } from './hex.ts';

export const KIND_ZAP_REQUEST = 9734;
export const KIND_ZAP_RECEIPT = 9735;

function tagValue(ev: Pick<NostrEvent, 'tags'>, name: string): string | undefined {
  for (const t of ev.tags) if (t[0] === name && typeof t[1] === 'string') return t[1];
  return undefined;
}

/**
 * NIP-57 appendix E/F, the shape a relay can check without a wallet: a receipt names its
 * recipient (`p`), carries the invoice (`bolt11`) and, in `description`, the zap request it
 * pays (a kind 9734 event with an id and a signature). The signatures and the invoice's amount
 * are the business of the LNURL server that signed the receipt, which the caller must trust.
 */
export function isWellFormedZapReceipt(ev: Pick<NostrEvent, 'kind' | 'tags'>): boolean {
  if (ev.kind !== KIND_ZAP_RECEIPT) return false;
  const p = tagValue(ev, 'p');
  const bolt11 = tagValue(ev, 'bolt11');
  const description = tagValue(ev, 'description');
  if (!p || !isHex64(p) || !bolt11 || !/^ln/i.test(bolt11) || !description) return false;
  let req: unknown;
  try {
    req = JSON.parse(description);
  } catch {
    return false;
  }
  const r = req as Partial<NostrEvent> | null;
  return !!r && r.kind === KIND_ZAP_REQUEST && isHex64(r.id) && isHex64(r.pubkey) && typeof r.sig === 'string' && Array.isArray(r.tags);
}
