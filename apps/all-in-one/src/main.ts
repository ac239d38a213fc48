import { join, resolve } from 'node:path';
import { createLogger, installProcessHandlers, loadConfig, stopOnSignals } from '@paidrelay/config';
import { startDashboard } from '@paidrelay/dashboard';
import { startAll, type Stack } from './stack.ts';

/** `pnpm start`: the relay, the admission service and (without NWC_URL) the dev Lightning network, in one process (stack.ts). */
const config = loadConfig();
const log = createLogger(config.LOG_LEVEL, 'paidrelay');
let stack: Stack | undefined;
let dashboard: Awaited<ReturnType<typeof startDashboard>> | undefined;
let closing: Promise<void> | undefined;
/** SIGTERM and a fatal error may overlap: the stack is closed once. */
const close = () =>
  (closing ??= (async () => {
    await dashboard?.close();
    await stack?.close();
  })());
// uncaughtException / unhandledRejection: logged with the stack, closed within 5 s, exit 1.
installProcessHandlers(log, close);
try {
  stack = await startAll(config, log);
  dashboard = await startDashboard(config, log.child({ component: 'dashboard' }), { relayUrl: stack.relay.url });
  const lines = [
    '',
    `Relay ready: ${stack.relay.url}`,
    `Pay page:    ${config.PAYMENTS_URL}`,
    `Dashboard:   ${dashboard.url} (admins: ADMIN_PUBKEYS)`,
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
  stopOnSignals(log, close);
} catch (err) {
  log.fatal({ err }, 'failed to start');
  process.exit(1);
}
