export { startRelay, type Relay, type RelayOptions } from './app.ts';
export type { WritePolicy, WriteContext } from './policy.ts';
