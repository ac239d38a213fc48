/**
 * The payment gate of a paid relay, a module of its own: the relay core does not import it;
 * the relay's entry point (apps/relay/src/paid.ts) builds it and hands it in as hooks.
 */
export { AccountCache } from './accounts.ts';
export { HoldQueue } from './hold.ts';
export { createPaymentGate, type GateDecision, type PaymentGate, type PaymentGateOptions, type TopSender } from './gate.ts';
export { LOAD_KEY, LOAD_WINDOW, LoadMonitor, windowRate, type LoadMonitorOptions } from './load.ts';
export {
  LivePrices,
  parsePriceChange,
  pricesJson,
  settingsJson,
  spamJson,
  spamPolicyProblem,
  spamSettingsOf,
  surgeOfSettings,
  settingsOfPrices,
  PRICES_RELOAD_MS,
} from './prices.ts';
export { releaseHeldEvents } from './release.ts';
export { paymentInfo } from './nip11.ts';
