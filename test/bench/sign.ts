import { createRequire } from 'node:module';
import { availableParallelism } from 'node:os';
import { pathToFileURL } from 'node:url';
import { Worker } from 'node:worker_threads';
import { finalizeEvent, generateSecretKey, getPublicKey } from 'nostr-tools/pure';
import type { NostrEvent } from './client.ts';

/**
 * Everything the bench publishes is signed before any timing starts. nostr-tools' pure-JS
 * signer manages only a few hundred events a second here, so the WebAssembly libsecp256k1
 * build that nostr-tools ships with (nostr-wasm) is used when it loads, on worker threads.
 */

export type Key = { sk: string; pubkey: string };

export function newKey(): Key {
  const sk = generateSecretKey();
  return { sk: Buffer.from(sk).toString('hex'), pubkey: getPublicKey(sk) };
}

/**
 * One author's events. `thread` events form threads of 10: every event carries an `e` tag to
 * its thread's first event (which itself points at the previous thread's first event), a `p`
 * tag and a `t` tag; `fanout` events carry only `t` and a sequence number in the content.
 */
export type SignJob =
  | { type: 'thread'; key: Key; count: number; runId: string; label: string; tTag: string; pTag: string }
  | { type: 'fanout'; key: Key; count: number; runId: string; tTag: string };

export const THREAD_LENGTH = 10;
const FILLER = ' The quick brown fox jumps over the lazy dog; a typical short note is about this long, give or take.';

type Finalize = (template: Omit<NostrEvent, 'id' | 'pubkey' | 'sig'>, sk: Uint8Array) => NostrEvent;

/** The event `j` of a thread job refers to (undefined for the very first). */
export function threadParent(j: number): number | undefined {
  if (j === 0) return undefined;
  return j % THREAD_LENGTH === 0 ? j - THREAD_LENGTH : j - (j % THREAD_LENGTH);
}

export function buildEvents(job: SignJob, finalize: Finalize): NostrEvent[] {
  const sk = new Uint8Array(Buffer.from(job.key.sk, 'hex'));
  const created_at = Math.floor(Date.now() / 1000);
  const out: NostrEvent[] = [];
  for (let j = 0; j < job.count; j++) {
    if (job.type === 'fanout') {
      out.push(finalize({ kind: 1, created_at, tags: [['t', job.tTag]], content: `fanout ${job.runId} ${j}` }, sk));
      continue;
    }
    const tags = [
      ['t', job.tTag],
      ['p', job.pTag],
    ];
    const parent = threadParent(j);
    if (parent !== undefined) tags.push(['e', out[parent].id]);
    out.push(finalize({ kind: 1, created_at, tags, content: `bench ${job.runId} ${job.label} ${j}.${FILLER}` }, sk));
  }
  return out;
}

/** The WebAssembly signer when nostr-wasm loads (it is nostr-tools' own dependency), else nostr-tools' JS one. */
export async function loadFinalize(): Promise<{ backend: string; finalize: Finalize }> {
  try {
    const req = createRequire(import.meta.url);
    const wasmPath = createRequire(req.resolve('nostr-tools')).resolve('nostr-wasm');
    const mod = (await import(pathToFileURL(wasmPath).href)) as {
      initNostrWasm: () => Promise<{ finalizeEvent(ev: object, sk: Uint8Array): void }>;
    };
    const nw = await mod.initNostrWasm();
    return {
      backend: 'nostr-wasm',
      finalize: (t, sk) => {
        const ev = { ...t, id: '', pubkey: '', sig: '' };
        nw.finalizeEvent(ev, sk);
        return ev;
      },
    };
  } catch {
    return { backend: 'nostr-tools-js', finalize: (t, sk) => finalizeEvent(t, sk) as NostrEvent };
  }
}

/** Signs every job, spread over `threads` worker threads; results are in job order. */
export async function signAll(
  jobs: SignJob[],
  threads = availableParallelism(),
  onProgress?: (done: number, total: number) => void,
): Promise<{ events: NostrEvent[][]; backend: string; ms: number }> {
  const t0 = performance.now();
  const total = jobs.reduce((n, j) => n + j.count, 0);
  const events: NostrEvent[][] = new Array(jobs.length);
  let done = 0;
  let backend = '';
  const n = Math.max(1, Math.min(threads, jobs.length));
  // Biggest jobs first, each to the next free worker.
  const order = jobs.map((_j, i) => i).sort((a, b) => jobs[b].count - jobs[a].count);
  let next = 0;

  const tsxApi = import.meta.resolve('tsx/esm/api');
  const workerUrl = new URL('./sign-worker.ts', import.meta.url).href;
  const bootstrap = `
    const { register } = await import(${JSON.stringify(tsxApi)});
    register();
    await import(${JSON.stringify(workerUrl)});
  `;

  const runWorker = () =>
    new Promise<void>((resolve, reject) => {
      const worker = new Worker(bootstrap, { eval: true, type: 'module' } as never);
      let finished = false;
      const feed = () => {
        if (next >= order.length) {
          finished = true;
          void worker.terminate();
          resolve();
          return;
        }
        const i = order[next++];
        worker.postMessage({ index: i, job: jobs[i] });
      };
      worker.on('message', (m: { ready?: true; backend?: string; index?: number; events?: NostrEvent[] }) => {
        if (m.ready) {
          backend ||= m.backend!;
        } else {
          events[m.index!] = m.events!;
          done += m.events!.length;
          onProgress?.(done, total);
        }
        feed();
      });
      worker.on('error', reject);
      worker.on('exit', (code) => {
        if (!finished) reject(new Error(`sign worker exited early (code ${code})`));
      });
    });

  await Promise.all(Array.from({ length: n }, runWorker));
  if (events.some((e) => e === undefined)) throw new Error('signing did not finish');
  return { events, backend, ms: performance.now() - t0 };
}
