import { join, resolve } from 'node:path';
import { createLogger, loadConfig } from '@paidrelay/config';
import { startAll } from './stack.ts';

/** `pnpm start`: the relay, the admission service and (without NWC_URL) the dev Lightning network, in one process. */
const config = loadConfig();
const log = createLogger(config.LOG_LEVEL, 'paidrelay');
try {
  const stack = await startAll(config, log);
  const lines = [
    '',
    `Relay ready: ${stack.relay.url}`,
    `Pay page:    ${config.PAYMENTS_URL}`,
  ];
  if (stack.dev) {
    lines.push(
      '',
      'Dev Lightning network (development only). Pay invoices with this payer wallet (NWC):',
      `  ${stack.dev.payerWalletNwc}`,
      `  (also in ${join(resolve(config.DATA_DIR), 'dev-wallet', 'payer.nwc')})`,
    );
  }
  process.stdout.write(lines.join('\n') + '\n\n');
  let stopping = false;
  const stop = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    log.info({ signal }, 'shutting down');
    await stack.close();
    process.exit(0);
  };
  // `on`, not `once`: a wrapper (tsx, a shell) may repeat the signal while we drain.
  process.on('SIGTERM', () => void stop('SIGTERM'));
  process.on('SIGINT', () => void stop('SIGINT'));
} catch (err) {
  log.fatal({ err: (err as Error).message }, 'failed to start');
  process.exit(1);
}
