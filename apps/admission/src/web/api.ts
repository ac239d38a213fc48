/**
 * Browser client for the admission service's JSON API (same origin as the page, absolute `/api/...`).
 * Every call resolves to a typed value or throws an ApiError whose message is fit to show a person.
 */

import type { AccountView, CreateInvoiceBody, HeldEventView, InvoiceView, PricingView } from '../api-types.ts';

export class ApiError extends Error {
  constructor(
    message: string,
    readonly status: number,
    /** Seconds to wait, from a 429's Retry-After header, when given. */
    readonly retryAfter?: number,
  ) {
    super(message);
    this.name = 'ApiError';
  }
}

async function errorFrom(res: Response): Promise<ApiError> {
  let detail = '';
  try {
    const text = await res.text();
    try {
      const body = JSON.parse(text) as { error?: unknown; message?: unknown };
      detail = String(body.error ?? body.message ?? '');
    } catch {
      detail = text.length < 300 ? text.trim() : '';
    }
  } catch {
    /* body unreadable: fall back to the status below */
  }
  if (detail) detail = detail.charAt(0).toUpperCase() + detail.slice(1);
  if (res.status === 429) {
    const ra = Number(res.headers.get('retry-after'));
    const retryAfter = Number.isFinite(ra) && ra > 0 ? ra : undefined;
    const wait = retryAfter ? `Try again in ${retryAfter} s.` : 'Please wait a moment and try again.';
    return new ApiError(detail ? `${detail}.`.replace(/\.\.$/, '.') : `Too many requests. ${wait}`, 429, retryAfter);
  }
  if (!detail) detail = res.status >= 500 ? 'The payment service had a problem. Please try again.' : `Request failed (HTTP ${res.status}).`;
  return new ApiError(detail, res.status);
}

/** Server time minus local time, learned from response Date headers (for the expiry countdown). */
export const clock = { offsetMs: 0 };

function learnClock(res: Response): void {
  const t = Date.parse(res.headers.get('date') ?? '');
  // Date headers have a one-second resolution: only correct a real skew.
  if (Number.isFinite(t)) clock.offsetMs = Math.abs(t - Date.now()) > 2000 ? t - Date.now() : 0;
}

async function request<T>(path: string, init?: RequestInit): Promise<T> {
  let res: Response;
  try {
    res = await fetch(path, { ...init, headers: { accept: 'application/json', ...(init?.headers ?? {}) } });
  } catch {
    throw new ApiError('Could not reach the payment service. Check your connection and try again.', 0);
  }
  learnClock(res);
  if (!res.ok) throw await errorFrom(res);
  return (await res.json()) as T;
}

export const api = {
  pricing: () => request<PricingView>('/api/pricing'),
  /** The prices and this sender's spam pricing now (`sender`: its multiplier and allowance left). */
  pricingFor: (pubkey: string) => request<PricingView>(`/api/pricing?pubkey=${encodeURIComponent(pubkey)}`),
  createInvoice: (body: CreateInvoiceBody) =>
    request<InvoiceView>('/api/invoices', {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(body),
    }),
  invoice: (id: string) => request<InvoiceView>(`/api/invoices/${encodeURIComponent(id)}`),
  invoiceEventsUrl: (id: string) => `/api/invoices/${encodeURIComponent(id)}/events`,
  account: (pubkey: string) => request<AccountView>(`/api/accounts/${encodeURIComponent(pubkey)}`),
  /** With `pubkey`, a key that is not the author's gets the same 404 as an unknown id. */
  held: (eventId: string, pubkey?: string) =>
    request<HeldEventView>(`/api/held/${encodeURIComponent(eventId)}${pubkey ? `?pubkey=${encodeURIComponent(pubkey)}` : ''}`),
};
