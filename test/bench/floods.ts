/**
 * What the flood and spam benches share besides the relay: paid accounts written before the
 * relays start, the honest users' phase, and a flood run on a worker thread of its own (its own
 * event loop).
 */
import { execFileSync, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import { createInvoice, openDatabase, settleInvoice } from '@paidrelay/db';
import type { Key } from './sign.ts';
import type { NostrEvent, RelayClient } from './client.ts';
import { postgresCpuByPid } from './resources.ts';
import { ReasonTally, Samples } from './stats.ts';

/** Answers to honest writes still outstanding this long after a phase are "unanswered". */
const GRACE_MS = 5_000;

/**
 * Admission and credit written the way a settled payment writes them (invoice, settlement,
 * ledger): `admissionMsat` for each key, then its `creditMsat` if any.
 */
export async function grantPaid(
  databaseUrl: string,
  grants: { pubkey: string; creditMsat: number }[],
  admissionMsat: number,
  description: string,
): Promise<void> {
  const dataDir = mkdtempSync(join(tmpdir(), 'paidrelay-grants-'));
  const d = await openDatabase({ databaseUrl, dataDir });
  try {
    await d.migrate();
    const now = Math.floor(Date.now() / 1000);
    for (const g of grants) {
      const buys = [
        { product: 'admission' as const, amountMsat: admissionMsat },
        ...(g.creditMsat > 0 ? [{ product: 'credit' as const, amountMsat: g.creditMsat }] : []),
      ];
      for (const b of buys) {
        const paymentHash = randomBytes(32).toString('hex');
        await createInvoice(d.kysely, {
          paymentHash,
          bolt11: 'lnbcrt1bench',
          pubkey: g.pubkey,
          product: b.product,
          amountMsat: b.amountMsat,
          createdAt: now,
          expiresAt: now + 900,
          eventId: null,
          zapRequest: null,
          description,
        });
        await settleInvoice(d.kysely, paymentHash, { now, subscriptionPeriodSeconds: 2_592_000 });
      }
    }
  } finally {
    await d.close();
    rmSync(dataDir, { recursive: true, force: true });
  }
}

/** Runs the worker module `file` (TypeScript, through tsx) on `job`; resolves with its `counts`. */
export function runWorker<Job, Counts>(file: URL, job: Job): Promise<Counts> {
  const bootstrap = `
    const { register } = await import(${JSON.stringify(import.meta.resolve('tsx/esm/api'))});
    register();
    await import(${JSON.stringify(file.href)});
  `;
  return new Promise((resolve, reject) => {
    const w = new Worker(bootstrap, { eval: true, type: 'module' } as never);
    w.once('message', (m: { counts?: Counts; error?: string }) => {
      void w.terminate();
      if (m.counts) resolve(m.counts);
      else reject(new Error(m.error));
    });
    w.once('error', reject);
    w.postMessage(job);
  });
}

/**
 * The worker module `file` in a process of its own at the lowest priority (`nice -n 19`), on this
 * process's cores: the honest clients on those cores then read their answers as soon as they
 * come, and the flood takes the CPU they leave. Resolves once the process has loaded (tsx compiles
 * it), so starting it costs the phase nothing; `run` hands it the job.
 */
export async function startFloodProcess<Job, Counts>(file: URL): Promise<{ run(job: Job): Promise<Counts>; stop(): void }> {
  const child = spawn('nice', ['-n', '19', process.execPath, '--import', 'tsx', fileURLToPath(file)], {
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  const stop = () => void child.kill('SIGKILL');
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('the flood process did not start within 30 s')), 30_000);
    child.once('message', () => {
      clearTimeout(timer);
      resolve();
    });
    child.once('exit', (code) => reject(new Error(`the flood process exited (code ${code})`)));
  }).catch((err) => {
    stop();
    throw err;
  });
  return {
    stop,
    run: (job) =>
      new Promise((resolve, reject) => {
        child.once('message', (m: { counts?: Counts; error?: string }) => (m.counts ? resolve(m.counts) : reject(new Error(m.error))));
        child.once('exit', (code) => reject(new Error(`the flood process exited (code ${code})`)));
        child.send(job as never);
      }),
  };
}

/** `replica`: which replica the key writes to (index in the replica list), when there are several. */
export type Honest = { key: Key; client: RelayClient; events: NostrEvent[]; next: number; replica?: number };

/** Each honest key writes every 1-3 s (random) for the phase; counts OKs, refusals and silence. */
export async function honestPhase(honest: Honest[], ms: number) {
  const lat = new Samples();
  // Per replica too: replica 1 also runs the admission API and the dev Lightning network, so a
  // paying flood's wallet work lands on its event loop and not on replica 2's.
  const byReplica = new Map<number, Samples>();
  const refusals = new ReasonTally();
  let sent = 0;
  let refused = 0;
  let answered = 0;
  const end = performance.now() + ms;
  const pending: Promise<void>[] = [];
  await Promise.all(
    honest.map(async (h) => {
      await new Promise((r) => setTimeout(r, Math.random() * 2000));
      while (performance.now() < end && h.next < h.events.length) {
        const ev = h.events[h.next++];
        sent++;
        pending.push(
          h.client.publish(ev).then((r) => {
            answered++;
            lat.push(r.ms);
            if (!byReplica.has(h.replica ?? 0)) byReplica.set(h.replica ?? 0, new Samples());
            byReplica.get(h.replica ?? 0)?.push(r.ms);
            if (!r.ok) {
              refused++;
              refusals.add(r.message);
            }
          }),
        );
        await new Promise((r) => setTimeout(r, 1000 + Math.random() * 2000));
      }
    }),
  );
  await Promise.race([Promise.all(pending), new Promise((r) => setTimeout(r, GRACE_MS))]);
  const ackByReplica = [...byReplica].sort(([a], [b]) => a - b).map(([, v]) => v.summary());
  return {
    sent,
    ok: answered - refused,
    refused,
    unanswered: sent - answered,
    ack_ms: lat.summary(),
    ack_ms_by_replica: ackByReplica,
    refusals: refusals.toJSON(),
  };
}

/**
 * `--pin`: the load generator on cores of its own, the relay and its database on the others, so a
 * flood's cost to the relay shows apart from the machine's (on 2 cores the generator, the relay
 * and Postgres otherwise all burst on the same cores). Pins this process (all its threads, and
 * the workers it starts later) to `benchCpus`, and every Postgres backend serving `database` to
 * `relayCpus` as they appear (the pool opens connections over time), until the returned stop.
 */
export function pinCores(database: string, relayCpus: string, benchCpus: string): () => void {
  execFileSync('taskset', ['-a', '-p', '-c', benchCpus, String(process.pid)], { stdio: 'ignore' });
  const pinned = new Set<string>();
  const pinBackends = () => {
    for (const pid of postgresCpuByPid(database).keys()) {
      if (pinned.has(pid)) continue;
      try {
        execFileSync('taskset', ['-p', '-c', relayCpus, pid], { stdio: 'ignore' });
        pinned.add(pid);
      } catch {
        // exited meanwhile
      }
    }
  };
  pinBackends();
  const timer = setInterval(pinBackends, 500);
  return () => clearInterval(timer);
}
