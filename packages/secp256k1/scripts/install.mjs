#!/usr/bin/env node
// Builds the optional native verifier (build/Release/secp256k1_verify.node).
//
// Runs as the package's `install` script. It NEVER fails the install: when the
// addon cannot be built (no libsecp256k1-dev, no compiler, no node-gyp, build
// error, failed self-test, or PAIDRELAY_SKIP_NATIVE=1) it prints ONE line that
// says so and exits 0, and the package uses nostr-wasm at run time.
//
//   node scripts/install.mjs            # install mode: always exit 0
//   node scripts/install.mjs --strict   # exit 1 when the native build fails
//   PAIDRELAY_SKIP_NATIVE=1 ...         # do not build; remove any old addon
//
// node-gyp: pnpm (and npm) export `npm_config_node_gyp`, the path of the
// node-gyp they bundle, to lifecycle scripts; that one is used first, then a
// locally installed `node-gyp` package, then `node-gyp` on PATH, then the one
// bundled with the npm that ships with this node.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const PKG = '@paidrelay/secp256k1';
const pkgDir = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const buildDir = join(pkgDir, 'build');
const addonPath = join(buildDir, 'Release', 'secp256k1_verify.node');
const logPath = join(pkgDir, 'native-build.log');
const strict = process.argv.includes('--strict');
const verbose = /^(1|true|yes)$/i.test(process.env.PAIDRELAY_NATIVE_VERBOSE ?? '');

function unavailable(reason) {
  try {
    rmSync(buildDir, { recursive: true, force: true });
  } catch {
    /* ignore */
  }
  console.log(`[${PKG}] native verifier unavailable (${reason}); nostr-wasm will be used`);
  process.exit(strict ? 1 : 0);
}

function run(cmd, args, opts = {}) {
  return spawnSync(cmd, args, {
    cwd: pkgDir,
    encoding: 'utf8',
    maxBuffer: 64 * 1024 * 1024,
    ...opts,
  });
}

// 1. Compiler + libsecp256k1 with the schnorrsig and extrakeys modules.
function preflight() {
  const cc = process.env.CC || 'cc';
  const dir = mkdtempSync(join(tmpdir(), 'paidrelay-secp256k1-'));
  try {
    const src = join(dir, 'probe.c');
    writeFileSync(
      src,
      [
        '#include <secp256k1.h>',
        '#include <secp256k1_extrakeys.h>',
        '#include <secp256k1_schnorrsig.h>',
        'int main(void) {',
        '  secp256k1_context *c = secp256k1_context_create(SECP256K1_CONTEXT_VERIFY);',
        '  secp256k1_xonly_pubkey pk; unsigned char b[64] = {0};',
        '  int r = secp256k1_xonly_pubkey_parse(c, &pk, b) + secp256k1_schnorrsig_verify(c, b, b, 32, &pk);',
        '  secp256k1_context_destroy(c);',
        '  return r < 0;',
        '}',
        '',
      ].join('\n'),
    );
    const r = run(cc, [src, '-o', join(dir, 'probe'), '-lsecp256k1']);
    if (r.error && r.error.code === 'ENOENT') return `no C compiler "${cc}"; apt-get install build-essential`;
    if (r.status !== 0) {
      const out = `${r.stdout ?? ''}${r.stderr ?? ''}`;
      if (verbose) process.stderr.write(out);
      if (/secp256k1(_schnorrsig|_extrakeys)?\.h/.test(out) && /No such file|not found/i.test(out))
        return 'libsecp256k1 headers not found; apt-get install libsecp256k1-dev';
      if (/-lsecp256k1|undefined reference/.test(out))
        return 'libsecp256k1 with schnorrsig/extrakeys modules not found; apt-get install libsecp256k1-dev';
      return `cannot compile against libsecp256k1 (${cc} exited ${r.status}); apt-get install libsecp256k1-dev`;
    }
    return null;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

// 2. Which node-gyp.
function findNodeGyp() {
  const fromEnv = process.env.npm_config_node_gyp;
  if (fromEnv && existsSync(fromEnv)) {
    return /\.(c|m)?js$/.test(fromEnv) ? [process.execPath, [fromEnv]] : [fromEnv, []];
  }
  try {
    const js = createRequire(join(pkgDir, 'package.json')).resolve('node-gyp/bin/node-gyp.js');
    return [process.execPath, [js]];
  } catch {
    /* not installed locally */
  }
  const onPath = run('node-gyp', ['--version']);
  if (!onPath.error && onPath.status === 0) return ['node-gyp', []];
  // the node-gyp bundled with the npm that ships with this node
  const prefix = resolve(dirname(process.execPath), '..');
  for (const js of [
    join(prefix, 'lib', 'node_modules', 'npm', 'node_modules', 'node-gyp', 'bin', 'node-gyp.js'),
    join(prefix, 'node_modules', 'npm', 'node_modules', 'node-gyp', 'bin', 'node-gyp.js'),
  ]) {
    if (existsSync(js)) return [process.execPath, [js]];
  }
  return null;
}

// 3. Node headers: use the ones installed next to this node binary (Debian's
// nodejs, NodeSource and the official tarballs all ship include/node) so that
// node-gyp does not try to download them.
function localNodeDir() {
  if (process.env.npm_config_nodedir) return null; // node-gyp reads it itself
  const prefix = resolve(dirname(process.execPath), '..');
  const inc = join(prefix, 'include', 'node');
  if (!existsSync(join(inc, 'node_api.h')) || !existsSync(join(inc, 'common.gypi'))) return null;
  try {
    const h = readFileSync(join(inc, 'node_version.h'), 'utf8');
    const v = ['MAJOR', 'MINOR', 'PATCH'].map((k) => h.match(new RegExp(`define NODE_${k}_VERSION (\\d+)`))?.[1]);
    if (`v${v.join('.')}` !== process.version) return null;
  } catch {
    return null;
  }
  return prefix;
}

// 4. Load the freshly built addon in a child process and check a BIP-340
// test vector (valid) and the same vector with one bit flipped (invalid).
const SELF_TEST = `
const a = require(${JSON.stringify(addonPath)});
const h = (s) => Buffer.from(s, 'hex');
const msg = h('243f6a8885a308d313198a2e03707344a4093822299f31d0082efa98ec4e6c89');
const pub = h('dff1d77f2a671c5f36183726db2341be58feae1da2deced843240f7b502ba659');
const sig = h('6896bd60eeae296db48a229ff71dfe071bde413e6d43f917dc8dcf8c78de33418906d11ac976abccb20b091292bff4ea897efcb639ea871cfa95f6de339e4b0a');
const bad = Buffer.from(sig); bad[63] ^= 1;
const batch = Buffer.concat([msg, pub, sig, msg, pub, bad]);
const r = a.verifyBatch(batch, 2);
if (a.verify(msg, pub, sig) !== true || a.verify(msg, pub, bad) !== false || r[0] !== 1 || r[1] !== 0) {
  console.error('self-test mismatch'); process.exit(3);
}
`;

function main() {
  rmSync(logPath, { force: true }); // never leave a log from an older run
  if (/^(1|true|yes)$/i.test(process.env.PAIDRELAY_SKIP_NATIVE ?? '')) {
    unavailable('PAIDRELAY_SKIP_NATIVE is set');
  }

  const missing = preflight();
  if (missing) unavailable(missing);

  const gyp = findNodeGyp();
  if (!gyp) unavailable('node-gyp not found; run the install through pnpm/npm or add node-gyp');
  const [gypCmd, gypPre] = gyp;

  const args = [...gypPre, 'rebuild', '--release'];
  const nodedir = localNodeDir();
  if (nodedir) args.push(`--nodedir=${nodedir}`);

  const r = run(gypCmd, args, { timeout: 5 * 60_000 });
  const log = `$ ${gypCmd} ${args.join(' ')}\n${r.stdout ?? ''}${r.stderr ?? ''}${r.error ? `\n${r.error}\n` : ''}`;
  try {
    writeFileSync(logPath, log);
  } catch {
    /* read-only tree: the log is only a convenience */
  }
  if (verbose) process.stderr.write(log);
  if (r.error || r.status !== 0 || !existsSync(addonPath)) {
    const why = r.error ? String(r.error.code ?? r.error.message) : `exit ${r.status}`;
    unavailable(`node-gyp build failed (${why}), see packages/secp256k1/native-build.log`);
  }

  const t = run(process.execPath, ['-e', SELF_TEST], { timeout: 60_000 });
  if (t.status !== 0) {
    const why = `${t.stderr ?? ''}`.trim().split('\n').filter(Boolean).pop() ?? `exit ${t.status ?? t.signal}`;
    unavailable(`built addon failed to load or self-test: ${why}`);
  }

  const ver = run('pkg-config', ['--modversion', 'libsecp256k1']);
  const libv = !ver.error && ver.status === 0 ? ` ${ver.stdout.trim()}` : '';
  console.log(`[${PKG}] native verifier built (libsecp256k1${libv}): build/Release/secp256k1_verify.node`);
}

try {
  main();
} catch (err) {
  unavailable(`unexpected error: ${err?.message ? err.message : err}`);
}
