import { parentPort } from 'node:worker_threads';
import { loadVerifier } from '@paidrelay/secp256k1';
import { sigItems } from './verify.ts';

/** Verifies batches of signatures for the main thread; one verifier per thread. */
const verifier = await loadVerifier();
parentPort!.postMessage({ ready: true, backend: verifier.backend });
parentPort!.on('message', (msg: { batch: number; records: string }) => {
  const ok = verifier.verifyBatch(sigItems(msg.records));
  const out = new Uint8Array(ok.length);
  for (let i = 0; i < ok.length; i++) out[i] = ok[i] ? 1 : 0;
  parentPort!.postMessage({ batch: msg.batch, ok: out }, [out.buffer]);
});
