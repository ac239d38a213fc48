/**
 * `pnpm build`: the production build. esbuild bundles each deployable entry into plain ESM
 * JavaScript that `node` runs without tsx:
 *
 *   apps/relay/dist/main.js              the relay (start:relay, the image's `relay`)
 *   apps/relay/dist/verify-worker.js     the signature worker thread the relay starts
 *   apps/admission/dist/main.js          the admission service alone (the image's `admission`)
 *   apps/admission/dist/page/pay.{js,css} the pay page's browser code (src/web), bundled once here
 *   apps/all-in-one/dist/main.js         relay + admission + dev Lightning (`pnpm start`)
 *   apps/dashboard/dist/main.js          the admin dashboard's server (the image's `dashboard`)
 *   apps/dashboard/dist/page/dashboard.{js,css} its page's browser code (uPlot, nostr-tools), bundled once here
 *
 * `pnpm build` builds every app; `pnpm build relay admission` only those (the image, which has
 * no all-in-one). The all-in-one bundle runs the relay, whose verify worker is
 * apps/relay/dist/verify-worker.js, and serves the pay page from apps/admission/dist/page: it
 * is built with both. About a second.
 *
 * Code splitting: what an entry loads with a dynamic import is a chunk of its own in dist/,
 * loaded only when that import runs, so an open relay never loads the payment gate
 * (apps/relay/src/paid.ts) and production never loads the dev Lightning network
 * (@paidrelay/lightning/dev).
 *
 * What is not bundled (`external`), and why:
 * - uWebSockets.js: a .node binary chosen at run time by platform and ABI;
 * - @electric-sql/pglite: loads its .wasm and .data files relative to its own module;
 * - pg-native, bufferutil, utf-8-validate: optional native add-ons that pg and ws try to
 *   require (absent here, so they use their JavaScript code paths, as they do from source);
 * - esbuild: only the from-source pay page fallback imports it.
 * Externals are resolved by Node from the app's folder, so each app lists the ones its
 * bundles import among its own dependencies.
 *
 * `import.meta.url` keeps its from-source meaning inside the bundles: in every workspace file it
 * is rewritten to that file's own URL (computed from the bundle's location, so the tree stays
 * relocatable). Code that finds files next to its source (the relay's package.json for NIP-11,
 * the native verifier's build/Release/*.node, the verify worker, the built pay page) therefore
 * finds the same files whether it runs from source or from dist.
 */
import { readFile, rm } from 'node:fs/promises';
import { dirname, join, relative, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import { build, type BuildOptions, type Plugin } from 'esbuild';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');

const EXTERNAL = ['uWebSockets.js', '@electric-sql/pglite', 'pg-native', 'bufferutil', 'utf-8-validate', 'esbuild'];

/** Rewrites `import.meta.url` in workspace TypeScript to the source file's own URL. */
function sourceUrls(outdir: string): Plugin {
  return {
    name: 'source-import-meta-url',
    setup(b) {
      b.onLoad({ filter: /\.ts$/ }, async (args) => {
        if (args.path.split(sep).includes('node_modules')) return undefined;
        const text = await readFile(args.path, 'utf8');
        if (!text.includes('import.meta.url')) return undefined;
        const rel = relative(outdir, args.path).split(sep).join('/');
        return { loader: 'ts', contents: text.replaceAll('import.meta.url', `new URL(${JSON.stringify(rel)}, import.meta.url).href`) };
      });
    },
  };
}

async function bundle(app: string, entries: string[]): Promise<void> {
  const dir = join(ROOT, 'apps', app);
  const outdir = join(dir, 'dist');
  const options: BuildOptions = {
    absWorkingDir: dir,
    entryPoints: entries.map((e) => `src/${e}.ts`),
    outdir,
    bundle: true,
    // Chunks sit beside the entries (esbuild's default `[name]-[hash]`): the import.meta.url
    // rewrite below is relative to the output folder.
    splitting: true,
    platform: 'node',
    format: 'esm',
    target: 'node20',
    sourcemap: true,
    // CommonJS dependencies (pg, redis, pino...) call require(): give the ESM bundle a real one.
    banner: {
      js: "import { createRequire as __paidrelayCreateRequire } from 'node:module'; const require = __paidrelayCreateRequire(import.meta.url);",
    },
    external: EXTERNAL,
    // CommonJS dependencies that name their own file (write-file-atomic's temporary names) get the
    // chunk's: Node 20.11+ has import.meta.filename and import.meta.dirname.
    define: { __PAIDRELAY_BUNDLE__: 'true', __filename: 'import.meta.filename', __dirname: 'import.meta.dirname' },
    // Constant folding drops the from-source branches (tsx in the worker bootstrap, esbuild for
    // the pay page); names and line structure stay readable, and the source maps point at the .ts.
    minifySyntax: true,
    plugins: [sourceUrls(outdir)],
    legalComments: 'none',
    logLevel: 'warning',
    metafile: true,
  };
  await build(options);
}

/** The browser pages of the apps built, bundled once here (imported when built, so an image that builds only some apps needs only their sources). */
async function buildPages(apps: string[]): Promise<void> {
  const { writePage } = await import('../packages/page/src/index.ts');
  const pages = [];
  if (apps.includes('admission')) pages.push((await import('../apps/admission/src/web/index.ts')).PAY_PAGE);
  if (apps.includes('dashboard')) pages.push((await import('../apps/dashboard/src/page/index.ts')).DASHBOARD_PAGE);
  await Promise.all(pages.map(writePage));
}

const ENTRIES: Record<string, string[]> = {
  relay: ['main', 'verify-worker'],
  admission: ['main'],
  'all-in-one': ['main'],
  dashboard: ['main'],
};
const asked = process.argv.slice(2);
for (const app of asked) if (!(app in ENTRIES)) throw new Error(`unknown app ${app} (known: ${Object.keys(ENTRIES).join(', ')})`);
const apps = asked.length > 0 ? asked : Object.keys(ENTRIES);
if (apps.includes('all-in-one')) for (const needed of ['relay', 'admission', 'dashboard']) if (!apps.includes(needed)) apps.push(needed);

const started = Date.now();
for (const app of apps) await rm(join(ROOT, 'apps', app, 'dist'), { recursive: true, force: true });
await Promise.all([...apps.map((app) => bundle(app, ENTRIES[app])), buildPages(apps)]);
process.stdout.write(`built ${apps.map((a) => `apps/${a}/dist`).join(', ')} in ${Date.now() - started} ms\n`);
