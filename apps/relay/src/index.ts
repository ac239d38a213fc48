export { startRelay, type Relay, type RelayOptions } from './app.ts';
export type { WritePolicy, WriteContext } from './policy.ts';
export type { ReadPolicy, ReadContext, ReadDecision, ReadFilter } from './read-policy.ts';
export type { PaymentGate, GateDecision } from './gate.ts';
export { SUPPORTED_NIPS } from './nip11.ts';
