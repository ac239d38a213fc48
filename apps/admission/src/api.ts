import type { ServerResponse } from 'node:http';
import { createInvoice, getAccount, getHeldEvent, getInvoice, type HeldEvent } from '@paidrelay/db';
import { pricesJson, settingsOfPrices } from '@paidrelay/payment-gate';
import { networkKey } from '@paidrelay/config';
import {
  admissionOffer,
  counterKeys,
  DAY_WINDOW,
  heldEventPrice,
  notOnSale,
  offersFor,
  parsePubkey,
  productsOnSale,
  senderNumbers,
  surgeWindow,
  type Product,
} from '@paidrelay/pricing';
import { isHex64 } from '@paidrelay/nostr';
import { z } from 'zod';
import type { CreateInvoiceBody, HeldEventView, PricingView, SenderView } from './api-types.ts';
import { accountJson, invoiceJson, now, type AdmissionContext } from './context.ts';
import { error, HttpError, json, readJson, type Req } from './http.ts';
import type { InvoiceStreams } from './sse.ts';

/** Credit purchases: at least one sat, at most 10 million sats at once. */
export const CREDIT_MIN_MSAT = 1_000;
export const CREDIT_MAX_MSAT = 10_000_000_000;

const invoiceRequest = z.object({
  pubkey: z.string().min(1).max(200),
  product: z.enum(['admission', 'subscription', 'credit', 'event']),
  amount_msat: z.number().int().positive().optional(),
  event_id: z.string().refine(isHex64, 'event_id must be 64 lowercase hex characters').optional(),
}) satisfies z.ZodType<CreateInvoiceBody>;

/** Invoices created per client IP in the current minute. */
export class InvoiceRateLimit {
  private window = 0;
  private counts = new Map<string, number>();
  constructor(private readonly perMinute: number) {}
  allow(ip: string): boolean {
    const w = Math.floor(Date.now() / 60_000);
    if (w !== this.window) {
      this.window = w;
      this.counts.clear();
    }
    const n = (this.counts.get(ip) ?? 0) + 1;
    this.counts.set(ip, n);
    return n <= this.perMinute;
  }
}

/** The client's network as spam pricing counts it (IPv4 /24, IPv6 /56 by default). */
export function networkOf(ctx: AdmissionContext, ip: string): string {
  return networkKey(ip, ctx.config.SURGE_V6_PREFIX, ctx.config.SURGE_V4_PREFIX);
}

/** Admissions bought from this network in the spam pricing's window (0 without spam pricing). */
export async function networkAdmissions(ctx: AdmissionContext, network: string): Promise<number> {
  const policy = ctx.pricing.surge;
  if (!policy || !network) return 0;
  return (await ctx.counters.read(counterKeys('', network, policy).admissions, surgeWindow(policy))).events;
}

/**
 * The prices as they are now (an admin may have changed them a moment ago). The base prices
 * (as NIP-11 shows them), and the offers at the asking network's admission price.
 */
export function pricingJson(ctx: AdmissionContext, admissionsFromNetwork = 0): PricingView {
  const p = ctx.pricing;
  const host = new URL(ctx.config.PAYMENTS_URL).host;
  return {
    ...pricesJson(settingsOfPrices(p)),
    products: offersFor(p, admissionsFromNetwork),
    credit: { min_msat: CREDIT_MIN_MSAT, max_msat: CREDIT_MAX_MSAT },
    relay_url: ctx.relayUrl,
    payments_url: ctx.config.PAYMENTS_URL,
    lightning_address: `${ctx.config.LNURL_NAME}@${host}`,
  };
}

/**
 * The relay answers a refusal at once and writes the held event in its next batch, a few
 * milliseconds later: a client that asks to pay for it straight away is given that long.
 */
async function heldEventSoon(ctx: AdmissionContext, eventId: string, waitMs = 1500) {
  const until = Date.now() + waitMs;
  for (;;) {
    const held = await getHeldEvent(ctx.db.kysely, eventId, now());
    if (held || Date.now() >= until) return held;
    await new Promise((r) => setTimeout(r, 100));
  }
}

/**
 * A held event's price: the one its refusal named (with spam pricing, the surge price of that
 * moment), kept with it; at the prices of now for an event held without one.
 */
function heldPrice(ctx: AdmissionContext, held: HeldEvent): number {
  return held.amountMsat > 0 ? held.amountMsat : heldEventPrice(ctx.pricing, held.kind, Buffer.byteLength(held.raw));
}

/**
 * What one invoice for this product costs, or a 4xx. Admission and a subscription cost the base
 * times the admission multiplier of the asking network (admissions bought from it lately); the
 * invoice keeps that price.
 */
async function priceFor(
  ctx: AdmissionContext,
  body: z.infer<typeof invoiceRequest>,
  pubkey: string,
  network: string,
): Promise<{ amount: number; eventId?: string; what: string }> {
  const p = ctx.pricing;
  switch (body.product as Product) {
    case 'admission': {
      if (p.admissionMsat <= 0) throw new HttpError(400, notOnSale(p, 'admission'));
      const offer = admissionOffer(p.admissionMsat, await networkAdmissions(ctx, network), p.surge);
      return { amount: offer.amountMsat, what: 'admission' };
    }
    case 'subscription': {
      if (p.subscriptionMsat <= 0) throw new HttpError(400, notOnSale(p, 'subscription'));
      const offer = admissionOffer(p.subscriptionMsat, await networkAdmissions(ctx, network), p.surge);
      return { amount: offer.amountMsat, what: `${Math.round(p.subscriptionPeriodSeconds / 86400)} days of writing` };
    }
    case 'credit': {
      if (!productsOnSale(p).some((o) => o.product === 'credit'))
        throw new HttpError(400, `${notOnSale(p, 'credit')} (credit pays publication prices, and this relay has none)`);
      const amount = body.amount_msat;
      if (amount === undefined) throw new HttpError(400, 'amount_msat is required for credit');
      if (amount < CREDIT_MIN_MSAT || amount > CREDIT_MAX_MSAT) {
        throw new HttpError(400, `amount_msat must be between ${CREDIT_MIN_MSAT} and ${CREDIT_MAX_MSAT}`);
      }
      return { amount, what: `${amount / 1000} sats of credit` };
    }
    case 'event': {
      if (!body.event_id) throw new HttpError(400, 'event_id is required for product "event"');
      const held = await heldEventSoon(ctx, body.event_id);
      if (!held || held.pubkey !== pubkey) throw new HttpError(404, 'no held event with this id for this pubkey (it may have expired)');
      const amount = heldPrice(ctx, held);
      if (amount <= 0) throw new HttpError(400, notOnSale(p, 'event'));
      return { amount, eventId: held.id, what: 'publishing one event' };
    }
  }
}

export async function postInvoice(ctx: AdmissionContext, limiter: InvoiceRateLimit, req: Req, res: ServerResponse): Promise<void> {
  const parsed = invoiceRequest.safeParse(await readJson(req));
  if (!parsed.success) {
    return error(res, 400, parsed.error.issues.map((i) => `${i.path.join('.') || 'body'}: ${i.message}`).join('; '));
  }
  const body = parsed.data;
  const pubkey = parsePubkey(body.pubkey);
  if (!pubkey) return error(res, 400, 'pubkey must be 64 hex characters or an npub');
  if (!limiter.allow(req.ip)) return error(res, 429, 'too many invoices from this address, try again in a minute');
  const network = networkOf(ctx, req.ip);
  const { amount, eventId, what } = await priceFor(ctx, body, pubkey, network);
  let inv: Awaited<ReturnType<typeof ctx.lightning.makeInvoice>>;
  try {
    inv = await ctx.lightning.makeInvoice({
      amountMsat: amount,
      description: `${ctx.config.RELAY_NAME}: ${what}`,
      expirySeconds: ctx.config.INVOICE_EXPIRY_SECONDS,
    });
  } catch (err) {
    ctx.log.error({ err }, 'wallet could not make an invoice');
    return error(res, 502, 'the wallet could not create an invoice, try again');
  }
  const row = await createInvoice(ctx.db.kysely, {
    paymentHash: inv.paymentHash,
    bolt11: inv.bolt11,
    pubkey,
    product: body.product,
    amountMsat: inv.amountMsat,
    createdAt: inv.createdAt,
    expiresAt: inv.expiresAt,
    eventId: eventId ?? null,
    zapRequest: null,
    description: inv.description ?? null,
    network,
  });
  json(res, 201, invoiceJson(row));
}

export async function getInvoiceRoute(ctx: AdmissionContext, req: Req, res: ServerResponse): Promise<void> {
  const inv = await getInvoice(ctx.db.kysely, req.params.id);
  if (!inv) return error(res, 404, 'no such invoice');
  json(res, 200, invoiceJson(inv));
}

export async function invoiceEvents(ctx: AdmissionContext, streams: InvoiceStreams, req: Req, res: ServerResponse): Promise<void> {
  const inv = await getInvoice(ctx.db.kysely, req.params.id);
  if (!inv) return error(res, 404, 'no such invoice');
  streams.open(res, invoiceJson(inv), async () => {
    // Runs later on a timer: a database error must not become an unhandled rejection.
    const fresh = await getInvoice(ctx.db.kysely, req.params.id).catch((err: unknown) => {
      ctx.log.warn({ err }, 'invoice stream: refresh failed');
      return undefined;
    });
    return fresh && invoiceJson(fresh);
  });
}

export async function getAccountRoute(ctx: AdmissionContext, req: Req, res: ServerResponse): Promise<void> {
  const pubkey = parsePubkey(req.params.pubkey);
  if (!pubkey) return error(res, 400, 'pubkey must be 64 hex characters or an npub');
  json(res, 200, accountJson(pubkey, await getAccount(ctx.db.kysely, pubkey)));
}

/**
 * A held event as the pay page shows it: what it is and what publishing it costs, never its
 * content. The short pay URL names the event alone, so anyone who has the id may ask; a refused
 * event's text is its author's business. With `?pubkey=`, a pubkey that is not the author's is
 * the same 404 as an unknown id.
 */
export async function getHeldRoute(ctx: AdmissionContext, req: Req, res: ServerResponse): Promise<void> {
  const id = req.params.event_id;
  if (!isHex64(id)) return error(res, 400, 'event id must be 64 lowercase hex characters');
  const given = req.query.get('pubkey')?.trim() || undefined;
  const pubkey = given === undefined ? undefined : parsePubkey(given);
  if (given !== undefined && !pubkey) return error(res, 400, 'pubkey must be 64 hex characters or an npub');
  const held = await getHeldEvent(ctx.db.kysely, id, now());
  if (!held || (pubkey !== undefined && held.pubkey !== pubkey)) {
    return error(res, 404, 'no held event with this id (it may have expired or been published)');
  }
  const view: HeldEventView = {
    id: held.id,
    pubkey: held.pubkey,
    kind: held.kind,
    amount_msat: heldPrice(ctx, held),
    expires_at: held.expiresAt,
  };
  json(res, 200, view);
}

/**
 * GET /api/pricing[?pubkey=<hex or npub>]: the prices, the offers at the asking network's
 * admission price, and with `pubkey` that sender's spam pricing (`sender`).
 */
export async function getPricingRoute(ctx: AdmissionContext, req: Req, res: ServerResponse): Promise<void> {
  const given = req.query.get('pubkey')?.trim() || undefined;
  const pubkey = given === undefined ? undefined : parsePubkey(given);
  if (given !== undefined && !pubkey) return error(res, 400, 'pubkey must be 64 hex characters or an npub');
  const network = networkOf(ctx, req.ip);
  const admissions = await networkAdmissions(ctx, network);
  const view = pricingJson(ctx, admissions);
  if (pubkey) view.sender = await senderJson(ctx, pubkey, network, admissions);
  json(res, 200, view);
}

/**
 * A sender's spam pricing, from the counters the relay's gate counts in (its writing in the last
 * day and in the window, its network's) and its account (trust), through the gate's own pure
 * functions. The network is the asking client's: the pay page is asked from where one writes.
 * The load level is this service's reading of the replicas' shared write rate (the same rule, so
 * the same level within a second or two).
 */
async function senderJson(ctx: AdmissionContext, pubkey: string, network: string, admissions: number): Promise<SenderView> {
  const p = ctx.pricing;
  const policy = p.surge;
  const admission = admissionOffer(p.admissionMsat, admissions, policy);
  const fixed = { pubkey, admission_msat: admission.amountMsat, admission_multiplier: admission.multiplier };
  if (!policy) return { ...fixed, multiplier: 1, why: '', allowance: null, allowance_left: null, window_seconds: 0, trust: 0 };
  const keys = counterKeys(pubkey, network, policy);
  const w = surgeWindow(policy);
  const [account, day, window, networkWindow] = await Promise.all([
    getAccount(ctx.db.kysely, pubkey),
    ctx.counters.read(keys.day, DAY_WINDOW),
    ctx.counters.read(keys.window, w),
    network ? ctx.counters.read(keys.network, w) : { events: 0, bytes: 0 },
  ]);
  const n = senderNumbers(
    {
      policy,
      history: { admittedSince: account?.createdAt ?? null, paidMsat: account?.paidMsat ?? 0 },
      day,
      window,
      networkWindow,
      networkAdmissions: admissions,
      loadLevel: ctx.load.level,
    },
    now(),
  );
  return {
    ...fixed,
    multiplier: n.multiplier,
    why: n.why,
    allowance: n.allowance,
    allowance_left: n.allowanceLeft,
    window_seconds: n.windowSeconds,
    admission_multiplier: n.admissionMultiplier,
    trust: n.trust,
  };
}
