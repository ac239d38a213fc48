import { nip11Payments, type Pricing } from '@paidrelay/pricing';

/**
 * The NIP-11 fields of the prices this gate enforces (`fees`, `payments_url`,
 * `limitation.payment_required`, `limitation.restricted_writes`), as a change to the relay's
 * document: the relay's entry point hands it to the core's NIP-11 hooks. Read from `pricing`
 * at each render (live prices change); `version` tells the core when to render again.
 */
export function paymentInfo(
  pricing: Pricing,
  version: () => number,
): ((doc: Record<string, unknown>) => Record<string, unknown>) & { version: () => number } {
  const hook = (doc: Record<string, unknown>) => {
    const pay = nip11Payments(pricing);
    const limitation = { ...(doc.limitation as Record<string, unknown> | undefined) };
    limitation.payment_required = pay.payment_required;
    limitation.restricted_writes = limitation.restricted_writes === true || pay.restricted_writes;
    return {
      ...doc,
      limitation,
      ...(pay.payments_url ? { payments_url: pay.payments_url } : {}),
      ...(pay.fees ? { fees: pay.fees } : {}),
    };
  };
  return Object.assign(hook, { version });
}
