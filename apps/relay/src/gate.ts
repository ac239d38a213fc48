import type { NostrEvent } from '@paidrelay/nostr';
import type { Charges } from './store.ts';

/**
 * `debit`: the price is reserved from the cached balance until `settle` is called with
 * whether the debit was committed, so a burst from a short balance passes the gate only as
 * many times as the balance covers.
 */
export type GateDecision =
  | { action: 'accept' }
  | { action: 'debit'; amountMsat: number; settle(committed: boolean): void }
  | { action: 'refuse'; amountMsat: number; reason: string };

/**
 * The payment gate as the relay core sees it: a decision from a local cache, a place to keep
 * a refused event until it is paid for, and the debit the writer runs inside its transaction.
 * The core knows nothing of prices or wallets; payments.ts provides the implementation.
 */
export interface PaymentGate {
  check(ev: NostrEvent, json: string): GateDecision;
  /** Admitted, subscribed or allow-listed at `now` (members-only reads), from the same cache. */
  isMember(pubkey: string, now: number): boolean;
  /** Keeps a refused event for later payment, in the background; `ip` is the client's address (per-address bound). */
  hold(ev: NostrEvent, json: string, ip: string): void;
  /** Writes the queued held events, then drops those that are due or over the global bound (the relay's purge timer). */
  purge(now: number): Promise<number>;
  /** The writer's hook: balances locked and debited in the transaction that stores the events. */
  charges: Charges;
  /** The refusal of a write whose balance, read at commit time, did not cover its price. */
  unpaidReason(ev: NostrEvent, json: string, balanceMsat: number): string;
  /** Stops the cache and writes the held events still queued. */
  close(): Promise<void>;
}
