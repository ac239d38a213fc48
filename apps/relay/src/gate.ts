import type { NostrEvent } from '@paidrelay/nostr';
import type { Charges } from './store.ts';

/**
 * `debit`: the price is reserved from the cached balance until `settle` is called with
 * whether the debit was committed, so a burst from a short balance passes the gate only as
 * many times as the balance covers. An `accept` may hold something too (the sender's counted
 * volume): `settle` says whether the write was stored.
 */
export type GateDecision =
  | { action: 'accept'; settle?(committed: boolean): void }
  | { action: 'debit'; amountMsat: number; settle(committed: boolean): void }
  /** `eventMsat`: what this one event costs (its held event's invoice), when the gate says. */
  | { action: 'refuse'; amountMsat: number; eventMsat?: number; reason: string };

/**
 * The payment gate as the relay core sees it (a hook, RelayHooks.gate): a decision from a local
 * cache, a place to keep a refused event until it is paid for, and the debit the writer runs
 * inside its transaction. The core knows nothing of prices or wallets: @paidrelay/payment-gate
 * provides the implementation, and the relay's entry point (paid.ts) hands it in, with its
 * purge, membership check, NIP-11 fields and close as the other hooks.
 */
export interface PaymentGate {
  /** `ip`: the client's address (its network's volume may count in the price). */
  check(ev: NostrEvent, json: string, ip: string): GateDecision;
  /** Keeps a refused event for later payment, in the background; `network` is the client's address network (limits.ts networkKey: the per-address bound). */
  hold(ev: NostrEvent, json: string, network: string, eventMsat?: number): void;
  /** The writer's hook: balances locked and debited in the transaction that stores the events. */
  charges: Charges;
  /** The refusal of a write whose balance, read at commit time, did not cover its price. */
  unpaidReason(ev: NostrEvent, json: string, balanceMsat: number): string;
}
