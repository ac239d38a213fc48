/**
 * The pay page: a person whose write was refused ("blocked: payment required: ... <pay URL>") opens it
 * to buy admission, a subscription, prepaid credit, or the publication of that one held event.
 *
 * `buildPayPage()` bundles the browser code (app.ts) with esbuild in memory when the service starts:
 * no build step, no files written, nothing loaded from a CDN. The service serves
 *   GET <basePath>         -> html
 *   GET <basePath>/pay.js  -> js   (Content-Type: text/javascript)
 *   GET <basePath>/pay.css -> css  (Content-Type: text/css)
 * The HTML names its assets by absolute URL under `basePath`, so `/pay` and `/pay/` both work; the
 * page itself calls the JSON API at absolute `/api/...` on its own origin.
 */
import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { dirname } from 'node:path';
import { build, transform, type Plugin } from 'esbuild';
import { renderShell } from './html.ts';

export interface PayPage {
  html: string;
  js: string;
  css: string;
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

let assets: Promise<{ js: string; css: string }> | null = null;

async function bundle(): Promise<{ js: string; css: string }> {
  const [js, cssSource] = await Promise.all([
    build({
      entryPoints: [`${here}/app.ts`],
      absWorkingDir: here,
      bundle: true,
      format: 'esm',
      platform: 'browser',
      target: 'es2020',
      minify: true,
      write: false,
      legalComments: 'none',
      charset: 'utf8',
      define: { 'process.env.NODE_ENV': '"production"' },
      plugins: [stubs],
      logLevel: 'silent',
    }),
    readFile(`${here}/styles.css`, 'utf8'),
  ]);
  const css = await transform(cssSource, { loader: 'css', minify: true, charset: 'utf8' });
  return { js: js.outputFiles[0].text, css: css.code };
}

function normalizeBase(basePath: string | undefined): string {
  let p = (basePath ?? '/pay').trim();
  if (!p.startsWith('/')) p = `/${p}`;
  return p.replace(/\/+$/, '');
}

const short = (s: string) => createHash('sha256').update(s).digest('hex').slice(0, 10);

/**
 * Bundles the page (once per process; later calls reuse the bundle) and renders its HTML shell.
 * Asset URLs carry a content hash (`?v=`), so the service may let browsers cache them for long.
 */
export async function buildPayPage(opts: BuildPayPageOptions): Promise<PayPage> {
  assets ??= bundle().catch((err: unknown) => {
    assets = null;
    throw err;
  });
  const { js, css } = await assets;
  const base = normalizeBase(opts.basePath);
  const html = renderShell({
    title: opts.title,
    jsUrl: `${base}/pay.js?v=${short(js)}`,
    cssUrl: `${base}/pay.css?v=${short(css)}`,
  });
  return { html, js, css };
}
