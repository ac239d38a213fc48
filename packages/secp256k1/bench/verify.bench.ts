/**
 * Signature verification throughput, one thread (verifies/s).
 *
 *   npx tsx packages/secp256k1/bench/verify.bench.ts
 *   BENCH_EVENTS=20000 BENCH_BATCH=500 BENCH_REPS=3 npx tsx packages/secp256k1/bench/verify.bench.ts
 *
 * Prints ONE JSON line:
 *   native_batch      Verifier.verifyBatch (hex strings in, batches of BENCH_BATCH)
 *   native_single     per event: hex -> Buffer x3 + addon.verify()
 *   native_raw_batch  addon.verifyBatch() over one pre-packed buffer (C only)
 *   wasm              Verifier.verifyBatch on the nostr-wasm backend
 *   wasm_verifyEvent  nostr-wasm's own verifyEvent() (also re-hashes the id)
 * Each figure is the best of BENCH_REPS wall-clock runs over all events;
 * cpu_time_rates gives the same per CPU-second (process.cpuUsage), and
 * loadavg_1m the 1-minute load before/after: on a busy machine the wall-clock
 * figures drop. A backend that is unavailable is reported as null (with
 * native_error).
 */
import { loadavg } from 'node:os';
import { performance } from 'node:perf_hooks';
import { initNostrWasm } from 'nostr-wasm';
import { loadNativeAddon, loadVerifier, RECORD_LEN, type NostrEvent, type Verifier } from '../src/index.ts';

const N = Number(process.env.BENCH_EVENTS ?? 20_000);
const BATCH = Number(process.env.BENCH_BATCH ?? 500);
const REPS = Math.max(1, Number(process.env.BENCH_REPS ?? 3));

const setupStart = performance.now();
const loadBefore = loadavg()[0];
const nostr = await initNostrWasm();
const keys = Array.from({ length: 100 }, () => nostr.generateSecretKey());
const events: NostrEvent[] = [];
for (let i = 0; i < N; i++) {
  const ev = { kind: 1, created_at: 1_700_000_000 + i, tags: [['t', 'bench']], content: `bench event ${i}` } as NostrEvent;
  nostr.finalizeEvent(ev, keys[i % keys.length]);
  events.push(ev);
}

// verifies/s of CPU time (process.cpuUsage), less sensitive to other load on the machine
const cpuRates: Record<string, number> = {};

function best(name: string, fn: () => number): number {
  let rate = 0;
  let cpuRate = 0;
  for (let r = 0; r < REPS; r++) {
    const c0 = process.cpuUsage();
    const t0 = performance.now();
    const ok = fn();
    const dt = (performance.now() - t0) / 1000;
    const c = process.cpuUsage(c0);
    if (ok !== N) throw new Error(`only ${ok}/${N} signatures verified`);
    rate = Math.max(rate, N / dt);
    cpuRate = Math.max(cpuRate, N / ((c.user + c.system) / 1e6));
  }
  cpuRates[name] = Math.round(cpuRate);
  return Math.round(rate);
}

function batched(v: Verifier): number {
  let ok = 0;
  for (let i = 0; i < N; i += BATCH) {
    for (const r of v.verifyBatch(events.slice(i, i + BATCH))) if (r) ok++;
  }
  return ok;
}

const out: Record<string, unknown> = { events: N, batch: BATCH, reps: REPS, setup_s: Math.round(performance.now() - setupStart) / 1000 };

let nativeError: string | undefined;
try {
  const addon = loadNativeAddon();
  const native = await loadVerifier({ prefer: 'native' });
  if (native.backend !== 'native') throw new Error(native.nativeError ?? 'native backend not selected');
  batched(native); // warm-up
  out.native_batch = best('native_batch', () => batched(native));
  out.native_single = best('native_single', () => {
    let ok = 0;
    for (const e of events) {
      if (addon.verify(Buffer.from(e.id, 'hex'), Buffer.from(e.pubkey, 'hex'), Buffer.from(e.sig, 'hex'))) ok++;
    }
    return ok;
  });
  const packed = Buffer.alloc(N * RECORD_LEN);
  events.forEach((e, i) => {
    packed.write(e.id, i * RECORD_LEN, 'hex');
    packed.write(e.pubkey, i * RECORD_LEN + 32, 'hex');
    packed.write(e.sig, i * RECORD_LEN + 64, 'hex');
  });
  out.native_raw_batch = best('native_raw_batch', () => addon.verifyBatch(packed, N).reduce((a, b) => a + b, 0));
} catch (err) {
  nativeError = (err as Error).message;
  out.native_batch = out.native_single = out.native_raw_batch = null;
}

const wasm = await loadVerifier({ prefer: 'wasm' });
wasm.verifyBatch(events.slice(0, 1000)); // warm-up
out.wasm = best('wasm', () => batched(wasm));
out.wasm_verifyEvent = best('wasm_verifyEvent', () => {
  let ok = 0;
  for (const e of events) {
    try {
      nostr.verifyEvent(e);
      ok++;
    } catch {
      /* invalid */
    }
  }
  return ok;
});
if (typeof out.native_batch === 'number') out.native_batch_vs_wasm = Math.round((out.native_batch / (out.wasm as number)) * 10) / 10;
if (nativeError) out.native_error = nativeError;
out.cpu_time_rates = cpuRates;
out.loadavg_1m = [Math.round(loadBefore * 100) / 100, Math.round(loadavg()[0] * 100) / 100];
out.node = process.version;

console.log(JSON.stringify(out));
