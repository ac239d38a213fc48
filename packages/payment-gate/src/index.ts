/**
 * The payment gate of a paid relay, a module of its own: the relay core does not import it;
 * the relay's entry point (apps/relay/src/paid.ts) builds it and hands it in as hooks.
 */
export { AccountCache } from './accounts.ts';
export { HoldQueue } from './hold.ts';
export { createMembership, createPaymentGate, livePricing, type GateDecision, type PaymentGate, type PaymentGateOptions } from './gate.ts';
export { paymentInfo } from './nip11.ts';
