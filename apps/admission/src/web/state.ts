/** What the page's parts share: its URL parameters, its name, the prices and offers loaded at start. */
import type { HeldEventView, PricingView, Product } from '../api-types.ts';
import { clock } from './api.ts';

export interface Offer {
  product: Product;
  title: string;
  description: string;
  amountMsat: number | null; // null: the person chooses (credit)
}

export const params = new URLSearchParams(location.search);
export const appName = document.body.dataset.appName || 'Nostr relay';

/** Set once the prices (and the held event the page was opened for, if any) are loaded. */
export const page: { pricing: PricingView | null; held: HeldEventView | null; offers: Offer[] } = {
  pricing: null,
  held: null,
  offers: [],
};

/** The service's clock, in unix seconds (for countdowns). */
export const nowSec = () => (Date.now() + clock.offsetMs) / 1000;
