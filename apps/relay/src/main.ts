import { createLogger, installProcessHandlers, loadConfig, stopOnSignals } from '@paidrelay/config';
import { startRelay, type Relay } from './app.ts';
import { sellsAnything } from './sells.ts';

const config = loadConfig();
const log = createLogger(config.LOG_LEVEL, 'relay');
let relay: Relay | undefined;
let closing: Promise<void> | undefined;
/** SIGTERM and a fatal error may overlap: the relay is closed once. */
const close = () => (closing ??= relay ? relay.close() : Promise.resolve());
// uncaughtException / unhandledRejection: logged with the stack, closed within 5 s, exit 1.
installProcessHandlers(log, close);
try {
  // An open relay (every price 0, public reads) is the core alone: no payment code is loaded.
  relay = sellsAnything(config) ? await (await import('./paid.ts')).startPaidRelay(config, log) : await startRelay(config, log);
  // A line a person can copy straight into a Nostr client.
  process.stdout.write(`\nRelay ready: ${relay.url}\n\n`);
  stopOnSignals(log, close);
} catch (err) {
  log.fatal({ err }, 'relay failed to start');
  process.exit(1);
}
