/**
 * The dashboard page: an HTML shell (html.ts) and one script and one stylesheet, bundled with
 * esbuild from app.ts and styles.css (with uPlot's CSS), nothing loaded from another origin.
 * `pnpm build` (scripts/build.ts) writes them to apps/dashboard/dist/page/dashboard.{js,css} and
 * the built server reads those; run from source (tsx, the tests) they are bundled in memory at
 * start, like the pay page.
 */
import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { renderShell } from './html.ts';

declare const __PAIDRELAY_BUNDLE__: boolean | undefined;

const here = dirname(fileURLToPath(import.meta.url));

export type DashboardPage = { html: string; js: string; css: string };

/** Bundles the browser code and the styles (at build time, or from source at start). */
export async function bundleDashboardAssets(): Promise<{ js: string; css: string }> {
  const { build, transform } = await import('esbuild');
  const require = createRequire(`${here}/app.ts`);
  const [js, own, uplot] = await Promise.all([
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
      logLevel: 'silent',
    }),
    readFile(`${here}/styles.css`, 'utf8'),
    readFile(require.resolve('uplot/dist/uPlot.min.css'), 'utf8'),
  ]);
  const css = await transform(`${uplot}\n${own}`, { loader: 'css', minify: true, charset: 'utf8' });
  return { js: js.outputFiles[0].text, css: css.code };
}

async function builtAssets(): Promise<{ js: string; css: string }> {
  const dir = `${here}/../../dist/page`;
  try {
    const [js, css] = await Promise.all([readFile(`${dir}/dashboard.js`, 'utf8'), readFile(`${dir}/dashboard.css`, 'utf8')]);
    return { js, css };
  } catch (err) {
    throw new Error(`the built dashboard page is missing (${(err as Error).message}): run pnpm build first`, { cause: err });
  }
}

let assets: Promise<{ js: string; css: string }> | null = null;
const short = (s: string) => createHash('sha256').update(s).digest('hex').slice(0, 10);

/** The page for one relay: its NIP-86 URL and name go into the shell. */
export async function buildDashboardPage(o: { relayUrl: string; title: string }): Promise<DashboardPage> {
  assets ??= (typeof __PAIDRELAY_BUNDLE__ !== 'undefined' && __PAIDRELAY_BUNDLE__ ? builtAssets() : bundleDashboardAssets()).catch(
    (err: unknown) => {
      assets = null;
      throw err;
    },
  );
  const { js, css } = await assets;
  const html = renderShell({
    title: o.title,
    relayUrl: o.relayUrl,
    jsUrl: `/dashboard.js?v=${short(js)}`,
    cssUrl: `/dashboard.css?v=${short(css)}`,
  });
  return { html, js, css };
}
