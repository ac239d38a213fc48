export { startDashboard, dashboardRelayUrl, type Dashboard, type DashboardOptions } from './server.ts';
export { bundleDashboardAssets, buildDashboardPage } from './page/index.ts';
