import { createLogger, installProcessHandlers, loadConfig, stopOnSignals } from '@paidrelay/config';
import { startDashboard, type Dashboard } from './server.ts';

/** The dashboard deployable: `node apps/dashboard/dist/main.js` (DASHBOARD_PORT, default 7779). */
const config = loadConfig();
const log = createLogger(config.LOG_LEVEL, 'dashboard');
let dashboard: Dashboard | undefined;
installProcessHandlers(log, () => dashboard?.close() ?? Promise.resolve());
try {
  dashboard = await startDashboard(config, log);
  process.stdout.write(`Dashboard:   ${dashboard.url} (relay ${dashboard.relayUrl})\n`);
  stopOnSignals(log, () => dashboard!.close());
} catch (err) {
  log.fatal({ err }, 'failed to start');
  process.exit(1);
}
