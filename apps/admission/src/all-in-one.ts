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
  const stop = async (signal: string) => {
    log.info({ signal }, 'shutting down');
    await stack.close();
    process.exit(0);
  };
  process.once('SIGTERM', () => void stop('SIGTERM'));
  process.once('SIGINT', () => void stop('SIGINT'));
} catch (err) {
  log.fatal({ err: (err as Error).message }, 'failed to start');
  process.exit(1);
}
