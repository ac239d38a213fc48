/**
 * The dashboard page: an HTML shell (html.ts) and one script and one stylesheet, bundled by
 * @paidrelay/page from app.ts and styles.css (with uPlot's CSS), nothing loaded from another
 * origin: by `pnpm build` into apps/dashboard/dist/page/dashboard.{js,css}, or in memory at start
 * when run from source, like the pay page.
 */
import { dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { servePage, type Asset, type PageSource } from '@paidrelay/page';
import { renderShell } from './html.ts';

const here = dirname(fileURLToPath(import.meta.url));

export type DashboardPage = { html: string; js: Asset; css: Asset };

/** The dashboard's sources and where `pnpm build` puts its assets. */
export const DASHBOARD_PAGE: PageSource = {
  name: 'dashboard',
  entry: `${here}/app.ts`,
  styles: ['@paidrelay/page/base.css', 'uplot/dist/uPlot.min.css', './styles.css'],
  distDir: `${here}/../../dist/page`,
};

/** The page for one relay: its NIP-86 URL and name go into the shell. */
export async function buildDashboardPage(o: { relayUrl: string; title: string }): Promise<DashboardPage> {
  const { js, css } = await servePage(DASHBOARD_PAGE, '');
  return { html: renderShell({ title: o.title, relayUrl: o.relayUrl, jsUrl: js.url, cssUrl: css.url }), js, css };
}
