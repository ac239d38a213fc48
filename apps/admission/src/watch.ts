import { expireInvoices, listPendingInvoices } from '@paidrelay/db';
import { now, type AdmissionContext } from './context.ts';
import { settle } from './settle.ts';

/**
 * How payments are noticed: the wallet's payment_received notifications as they happen, and
 * a reconciler that asks the wallet about every pending invoice at start and on a timer, so
 * a crash or a missed notification between payment and grant loses nothing.
 */
export async function watchPayments(ctx: AdmissionContext): Promise<{ reconcile: () => Promise<void>; stop: () => void }> {
  const unsubscribe = await ctx.lightning.onPaymentReceived((p) => {
    settle(ctx, p.paymentHash, p.amountMsat, p.preimage).catch((err) =>
      ctx.log.error({ err, paymentHash: p.paymentHash }, 'settlement failed; the reconciler will retry'),
    );
  });

  let running: Promise<void> | null = null;
  const reconcile = () => {
    running ??= reconcileOnce(ctx).finally(() => (running = null));
    return running;
  };
  await reconcile();
  const timer = setInterval(() => void reconcile(), ctx.config.RECONCILE_INTERVAL_SECONDS * 1000);
  timer.unref();
  return {
    reconcile,
    stop: () => {
      clearInterval(timer);
      unsubscribe();
    },
  };
}

async function reconcileOnce(ctx: AdmissionContext): Promise<void> {
  let pending: Awaited<ReturnType<typeof listPendingInvoices>>;
  try {
    pending = await listPendingInvoices(ctx.db.kysely);
  } catch (err) {
    ctx.log.warn({ err }, 'reconciler: cannot list pending invoices');
    return;
  }
  let expired = false;
  for (const inv of pending) {
    try {
      const look = await ctx.lightning.lookupInvoice(inv.paymentHash);
      if (look.state === 'settled') await settle(ctx, inv.paymentHash, look.amountMsat, look.preimage);
      else if (inv.expiresAt <= now()) expired = true;
    } catch (err) {
      ctx.log.warn({ err, invoice: inv.id }, 'reconciler: lookup failed');
    }
  }
  // Past their expiry and not paid according to the wallet: mark them expired.
  if (expired) {
    await expireInvoices(ctx.db.kysely, now()).catch((err: unknown) =>
      ctx.log.warn({ err }, 'reconciler: cannot mark invoices expired; the next run will'),
    );
  }
}
