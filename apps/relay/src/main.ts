import { createLogger, loadConfig } from '@paidrelay/config';
import { startRelay } from './app.ts';

const config = loadConfig();
const log = createLogger(config.LOG_LEVEL, 'relay');
try {
  const relay = await startRelay(config, log);
  // A line a person can copy straight into a Nostr client.
  process.stdout.write(`\nRelay ready: ${relay.url}\n\n`);
  let stopping = false;
  const stop = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    log.info({ signal }, 'shutting down');
    await relay.close();
    process.exit(0);
  };
  // `on`, not `once`: a wrapper (tsx, a shell) may repeat the signal while we drain.
  process.on('SIGTERM', () => void stop('SIGTERM'));
  process.on('SIGINT', () => void stop('SIGINT'));
} catch (err) {
  log.fatal({ err: (err as Error).message }, 'relay failed to start');
  process.exit(1);
}
