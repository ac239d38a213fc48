import { parentPort } from 'node:worker_threads';
import { buildEvents, loadFinalize, type SignJob } from './sign.ts';

/** Signing thread: announces itself, then answers each job with its signed events. */
const { backend, finalize } = await loadFinalize();
parentPort!.on('message', ({ index, job }: { index: number; job: SignJob }) => {
  parentPort!.postMessage({ index, events: buildEvents(job, finalize) });
});
parentPort!.postMessage({ ready: true, backend });
