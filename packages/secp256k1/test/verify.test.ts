import { Worker } from 'node:worker_threads';
import { fileURLToPath } from 'node:url';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { finalizeEvent, generateSecretKey } from 'nostr-tools/pure';
import {
  loadNativeAddon,
  loadVerifier,
  resolvePreference,
  type Backend,
  type NativeAddon,
  type NostrEvent,
  type SigItem,
  type Verifier,
} from '../src/index.ts';

// Where the native addon is required (CI, or REQUIRE_NATIVE_SECP256K1=1) a missing addon is a
// test FAILURE. On a laptop without libsecp256k1-dev the native tests skip with a warning
// (the relay then uses nostr-wasm), unless required; PAIDRELAY_ALLOW_NO_NATIVE=1 allows it anywhere.
const requireNative =
  process.env.PAIDRELAY_ALLOW_NO_NATIVE !== '1' &&
  (!!process.env.CI || /^(1|true|yes)$/i.test(process.env.REQUIRE_NATIVE_SECP256K1?.trim() ?? ''));
const allowNoNative = !requireNative;
let nativeLoadError: string | undefined;
try {
  loadNativeAddon();
} catch (err) {
  nativeLoadError = (err as Error).message;
}
const skipNative = nativeLoadError !== undefined && allowNoNative;
if (skipNative) console.warn(`secp256k1: native addon not available (${nativeLoadError}); native tests skipped`);

// Tests choose backends explicitly: neutralise these variables from the
// environment (CI sets REQUIRE_NATIVE_SECP256K1=1) while this file runs, and
// restore them afterwards.
const ENV_VARS = ['SECP256K1_BACKEND', 'REQUIRE_NATIVE_SECP256K1'] as const;
const savedEnv = Object.fromEntries(ENV_VARS.map((k) => [k, process.env[k]]));
const clearEnv = () => ENV_VARS.forEach((k) => delete process.env[k]);
beforeAll(clearEnv);
afterEach(clearEnv);
afterAll(() => {
  for (const k of ENV_VARS) {
    if (savedEnv[k] === undefined) delete process.env[k];
    else process.env[k] = savedEnv[k];
  }
});

function makeEvents(n: number): NostrEvent[] {
  const keys = [generateSecretKey(), generateSecretKey(), generateSecretKey()];
  const out: NostrEvent[] = [];
  for (let i = 0; i < n; i++) {
    out.push(
      finalizeEvent({ kind: 1, created_at: 1_700_000_000 + i, tags: [['t', `n${i}`]], content: `hello ${i} ✓` }, keys[i % keys.length]),
    );
  }
  return out;
}

/** Flips the lowest bit of the hex digit at char position `pos`. */
function flipHex(hex: string, pos: number): string {
  const d = (parseInt(hex[pos], 16) ^ 1).toString(16);
  return hex.slice(0, pos) + d + hex.slice(pos + 1);
}

// Valid BIP-340 test vectors 0-4 (bitcoin/bips bip-0340/test-vectors.csv);
// cross-checked against @noble/curves' schnorr.verify (vector 0 also re-signed).
const VALID: Array<{ pub: string; msg: string; sig: string }> = [
  {
    pub: 'f9308a019258c31049344f85f89d5229b531c845836f99b08601f113bce036f9',
    msg: '0000000000000000000000000000000000000000000000000000000000000000',
    sig: 'e907831f80848d1069a5371b402410364bdf1c5f8307b0084c55f1ce2dca821525f66a4a85ea8b71e482a74f382d2ce5ebeee8fdb2172f477df4900d310536c0',
  },
  {
    pub: 'dff1d77f2a671c5f36183726db2341be58feae1da2deced843240f7b502ba659',
    msg: '243f6a8885a308d313198a2e03707344a4093822299f31d0082efa98ec4e6c89',
    sig: '6896bd60eeae296db48a229ff71dfe071bde413e6d43f917dc8dcf8c78de33418906d11ac976abccb20b091292bff4ea897efcb639ea871cfa95f6de339e4b0a',
  },
  {
    pub: 'dd308afec5777e13121fa72b9cc1b7cc0139715309b086c960e18fd969774eb8',
    msg: '7e2d58d8b3bcdf1abadec7829054f90dda9805aab56c77333024b9d0a508b75c',
    sig: '5831aaeed7b44bb74e5eab94ba9d4294c49bcf2a60728d8b4c200f50dd313c1bab745879a5ad954a72c45a91c3a51d3c7adea98d82f8481e0e1e03674a6f3fb7',
  },
  {
    pub: '25d1dff95105f5253c4022f628a996ad3a0d95fbf21d468a1b33f8c160d8f517',
    msg: 'ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff',
    sig: '7eb0509757e246f19449885651611cb965ecc1a187dd51b64fda1edc9637d5ec97582b9cb13db3933705b32ba982af5af25fd78881ebb32771fc5922efc66ea3',
  },
  {
    pub: 'd69c3509bb99e412e68b0fe8544e72837dfa30746d8be2aa65975f29d22dc7b9',
    msg: '4df3c3f68fcc83b27e9d42c90431a72499f17875c81a599b566c9889b9696703',
    sig: '00000000000000000000003b78ce563f89a0ed9414f5aa28ad0d96d6795f9c6376afb1548af603b3eb45c9f8207dee1060cb71c04e80f593060b07d28308d7f4',
  },
];

// Invalid edge cases built from vector 1 (the kinds BIP-340 vectors 5-14 cover).
const FIELD_P = 0xfffffffffffffffffffffffffffffffffffffffffffffffffffffffefffffc2fn;
const ORDER_N = 0xfffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364141n;
const hex32 = (x: bigint) => x.toString(16).padStart(64, '0');
const NOT_ON_CURVE_X = 'eefdea4cdb677750a420fee807eacf21eb9898ae79b9768766e4faa04a2d4a34'; // x^3+7 is not a square mod p
const V1 = VALID[1];
const V1_R = V1.sig.slice(0, 64);
const V1_S = BigInt('0x' + V1.sig.slice(64));
const INVALID: Array<{ what: string; pub: string; msg: string; sig: string }> = [
  { what: 'public key not on the curve', pub: NOT_ON_CURVE_X, msg: V1.msg, sig: V1.sig },
  { what: 'public key equal to the field size', pub: hex32(FIELD_P), msg: V1.msg, sig: V1.sig },
  { what: 'public key exceeds the field size', pub: hex32(FIELD_P + 1n), msg: V1.msg, sig: V1.sig },
  { what: 'negated s value', pub: V1.pub, msg: V1.msg, sig: V1_R + hex32(ORDER_N - V1_S) },
  { what: 's + n (not reduced)', pub: V1.pub, msg: V1.msg, sig: V1_R + hex32(V1_S + ORDER_N) },
  { what: 's equal to the curve order', pub: V1.pub, msg: V1.msg, sig: V1_R + hex32(ORDER_N) },
  { what: 's = 0', pub: V1.pub, msg: V1.msg, sig: V1_R + hex32(0n) },
  { what: 'r equal to the field size', pub: V1.pub, msg: V1.msg, sig: hex32(FIELD_P) + V1.sig.slice(64) },
  { what: 'r not an x coordinate on the curve', pub: V1.pub, msg: V1.msg, sig: NOT_ON_CURVE_X + V1.sig.slice(64) },
  { what: 'r = 0', pub: V1.pub, msg: V1.msg, sig: hex32(0n) + V1.sig.slice(64) },
  { what: 'other message', pub: V1.pub, msg: VALID[2].msg, sig: V1.sig },
  { what: 'signature of another key', pub: V1.pub, msg: V1.msg, sig: VALID[2].sig },
  { what: 'r and s swapped', pub: V1.pub, msg: V1.msg, sig: V1.sig.slice(64) + V1_R },
  { what: 'all-zero signature', pub: V1.pub, msg: V1.msg, sig: '0'.repeat(128) },
  { what: 'all-zero public key', pub: '0'.repeat(64), msg: V1.msg, sig: V1.sig },
];
const VECTORS = [...VALID.map((t) => ({ ...t, ok: true, what: 'valid' })), ...INVALID.map((t) => ({ ...t, ok: false }))];

const MALFORMED: unknown[] = [null, undefined, 42, 'not-an-object', {}, { id: 'ab', pubkey: 'cd', sig: 'ef' }];

function malformedVariants(good: SigItem): unknown[] {
  const out: unknown[] = [...MALFORMED];
  for (const field of ['id', 'pubkey', 'sig'] as const) {
    const v = good[field];
    out.push(
      { ...good, [field]: v.toUpperCase() }, // NIP-01 hex is lowercase
      { ...good, [field]: v.slice(1) }, // odd length
      { ...good, [field]: v.slice(2) }, // one byte short
      { ...good, [field]: v + '00' }, // one byte long
      { ...good, [field]: 'g' + v.slice(1) }, // non-hex char
      { ...good, [field]: v.slice(0, -1) + 'z' },
      { ...good, [field]: ' ' + v.slice(1) },
      { ...good, [field]: '' },
      { ...good, [field]: 123 },
      { ...good, [field]: null },
      { ...good, [field]: undefined },
      { ...good, [field]: Buffer.from(v, 'hex') },
    );
  }
  return out;
}

const BACKENDS: Backend[] = ['native', 'wasm'];

describe('native addon availability', () => {
  it.skipIf(skipNative)('the native addon is built and loads (required in CI and with REQUIRE_NATIVE_SECP256K1=1)', () => {
    expect(nativeLoadError, nativeLoadError).toBeUndefined();
  });
});

for (const backend of BACKENDS) {
  describe.skipIf(backend === 'native' && skipNative)(`${backend} backend`, () => {
    let v: Verifier;
    let events: NostrEvent[];

    beforeAll(async () => {
      v = await loadVerifier({ prefer: backend });
      if (v.backend !== backend) {
        throw new Error(`expected the ${backend} backend, got ${v.backend}: ${v.nativeError ?? ''}`);
      }
      events = makeEvents(60);
    });

    it('reports its backend', () => {
      expect(v.backend).toBe(backend);
      expect(v.nativeError).toBeUndefined();
    });

    it('accepts valid signatures of real nostr-tools events', () => {
      expect(v.verifyBatch(events)).toEqual(events.map(() => true));
      expect(v.verifyEvents(events)).toEqual(events.map(() => true));
      expect(v.verifyBatch(events.map(({ id, pubkey, sig }) => ({ id, pubkey, sig })))).toEqual(events.map(() => true));
      expect(v.verifyBatch([events[0]])).toEqual([true]);
    });

    it('rejects a flipped bit in sig, id or pubkey', () => {
      const e = events[0];
      const bad: SigItem[] = [];
      for (const pos of [0, 1, 31, 63, 64, 65, 100, 127]) bad.push({ ...e, sig: flipHex(e.sig, pos) });
      for (const pos of [0, 17, 62, 63]) bad.push({ ...e, id: flipHex(e.id, pos) });
      for (const pos of [0, 17, 62, 63]) bad.push({ ...e, pubkey: flipHex(e.pubkey, pos) });
      expect(v.verifyBatch(bad)).toEqual(bad.map(() => false));
      // one at a time too (no cross-item state)
      for (const b of bad) expect(v.verifyBatch([b])).toEqual([false]);
      // a signature from another key / another event
      expect(
        v.verifyBatch([
          { ...e, sig: events[1].sig },
          { ...e, pubkey: events[1].pubkey },
        ]),
      ).toEqual([false, false]);
    });

    it('returns false for malformed input without throwing', () => {
      const bad = malformedVariants(events[0]);
      let res: boolean[] = [];
      expect(() => {
        res = v.verifyBatch(bad as SigItem[]);
      }).not.toThrow();
      expect(res).toEqual(bad.map(() => false));
      for (const b of bad) expect(v.verifyBatch([b as SigItem])).toEqual([false]);
      expect(v.verifyEvents(bad as NostrEvent[])).toEqual(bad.map(() => false));
    });

    it('gives the right per-item answer in mixed batches', () => {
      const items: SigItem[] = [];
      const expected: boolean[] = [];
      const bad = malformedVariants(events[1]);
      for (let i = 0; i < 400; i++) {
        const e = events[i % events.length];
        switch (i % 7) {
          case 0:
          case 3:
          case 5:
            items.push(e);
            expected.push(true);
            break;
          case 1:
            items.push({ ...e, sig: flipHex(e.sig, i % 128) });
            expected.push(false);
            break;
          case 2:
            items.push(bad[i % bad.length] as SigItem);
            expected.push(false);
            break;
          case 4:
            items.push({ ...e, id: flipHex(e.id, i % 64) });
            expected.push(false);
            break;
          default:
            items.push({ ...e, pubkey: flipHex(e.pubkey, i % 64) });
            expected.push(false);
        }
      }
      expect(v.verifyBatch(items)).toEqual(expected);
      // a smaller batch after a large one (scratch buffer reuse)
      expect(v.verifyBatch(items.slice(0, 9))).toEqual(expected.slice(0, 9));
      // all-invalid batch
      expect(v.verifyBatch(items.filter((_, i) => !expected[i]))).toEqual(expected.filter((x) => !x));
    });

    it('handles the empty batch (and a non-array without throwing)', () => {
      expect(v.verifyBatch([])).toEqual([]);
      expect(v.verifyEvents([])).toEqual([]);
      expect(v.verifyBatch(null as unknown as SigItem[])).toEqual([]);
      expect(v.verifyBatch(undefined as unknown as SigItem[])).toEqual([]);
    });

    it('handles a batch larger than the reusable scratch buffer', () => {
      const items: SigItem[] = [];
      for (let i = 0; i < 9000; i++) items.push(i % 1000 === 7 ? events[i % events.length] : { id: 'x', pubkey: 'y', sig: 'z' });
      const res = v.verifyBatch(items);
      expect(res.length).toBe(9000);
      expect(res.filter(Boolean).length).toBe(9);
      expect(res[7] && res[1007] && res[8007]).toBe(true);
    });

    it('agrees with the BIP-340 test vectors and rejects the invalid edge cases', () => {
      const items = VECTORS.map((t) => ({ id: t.msg, pubkey: t.pub, sig: t.sig }));
      const res = v.verifyBatch(items);
      expect(VECTORS.map((t, i) => `${t.what}: ${res[i]}`)).toEqual(VECTORS.map((t) => `${t.what}: ${t.ok}`));
    });
  });
}

describe('backends agree', () => {
  it.skipIf(skipNative)('native and wasm return identical results on a mixed batch', async () => {
    const native = await loadVerifier({ prefer: 'native' });
    const wasm = await loadVerifier({ prefer: 'wasm' });
    expect(native.backend).toBe('native');
    const events = makeEvents(30);
    const items: SigItem[] = events.flatMap((e, i) => [e, { ...e, sig: flipHex(e.sig, i * 4) }, { ...e, id: flipHex(e.id, i * 2) }]);
    items.push(...VECTORS.map((t) => ({ id: t.msg, pubkey: t.pub, sig: t.sig })));
    const a = native.verifyBatch(items);
    expect(wasm.verifyBatch(items)).toEqual(a);
    expect(a.filter(Boolean).length).toBe(30 + 5);
  });
});

describe('backend selection', () => {
  it('SECP256K1_BACKEND overrides the preference', async () => {
    process.env.SECP256K1_BACKEND = 'wasm';
    expect(resolvePreference({ prefer: 'native' })).toBe('wasm');
    expect((await loadVerifier({ prefer: 'native' })).backend).toBe('wasm');
    expect((await loadVerifier()).backend).toBe('wasm');
    process.env.SECP256K1_BACKEND = 'native';
    expect(resolvePreference({ prefer: 'wasm' })).toBe('native');
    process.env.SECP256K1_BACKEND = 'bogus';
    expect(resolvePreference({ prefer: 'wasm' })).toBe('wasm');
    expect(resolvePreference()).toBe('native');
    delete process.env.SECP256K1_BACKEND;
    expect(resolvePreference()).toBe('native');
  });

  it.skipIf(skipNative)('SECP256K1_BACKEND=native beats prefer: wasm', async () => {
    process.env.SECP256K1_BACKEND = 'native';
    expect((await loadVerifier({ prefer: 'wasm' })).backend).toBe('native');
  });

  it('REQUIRE_NATIVE_SECP256K1=1 turns the wasm fallback into an error', async () => {
    process.env.REQUIRE_NATIVE_SECP256K1 = '1';
    if (nativeLoadError) {
      await expect(loadVerifier()).rejects.toThrow(/REQUIRE_NATIVE_SECP256K1/);
    } else {
      expect((await loadVerifier()).backend).toBe('native');
    }
    expect((await loadVerifier({ prefer: 'wasm' })).backend).toBe('wasm'); // explicit wasm is still allowed
  });

  it('prefer: wasm gives wasm; the default prefers native', async () => {
    expect((await loadVerifier({ prefer: 'wasm' })).backend).toBe('wasm');
    const def = await loadVerifier();
    expect(def.backend).toBe(nativeLoadError ? 'wasm' : 'native');
    if (nativeLoadError) expect(def.nativeError).toContain('unavailable');
  });
});

describe.skipIf(skipNative)('raw native addon', () => {
  let addon: NativeAddon;
  const t = VALID[1];
  const msg = Buffer.from(t.msg, 'hex');
  const pub = Buffer.from(t.pub, 'hex');
  const sig = Buffer.from(t.sig, 'hex');

  beforeAll(() => {
    addon = loadNativeAddon();
  });

  it('verify(msg32, pub32, sig64)', () => {
    expect(addon.verify(msg, pub, sig)).toBe(true);
    expect(addon.verify(new Uint8Array(msg), new Uint8Array(pub), new Uint8Array(sig))).toBe(true);
    const bad = Buffer.from(sig);
    bad[10] ^= 0x80;
    expect(addon.verify(msg, pub, bad)).toBe(false);
    expect(addon.verify(msg.subarray(1), pub, sig)).toBe(false); // wrong lengths -> false
    expect(addon.verify(msg, pub, sig.subarray(0, 63))).toBe(false);
    expect(() => addon.verify('x' as unknown as Uint8Array, pub, sig)).toThrow(TypeError);
    expect(() => (addon.verify as (...a: unknown[]) => boolean)(msg, pub)).toThrow(TypeError);
  });

  it('verifyBatch(buf, n)', () => {
    const bad = Buffer.from(sig);
    bad[0] ^= 1;
    const buf = Buffer.concat([msg, pub, sig, msg, pub, bad, msg, pub, sig]);
    const r = addon.verifyBatch(buf, 3);
    expect(r).toBeInstanceOf(Uint8Array);
    expect(Array.from(r)).toEqual([1, 0, 1]);
    expect(Array.from(addon.verifyBatch(buf, 1))).toEqual([1]); // n < capacity
    expect(addon.verifyBatch(buf, 0).length).toBe(0);
    expect(addon.verifyBatch(Buffer.alloc(0), 0).length).toBe(0);
    expect(() => addon.verifyBatch(buf, 4)).toThrow(RangeError);
    expect(() => addon.verifyBatch(buf, -1)).toThrow(RangeError);
    expect(() => addon.verifyBatch(buf, 1.5)).toThrow(RangeError);
    expect(() => addon.verifyBatch(buf, Number.NaN)).toThrow(RangeError);
    expect(() => addon.verifyBatch(buf, '1' as unknown as number)).toThrow(TypeError);
    expect(() => addon.verifyBatch([1, 2] as unknown as Uint8Array, 0)).toThrow(TypeError);
    expect(() => addon.verifyBatch(new Uint16Array(128) as unknown as Uint8Array, 1)).toThrow(TypeError);
  });

  it('loads and verifies in a worker thread (context-aware module)', async () => {
    const addonPath = fileURLToPath(new URL('../build/Release/secp256k1_verify.node', import.meta.url));
    const code = `
      const { parentPort, workerData } = require('node:worker_threads');
      const a = require(workerData.addonPath);
      const h = (s) => Buffer.from(s, 'hex');
      parentPort.postMessage(a.verify(h(workerData.msg), h(workerData.pub), h(workerData.sig)));
    `;
    const w = new Worker(code, { eval: true, workerData: { addonPath, msg: t.msg, pub: t.pub, sig: t.sig } });
    const result = await new Promise((resolve, reject) => {
      w.once('message', resolve);
      w.once('error', reject);
    });
    await w.terminate();
    expect(result).toBe(true);
  });
});
