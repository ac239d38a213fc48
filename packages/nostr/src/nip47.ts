/** NIP-47 (Nostr Wallet Connect): the info event, requests, responses and notifications. */
export const NIP47_KINDS: readonly number[] = [13194, 23194, 23195, 23196, 23197];

export function isWalletKind(kind: number): boolean {
  return kind === 13194 || (kind >= 23194 && kind <= 23197);
}
