/**
 * The pay page: a person whose write was refused ("blocked: payment required: ... <pay URL>") opens it
 * to buy admission, a subscription, prepaid credit, or the publication of that one held event.
 *
 * The browser code (app.ts, styles.css) is bundled by `bundlePayPageAssets()` (esbuild, nothing
 * loaded from a CDN). `pnpm build` (scripts/build.ts) runs it once and writes the result to
 * apps/admission/dist/page/pay.{js,css}; the built service reads those files at start. Run from
 * source (tsx, `pnpm dev`, the tests), the page is bundled in memory at start instead, so no build
 * step is needed and edits to app.ts show on the next start. The service serves
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
import type { Plugin } from 'esbuild';
import { renderShell } from './html.ts';

/**
 * `true` in the bundles scripts/build.ts writes (esbuild `define`), undeclared from source. Tested
 * inline, so the bundle drops the from-source branch.
 */
declare const __PAIDRELAY_BUNDLE__: boolean | undefined;

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

/** Bundles the page's browser code and styles with esbuild (at build time, or from source at start). */
export async function bundlePayPageAssets(): Promise<{ js: string; css: string }> {
  // Imported here only: the built service never loads esbuild (it is a devDependency).
  const { build, transform } = await import('esbuild');
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

/** The assets `pnpm build` wrote (apps/admission/dist/page; `here` is this source file's folder, in a bundle too). */
async function builtAssets(): Promise<{ js: string; css: string }> {
  const dir = `${here}/../../dist/page`;
  try {
    const [js, css] = await Promise.all([readFile(`${dir}/pay.js`, 'utf8'), readFile(`${dir}/pay.css`, 'utf8')]);
    return { js, css };
  } catch (err) {
    throw new Error(`the built pay page is missing (${(err as Error).message}): run pnpm build first`, { cause: err });
  }
}

function normalizeBase(basePath: string | undefined): string {
  let p = (basePath ?? '/pay').trim();
  if (!p.startsWith('/')) p = `/${p}`;
  return p.replace(/\/+$/, '');
}

const short = (s: string) => createHash('sha256').update(s).digest('hex').slice(0, 10);

/**
 * Loads the built page, or bundles it from source (once per process; later calls reuse it), and
 * renders its HTML shell.
 * Asset URLs carry a content hash (`?v=`), so the service may let browsers cache them for long.
 */
export async function buildPayPage(opts: BuildPayPageOptions): Promise<PayPage> {
  assets ??= (typeof __PAIDRELAY_BUNDLE__ !== 'undefined' && __PAIDRELAY_BUNDLE__ ? builtAssets() : bundlePayPageAssets()).catch(
    (err: unknown) => {
      assets = null;
      throw err;
    },
  );
  const { js, css } = await assets;
  const base = normalizeBase(opts.basePath);
  const html = renderShell({
    title: opts.title,
    jsUrl: `${base}/pay.js?v=${short(js)}`,
    cssUrl: `${base}/pay.css?v=${short(css)}`,
  });
  return { html, js, css };
}
