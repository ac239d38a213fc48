import type { NostrEvent } from '@paidrelay/nostr';
import type { Debit } from './store.ts';

export type GateDecision =
  | { action: 'accept' }
  | { action: 'debit'; amountMsat: number }
  | { action: 'refuse'; amountMsat: number; reason: string };

/**
 * The payment gate as the relay core sees it: a decision from a local cache, a place to keep
 * a refused event until it is paid for, and the debit the writer runs inside its transaction.
 * The core knows nothing of prices or wallets; payments.ts provides the implementation.
 */
export interface PaymentGate {
  check(ev: NostrEvent, json: string): GateDecision;
  hold(ev: NostrEvent, json: string, amountMsat: number): Promise<void>;
  debit: Debit;
  close(): void;
}
