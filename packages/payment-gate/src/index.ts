/**
 * The payment gate of a paid relay, a module of its own: the relay core does not import it;
 * the relay's entry point (apps/relay/src/paid.ts) builds it and hands it in as hooks.
 */
export { AccountCache } from './accounts.ts';
export { HoldQueue } from './hold.ts';
export { createPaymentGate, type GateDecision, type PaymentGate, type PaymentGateOptions } from './gate.ts';
export { LivePrices, parsePriceChange, pricesJson, settingsOfPrices, PRICES_RELOAD_MS } from './prices.ts';
export { releaseHeldEvents } from './release.ts';
export { paymentInfo } from './nip11.ts';
