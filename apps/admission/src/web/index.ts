/**
 * The pay page: a person whose write was refused ("blocked: payment required: ... <pay URL>") opens it
 * to buy admission, a subscription, prepaid credit, or the publication of that one held event.
 *
 * The browser code (main.ts and its parts: offers, account, NIP-07, invoice; styles.css) is bundled
 * by @paidrelay/page: by `pnpm build` into apps/admission/dist/page/pay.{js,css}, or in memory at
 * start when run from source. Its API types are the service's (../api-types.ts). The service serves
 *   GET <basePath>         -> html
 *   GET <basePath>/pay.js  -> js   (Content-Type: text/javascript)
 *   GET <basePath>/pay.css -> css  (Content-Type: text/css)
 * The HTML names its assets by absolute URL under `basePath`, so `/pay` and `/pay/` both work; the
 * page itself calls the JSON API at absolute `/api/...` on its own origin.
 */
import { dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { servePage, type Asset, type PageSource } from '@paidrelay/page';
import type { Plugin } from 'esbuild';
import { renderShell } from './html.ts';

export interface PayPage {
  html: string;
  js: Asset;
  css: Asset;
}

export interface BuildPayPageOptions {
  /** The relay's name, shown in the page header and title. */
  title: string;
  /** Where the page is mounted (the payments URL's path). Default '/pay'. */
  basePath?: string;
}

const here = dirname(fileURLToPath(import.meta.url));

/**
 * Modules the browser bundle must not carry:
 * - `@lightninglabs/lnc-web` (Bitcoin Connect's Lightning Node Connect option): ~300 KB, and it fetches
 *   its WebAssembly from a CDN when used. The connector then reports that it is unavailable; WebLN
 *   extensions and Nostr Wallet Connect are the supported wallets here.
 * - Node built-ins that browser libraries import only on server-side code paths (`crypto` in
 *   @getalby/lightning-tools' webhook verification).
 */
const stubs: Plugin = {
  name: 'paypage-stubs',
  setup(b) {
    b.onResolve({ filter: /^@lightninglabs\/lnc-web$/ }, (a) => ({ path: a.path, namespace: 'paypage-stub' }));
    b.onResolve({ filter: /^(node:)?crypto$/ }, (a) => ({ path: a.path, namespace: 'paypage-stub' }));
    b.onLoad({ filter: /.*/, namespace: 'paypage-stub' }, (a) => ({
      loader: 'js',
      contents:
        a.path === '@lightninglabs/lnc-web'
          ? `export default class LNC { constructor() { throw new Error('Lightning Node Connect is not available on this page: use a WebLN extension or Nostr Wallet Connect.'); } }`
          : `export default {}; export const timingSafeEqual = () => { throw new Error('not in the browser'); };`,
    }));
  },
};

/** The pay page's sources and where `pnpm build` puts its assets. */
export const PAY_PAGE: PageSource = {
  name: 'pay',
  entry: `${here}/main.ts`,
  styles: ['@paidrelay/page/base.css', './styles.css'],
  distDir: `${here}/../../dist/page`,
  plugins: [stubs],
};

function normalizeBase(basePath: string | undefined): string {
  let p = (basePath ?? '/pay').trim();
  if (!p.startsWith('/')) p = `/${p}`;
  return p.replace(/\/+$/, '');
}

/** The page under `basePath`: its HTML shell and its two assets (loaded or bundled once per process). */
export async function buildPayPage(opts: BuildPayPageOptions): Promise<PayPage> {
  const { js, css } = await servePage(PAY_PAGE, normalizeBase(opts.basePath));
  return { html: renderShell({ title: opts.title, jsUrl: js.url, cssUrl: css.url }), js, css };
}
