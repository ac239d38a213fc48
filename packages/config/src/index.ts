export { loadConfig, configSchema, type Config } from './config.ts';
export { createLogger, type Logger } from './logger.ts';
export { loadRelayKey, type RelayKey } from './relay-key.ts';
export { installProcessHandlers, stopOnSignals, type FatalKind, type ProcessHandlerOptions } from './process.ts';
export { networkKey } from './network.ts';
