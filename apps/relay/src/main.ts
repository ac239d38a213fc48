import { createLogger, loadConfig } from '@paidrelay/config';
import { startRelay } from './app.ts';

const config = loadConfig();
const log = createLogger(config.LOG_LEVEL, 'relay');
try {
  const relay = await startRelay(config, log);
  // A line a person can copy straight into a Nostr client.
  process.stdout.write(`\nRelay ready: ${relay.url}\n\n`);
  const stop = async (signal: string) => {
    log.info({ signal }, 'shutting down');
    await relay.close();
    process.exit(0);
  };
  process.once('SIGTERM', () => void stop('SIGTERM'));
  process.once('SIGINT', () => void stop('SIGINT'));
} catch (err) {
  log.fatal({ err: (err as Error).message }, 'relay failed to start');
  process.exit(1);
}
