/** The relay core: an open relay that takes hooks. The payment side's wiring is `@paidrelay/relay/paid`. */
export { startRelay, type Relay, type RelayOptions } from './app.ts';
export type { RelayHooks, RelayCore, HookSource, Nip11Hook } from './hooks.ts';
export type { WritePolicy, WriteContext } from './policy.ts';
export type { ReadPolicy, ReadContext, ReadDecision, ReadFilter, Membership } from './read-policy.ts';
export type { PaymentGate, GateDecision } from './gate.ts';
export { SUPPORTED_NIPS } from './nip11.ts';
