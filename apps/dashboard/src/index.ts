export { startDashboard, dashboardRelayUrl, type Dashboard, type DashboardOptions } from './server.ts';
export { buildDashboardPage, DASHBOARD_PAGE } from './page/index.ts';
