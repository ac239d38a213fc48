import { createHash } from 'node:crypto';
import type { ServerResponse } from 'node:http';
import { createInvoice } from '@paidrelay/db';
import { now, type AdmissionContext } from './context.ts';
import { json, type Req } from './http.ts';
import { networkOf, type InvoiceRateLimit } from './api.ts';
import { checkZapRequest } from './zap.ts';

export const ZAP_MIN_MSAT = 1_000;
export const ZAP_MAX_MSAT = 10_000_000_000;

/** LUD-06 errors are 200s with a status field; clients show the reason. */
const lnurlError = (res: ServerResponse, reason: string, status = 200) => json(res, status, { status: 'ERROR', reason });

function metadata(ctx: AdmissionContext): string {
  const host = new URL(ctx.config.PAYMENTS_URL).host;
  return JSON.stringify([
    ['text/plain', `Pay ${ctx.config.RELAY_NAME}: credit or admission for the zapper`],
    ['text/identifier', `${ctx.config.LNURL_NAME}@${host}`],
  ]);
}

/** GET /.well-known/lnurlp/:name — LUD-16 pay request for the relay's own key, with NIP-57. */
export function lnurlPay(ctx: AdmissionContext, req: Req, res: ServerResponse): void {
  if (req.params.name !== ctx.config.LNURL_NAME) {
    lnurlError(res, 'unknown lightning address', 404);
    return;
  }
  json(res, 200, {
    tag: 'payRequest',
    callback: `${ctx.origin}/lnurlp/${ctx.config.LNURL_NAME}/callback`,
    minSendable: ZAP_MIN_MSAT,
    maxSendable: ZAP_MAX_MSAT,
    metadata: metadata(ctx),
    commentAllowed: 0,
    allowsNostr: true,
    nostrPubkey: ctx.relayKey.pubkey,
  });
}

/**
 * GET /lnurlp/:name/callback?amount=<msat>&nostr=<zap request> — the invoice. With a zap
 * request, its description hash is the request itself (NIP-57) and paying it credits or
 * admits the zapper; without one it is a plain payment to the relay.
 */
export async function lnurlCallback(ctx: AdmissionContext, limiter: InvoiceRateLimit, req: Req, res: ServerResponse): Promise<void> {
  if (req.params.name !== ctx.config.LNURL_NAME) return lnurlError(res, 'unknown lightning address', 404);
  const amount = Number(req.query.get('amount'));
  if (!Number.isInteger(amount) || amount < ZAP_MIN_MSAT || amount > ZAP_MAX_MSAT) {
    return lnurlError(res, `amount must be an integer between ${ZAP_MIN_MSAT} and ${ZAP_MAX_MSAT} msat`, 400);
  }
  const nostr = req.query.get('nostr');
  let zapper = ctx.relayKey.pubkey;
  let description = metadata(ctx);
  if (nostr !== null) {
    const check = checkZapRequest(nostr, amount, ctx.relayKey.pubkey);
    if (!check.ok) return lnurlError(res, `invalid zap request: ${check.reason}`, 400);
    zapper = check.zapper;
    description = nostr;
  }
  if (!limiter.allow(req.ip)) return lnurlError(res, 'too many invoices from this address, try again in a minute', 429);
  let inv: Awaited<ReturnType<typeof ctx.lightning.makeInvoice>>;
  try {
    inv = await ctx.lightning.makeInvoice({
      amountMsat: amount,
      descriptionHash: createHash('sha256').update(description, 'utf8').digest('hex'),
      expirySeconds: ctx.config.INVOICE_EXPIRY_SECONDS,
    });
  } catch (err) {
    ctx.log.error({ err }, 'wallet could not make a zap invoice');
    return lnurlError(res, 'the wallet could not create an invoice, try again', 502);
  }
  await createInvoice(ctx.db.kysely, {
    paymentHash: inv.paymentHash,
    bolt11: inv.bolt11,
    pubkey: zapper,
    // A plain LNURL payment (no zap request) is a donation: credited to the relay's own key, as
    // a zap invoice must carry its request.
    product: nostr === null ? 'credit' : 'zap',
    amountMsat: inv.amountMsat,
    createdAt: inv.createdAt ?? now(),
    expiresAt: inv.expiresAt,
    eventId: null,
    zapRequest: nostr,
    description,
    // A zap admits at the admission price of the network it was asked from (settle.ts).
    network: networkOf(ctx, req.ip),
  });
  json(res, 200, { pr: inv.bolt11, routes: [] });
}
