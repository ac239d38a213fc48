/**
 * What the flood and spam benches share besides the relay: paid accounts written before the
 * relays start, and a flood run on a worker thread of its own (its own event loop).
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Worker } from 'node:worker_threads';
import { createInvoice, openDatabase, settleInvoice } from '@paidrelay/db';

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
