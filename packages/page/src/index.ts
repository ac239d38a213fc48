/**
 * An app's browser page: one script and one stylesheet, bundled with esbuild from the app's
 * sources (nothing loaded from a CDN), and served with content-hashed URLs.
 *
 * `pnpm build` (scripts/build.ts) bundles each page once with `writePage` into the app's
 * dist/page/<name>.{js,css}, and the built app reads those files at start. Run from source
 * (tsx, `pnpm dev`, the tests), the page is bundled in memory at start instead, so no build
 * step is needed and edits show on the next start.
 */
import { createHash } from 'node:crypto';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { dirname, join } from 'node:path';
import { gzipSync } from 'node:zlib';
import type { Plugin } from 'esbuild';

export { escapeHtml, pageHead } from './html.ts';

/**
 * `true` in the bundles scripts/build.ts writes (esbuild `define`), undeclared from source. Tested
 * inline, so the bundle drops the from-source branch (and never loads esbuild, a devDependency).
 */
declare const __PAIDRELAY_BUNDLE__: boolean | undefined;

export type PageSource = {
  /** The assets' file name: `<name>.js` and `<name>.css`. */
  name: string;
  /** The browser code's entry (absolute path of a .ts file). */
  entry: string;
  /** Stylesheets, concatenated in this order: paths relative to the entry ('./styles.css') or in a package ('uplot/dist/uPlot.min.css'), resolved when bundling. */
  styles: string[];
  /** Where `pnpm build` writes the assets and the built app reads them. */
  distDir: string;
  /** esbuild plugins, e.g. stubs for modules the bundle must not carry. */
  plugins?: Plugin[];
};

export type PageAssets = { js: string; css: string };

/** One asset as served: its body, gzipped once, and its URL with a content hash (`?v=`). */
export type Asset = { body: string; gzip: Buffer; type: string; url: string };

/** Bundles the browser code and the styles (at build time, or from source at start). */
export async function bundlePage(src: PageSource): Promise<PageAssets> {
  const { build, transform } = await import('esbuild');
  const [js, ...styles] = await Promise.all([
    build({
      entryPoints: [src.entry],
      absWorkingDir: dirname(src.entry),
      bundle: true,
      format: 'esm',
      platform: 'browser',
      target: 'es2020',
      minify: true,
      write: false,
      legalComments: 'none',
      charset: 'utf8',
      define: { 'process.env.NODE_ENV': '"production"' },
      plugins: src.plugins ?? [],
      logLevel: 'silent',
    }),
    ...src.styles.map((file) => readFile(createRequire(src.entry).resolve(file), 'utf8')),
  ]);
  const css = await transform(styles.join('\n'), { loader: 'css', minify: true, charset: 'utf8' });
  return { js: js.outputFiles[0].text, css: css.code };
}

/** `pnpm build`: bundles the page into its dist folder. */
export async function writePage(src: PageSource): Promise<void> {
  const { js, css } = await bundlePage(src);
  await mkdir(src.distDir, { recursive: true });
  await Promise.all([writeFile(join(src.distDir, `${src.name}.js`), js), writeFile(join(src.distDir, `${src.name}.css`), css)]);
}

async function builtPage(src: PageSource): Promise<PageAssets> {
  try {
    const [js, css] = await Promise.all(['js', 'css'].map((ext) => readFile(join(src.distDir, `${src.name}.${ext}`), 'utf8')));
    return { js, css };
  } catch (err) {
    throw new Error(`the built ${src.name} page is missing (${(err as Error).message}): run pnpm build first`, { cause: err });
  }
}

const loaded = new Map<string, Promise<PageAssets>>();

/** The built assets, or the page bundled from source; once per process (a failure is retried on the next call). */
function pageAssets(src: PageSource): Promise<PageAssets> {
  let assets = loaded.get(src.entry);
  if (!assets) {
    assets = typeof __PAIDRELAY_BUNDLE__ !== 'undefined' && __PAIDRELAY_BUNDLE__ ? builtPage(src) : bundlePage(src);
    loaded.set(src.entry, assets);
    assets.catch(() => loaded.delete(src.entry));
  }
  return assets;
}

/** The page's two assets, to be served under `basePath` ('' for the root). */
export async function servePage(src: PageSource, basePath: string): Promise<{ js: Asset; css: Asset }> {
  const { js, css } = await pageAssets(src);
  const asset = (body: string, ext: string, type: string): Asset => ({
    body,
    gzip: gzipSync(body),
    type,
    url: `${basePath}/${src.name}.${ext}?v=${createHash('sha256').update(body).digest('hex').slice(0, 10)}`,
  });
  return { js: asset(js, 'js', 'text/javascript; charset=utf-8'), css: asset(css, 'css', 'text/css; charset=utf-8') };
}

/** Sends an asset: cacheable for long (its URL changes with its content), gzipped when the client accepts it. */
export function sendAsset(req: IncomingMessage, res: ServerResponse, asset: Asset, headers: Record<string, string> = {}): void {
  const gzip = /\bgzip\b/.test(String(req.headers['accept-encoding'] ?? ''));
  const body = gzip ? asset.gzip : asset.body;
  res.writeHead(200, {
    ...headers,
    'Content-Type': asset.type,
    'Content-Length': String(Buffer.byteLength(body)),
    'Cache-Control': 'public, max-age=31536000, immutable',
    Vary: 'Accept-Encoding',
    ...(gzip ? { 'Content-Encoding': 'gzip' } : {}),
  });
  res.end(req.method === 'HEAD' ? undefined : body);
}
