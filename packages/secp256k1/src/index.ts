/**
 * @paidrelay/secp256k1 — BIP-340 Schnorr signature verification for Nostr.
 *
 * Two backends with the same semantics (signature over the 32-byte event id;
 * the id-vs-content sha256 check is done by the caller):
 *  - native: our N-API addon (src/verify.c) over the system libsecp256k1,
 *    built at install time into build/Release/secp256k1_verify.node;
 *  - wasm:   libsecp256k1 compiled to WebAssembly, shipped by nostr-wasm.
 *
 * `loadVerifier()` prefers native and falls back to wasm when the addon was
 * not built or cannot be loaded. `SECP256K1_BACKEND=wasm|native` overrides the
 * preference passed in `opts`; `REQUIRE_NATIVE_SECP256K1=1` turns the
 * fallback into an error.
 */
import { isHex128, isHex64 } from '@paidrelay/nostr';
import { createRequire } from 'node:module';

export type Backend = 'native' | 'wasm';

/** What is verified: hex strings as they appear in a Nostr event. */
export interface SigItem {
  id: string;
  pubkey: string;
  sig: string;
}

/** Only the signature fields of an event are read; any Nostr event object fits. */
export type NostrEvent = SigItem;

export interface Verifier {
  backend: Backend;
  /**
   * Verifies each item's BIP-340 signature over its 32-byte id.
   * Returns one boolean per item, in order. Never throws: malformed input
   * (not 64/64/128 lowercase hex chars, non-strings, missing fields) is false.
   */
  verifyBatch(items: readonly SigItem[]): boolean[];
  /** Same as verifyBatch for full events (only id, pubkey and sig are read). */
  verifyEvents(events: readonly NostrEvent[]): boolean[];
  /** When native was preferred but is not in use: why. */
  nativeError?: string;
}

export interface LoadOptions {
  /** Default 'native'. Overridden by env SECP256K1_BACKEND=wasm|native. */
  prefer?: Backend;
}

/** The raw addon API (build/Release/secp256k1_verify.node). */
export interface NativeAddon {
  /** false for wrong lengths; TypeError for non-Uint8Array arguments. */
  verify(msg32: Uint8Array, pub32: Uint8Array, sig64: Uint8Array): boolean;
  /** buf: n records of 128 bytes (32 msg | 32 x-only pubkey | 64 sig) -> n bytes of 1/0. */
  verifyBatch(buf: Uint8Array, n: number): Uint8Array;
  version: string;
}

export const RECORD_LEN = 128;

/** True when the item has well-formed lowercase hex id (32 B), pubkey (32 B), sig (64 B). */
export function isWellFormed(item: unknown): item is SigItem {
  if (item === null || typeof item !== 'object') return false;
  const { id, pubkey, sig } = item as Record<string, unknown>;
  return typeof id === 'string' && typeof pubkey === 'string' && typeof sig === 'string' && isHex64(id) && isHex64(pubkey) && isHex128(sig);
}

// ---------------------------------------------------------------- native ---

let nativeAddon: NativeAddon | undefined;
let nativeErr: string | undefined;

/** Loads the native addon (cached). Throws with the reason when unavailable. */
export function loadNativeAddon(): NativeAddon {
  if (nativeAddon) return nativeAddon;
  if (nativeErr !== undefined) throw new Error(nativeErr);
  try {
    const addon = createRequire(import.meta.url)('../build/Release/secp256k1_verify.node') as NativeAddon;
    if (typeof addon?.verifyBatch !== 'function' || typeof addon.verify !== 'function') {
      throw new Error('unexpected exports');
    }
    nativeAddon = addon;
    return addon;
  } catch (err) {
    const msg = err instanceof Error ? err.message.split('\n')[0] : String(err);
    nativeErr = `native secp256k1 addon unavailable: ${msg}`;
    throw new Error(nativeErr);
  }
}

const SCRATCH_MAX = 8192; // records (1 MiB)
let scratch = Buffer.alloc(0);

function nativeVerifier(addon: NativeAddon): Verifier {
  const verifyBatch = (items: readonly SigItem[]): boolean[] => {
    if (!items || typeof items.length !== 'number') return [];
    const total = items.length;
    const out = new Array<boolean>(total).fill(false);
    if (total === 0) return out;
    let buf = scratch;
    if (buf.length < total * RECORD_LEN) {
      // keep at most SCRATCH_MAX records around; bigger batches get a one-off buffer
      buf = Buffer.allocUnsafeSlow(Math.max(total, 256) * RECORD_LEN);
      if (total <= SCRATCH_MAX) scratch = buf;
    }
    const slot = new Int32Array(total); // packed record k -> item index
    let k = 0;
    for (let i = 0; i < total; i++) {
      const it = items[i];
      if (!isWellFormed(it)) continue;
      const off = k * RECORD_LEN;
      buf.write(it.id, off, 32, 'hex');
      buf.write(it.pubkey, off + 32, 32, 'hex');
      buf.write(it.sig, off + 64, 64, 'hex');
      slot[k++] = i;
    }
    if (k === 0) return out;
    const res = addon.verifyBatch(buf, k);
    for (let j = 0; j < k; j++) out[slot[j]] = res[j] === 1;
    return out;
  };
  return { backend: 'native', verifyBatch, verifyEvents: verifyBatch };
}

// ------------------------------------------------------------------ wasm ---

/**
 * nostr-wasm only exposes `verifyEvent(event)`, which also recomputes the id
 * from the event content. We need "signature over a given 32-byte id" (same
 * as native), so we keep a handle on the libsecp256k1 WebAssembly instance
 * nostr-wasm creates (captured while `initNostrWasm()` instantiates it) and
 * call its xonly_pubkey_parse / schnorrsig_verify exports directly. The
 * export names are the (minified) ones of nostr-wasm 0.1.x, see its
 * dist/nostr.js `map_wasm_exports`; a self-test at load time guards them.
 */
interface WasmRaw {
  memory: WebAssembly.Memory;
  malloc(n: number): number;
  context_create(flags: number): number;
  xonly_pubkey_parse(ctx: number, out64: number, in32: number): number;
  schnorrsig_verify(ctx: number, sig64: number, msg: number, msglen: number, pk: number): number;
}

const WASM_EXPORTS = { memory: 'g', malloc: 'i', context_create: 'o', xonly_pubkey_parse: 'p', schnorrsig_verify: 'u' } as const;
const CONTEXT_VERIFY = 257; // == CONTEXT_NONE for libsecp256k1 >= 0.2

function asWasmRaw(instance: WebAssembly.Instance | undefined): WasmRaw | undefined {
  const ex = instance?.exports as Record<string, unknown> | undefined;
  if (!ex) return undefined;
  const memory = ex[WASM_EXPORTS.memory];
  if (!(memory instanceof WebAssembly.Memory)) return undefined;
  const fns = ['malloc', 'context_create', 'xonly_pubkey_parse', 'schnorrsig_verify'] as const;
  if (!fns.every((f) => typeof ex[WASM_EXPORTS[f]] === 'function')) return undefined;
  return {
    memory,
    malloc: ex[WASM_EXPORTS.malloc] as WasmRaw['malloc'],
    context_create: ex[WASM_EXPORTS.context_create] as WasmRaw['context_create'],
    xonly_pubkey_parse: ex[WASM_EXPORTS.xonly_pubkey_parse] as WasmRaw['xonly_pubkey_parse'],
    schnorrsig_verify: ex[WASM_EXPORTS.schnorrsig_verify] as WasmRaw['schnorrsig_verify'],
  };
}

async function instantiateNostrWasm(): Promise<WasmRaw> {
  const { initNostrWasm } = await import('nostr-wasm');
  type Instantiate = (...args: unknown[]) => Promise<WebAssembly.WebAssemblyInstantiatedSource | WebAssembly.Instance>;
  const WA = WebAssembly as unknown as { instantiate: Instantiate };
  const original = WA.instantiate;
  let raw: WasmRaw | undefined;
  const spy: Instantiate = async function (this: unknown, ...args: unknown[]) {
    const res = await original.apply(this, args);
    const inst = res instanceof WebAssembly.Instance ? res : res.instance;
    raw ??= asWasmRaw(inst);
    return res;
  };
  WA.instantiate = spy;
  try {
    await initNostrWasm();
  } finally {
    if (WA.instantiate === spy) WA.instantiate = original;
  }
  if (!raw) throw new Error('nostr-wasm: could not reach the libsecp256k1 wasm exports (unsupported nostr-wasm version?)');
  return raw;
}

function wasmVerifier(raw: WasmRaw): Verifier {
  const ctx = raw.context_create(CONTEXT_VERIFY);
  const pMsg = raw.malloc(32);
  const pPub = raw.malloc(32);
  const pSig = raw.malloc(64);
  const pKey = raw.malloc(64); // secp256k1_xonly_pubkey
  if (!ctx || !pMsg || !pPub || !pSig || !pKey) throw new Error('nostr-wasm: allocation failed');
  let heap = Buffer.from(raw.memory.buffer);

  const verifyOne = (it: SigItem): boolean => {
    if (heap.buffer !== raw.memory.buffer) heap = Buffer.from(raw.memory.buffer); // memory grew
    heap.write(it.id, pMsg, 32, 'hex');
    heap.write(it.pubkey, pPub, 32, 'hex');
    heap.write(it.sig, pSig, 64, 'hex');
    if (raw.xonly_pubkey_parse(ctx, pKey, pPub) !== 1) return false;
    return raw.schnorrsig_verify(ctx, pSig, pMsg, 32, pKey) === 1;
  };

  const verifyBatch = (items: readonly SigItem[]): boolean[] => {
    if (!items || typeof items.length !== 'number') return [];
    const out = new Array<boolean>(items.length);
    for (let i = 0; i < items.length; i++) {
      const it = items[i];
      out[i] = isWellFormed(it) && verifyOne(it);
    }
    return out;
  };
  return { backend: 'wasm', verifyBatch, verifyEvents: verifyBatch };
}

// BIP-340 test vector #1 (bitcoin/bips bip-0340/test-vectors.csv).
const SELF_TEST: SigItem = {
  id: '243f6a8885a308d313198a2e03707344a4093822299f31d0082efa98ec4e6c89',
  pubkey: 'dff1d77f2a671c5f36183726db2341be58feae1da2deced843240f7b502ba659',
  sig: '6896bd60eeae296db48a229ff71dfe071bde413e6d43f917dc8dcf8c78de33418906d11ac976abccb20b091292bff4ea897efcb639ea871cfa95f6de339e4b0a',
};

function selfTest(v: Verifier): void {
  const bad = { ...SELF_TEST, sig: SELF_TEST.sig.slice(0, 127) + (SELF_TEST.sig.endsWith('a') ? 'b' : 'a') };
  const r = v.verifyBatch([SELF_TEST, bad]);
  if (r[0] !== true || r[1] !== false) throw new Error(`${v.backend} secp256k1 backend failed its self-test`);
}

let wasmPromise: Promise<Verifier> | undefined;

function loadWasmVerifier(): Promise<Verifier> {
  wasmPromise ??= instantiateNostrWasm().then((raw) => {
    const v = wasmVerifier(raw);
    selfTest(v);
    return v;
  });
  wasmPromise.catch(() => {
    wasmPromise = undefined; // allow a retry
  });
  return wasmPromise;
}

let nativeVerifierCache: Verifier | undefined;

function loadNativeVerifier(): Verifier {
  if (!nativeVerifierCache) {
    const v = nativeVerifier(loadNativeAddon());
    selfTest(v);
    nativeVerifierCache = v;
  }
  return nativeVerifierCache;
}

/** The backend asked for: env SECP256K1_BACKEND (wasm|native) beats opts.prefer. */
export function resolvePreference(opts?: LoadOptions): Backend {
  const env = process.env.SECP256K1_BACKEND?.trim().toLowerCase();
  if (env === 'wasm' || env === 'native') return env;
  return opts?.prefer === 'wasm' ? 'wasm' : 'native';
}

/** REQUIRE_NATIVE_SECP256K1=1: a native preference must not fall back to wasm. */
function nativeRequired(): boolean {
  return /^(1|true|yes)$/i.test(process.env.REQUIRE_NATIVE_SECP256K1?.trim() ?? '');
}

/**
 * Returns a verifier: native when preferred (the default) and available,
 * otherwise nostr-wasm (then `nativeError` says why native is not used).
 * With REQUIRE_NATIVE_SECP256K1=1 the fallback is an error instead (an
 * explicit wasm preference is still honoured).
 */
export async function loadVerifier(opts?: LoadOptions): Promise<Verifier> {
  if (resolvePreference(opts) === 'native') {
    try {
      return loadNativeVerifier();
    } catch (err) {
      const reason = err instanceof Error ? err.message : String(err);
      if (nativeRequired()) throw new Error(`${reason} (REQUIRE_NATIVE_SECP256K1 is set)`);
      const wasm = await loadWasmVerifier();
      return { ...wasm, nativeError: reason };
    }
  }
  return loadWasmVerifier();
}
