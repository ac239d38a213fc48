/** The prices and what is on sale: the products offered, the credit amount, the held event the page was opened for. */
import type { HeldEventView, PricingView } from '../api-types.ts';
import { api, ApiError, clock } from './api.ts';
import { loadAccount, npubOf, parseKey } from './account.ts';
import { $, $button, $input, h, setFieldError, show } from './dom.ts';
import { formatDate, formatPer, formatPeriod, formatRelative, formatSats, formatSatsShort, KIND_NAMES, shorten } from './format.ts';
import { page, params, type Offer } from './state.ts';

/** The refused event this page was opened for: `<page>/e/<event id>`, or `?event=<id>` (the long form). */
function heldEventIdFromUrl(): string | null {
  const m = /\/e\/([0-9a-f]{64})\/?$/.exec(location.pathname);
  return m ? m[1] : params.get('event');
}

function publicationPricesExist(p: PricingView): boolean {
  return p.publication_msat > 0 || p.publication_per_kb_msat > 0 || Object.values(p.publication_kinds ?? {}).some((v) => v > 0);
}

function buildOffers(p: PricingView, heldEvent: HeldEventView | null): Offer[] {
  const list: Offer[] = [];
  // A product that costs nothing cannot be paid: it is not offered (the API refuses it too).
  if (heldEvent && heldEvent.amount_msat > 0) {
    list.push({
      product: 'event',
      title: 'Publish this event only',
      description: `Pay once for the held kind ${heldEvent.kind} event; no account needed.`,
      amountMsat: heldEvent.amount_msat,
    });
  }
  if (p.admission_msat > 0) {
    list.push({
      product: 'admission',
      title: 'Admission',
      description: 'A one-time fee that lets this key write to the relay.',
      amountMsat: p.admission_msat,
    });
  }
  if (p.subscription_msat > 0 && p.subscription_period_seconds > 0) {
    list.push({
      product: 'subscription',
      title: `Subscription · ${formatPeriod(p.subscription_period_seconds)}`,
      description: `Write access for ${formatPeriod(p.subscription_period_seconds)}; buy again to extend.`,
      amountMsat: p.subscription_msat,
    });
  }
  if (publicationPricesExist(p) && p.credit && p.credit.max_msat > 0) {
    list.push({
      product: 'credit',
      title: 'Prepaid credit',
      description: 'Top up a balance; each event you publish is paid from it.',
      amountMsat: null,
    });
  }
  return list;
}

function renderPricing(p: PricingView): void {
  const list = $('price-list');
  list.replaceChildren();
  const row = (label: string, value: string, testid?: string, note?: string) =>
    list.append(
      h(
        'div',
        { class: 'price-row', 'data-testid': testid },
        h('dt', {}, label, note ? h('span', { class: 'muted small' }, ` ${note}`) : null),
        h('dd', {}, value),
      ),
    );
  if (p.admission_msat > 0) row('Admission', formatSats(p.admission_msat), 'price-admission', 'one-time');
  if (p.subscription_msat > 0 && p.subscription_period_seconds > 0)
    row('Subscription', `${formatSats(p.subscription_msat)} ${formatPer(p.subscription_period_seconds)}`, 'price-subscription');
  if (p.publication_msat > 0) row('Each event', formatSats(p.publication_msat), 'price-publication', 'from credit');
  if (p.publication_per_kb_msat > 0) row('Size', `+ ${formatSats(p.publication_per_kb_msat)} per KB`, 'price-per-kb');
  const kinds = Object.entries(p.publication_kinds ?? {}).sort((a, b) => Number(a[0]) - Number(b[0]));
  for (const [kind, msat] of kinds) {
    const name = KIND_NAMES[kind];
    row(`Kind ${kind}`, msat > 0 ? formatSats(msat) : 'free', `price-kind-${kind}`, name ? `(${name})` : undefined);
  }
  if (p.event_msat > 0) row('One held event', formatSats(p.event_msat), 'price-event', 'without an account');
  const free = list.childElementCount === 0;
  show($('price-free'), free);
  show(list, !free);

  $('relay-url').textContent = p.relay_url;
  if (p.lightning_address) {
    $('ln-address').textContent = p.lightning_address;
    show($('zap-info'), true);
  }
}

function renderOffers(): void {
  const box = $('product-list');
  const creditBox = $('credit-box');
  box.replaceChildren();
  box.removeAttribute('aria-busy');
  const selectedBefore = (document.querySelector('input[name=product]:checked') as HTMLInputElement | null)?.value;
  for (const o of page.offers) {
    const id = `product-${o.product}`;
    const input = h('input', {
      type: 'radio',
      name: 'product',
      value: o.product,
      id,
      'data-testid': `${id}-input`,
      // Named by its title and price; the longer text is its description.
      'aria-labelledby': `${id}-title ${id}-price`,
      'aria-describedby': `${id}-desc`,
    });
    const price = o.amountMsat === null ? 'you choose' : formatSats(o.amountMsat);
    box.append(
      h(
        'label',
        { class: 'option', for: id, 'data-testid': id },
        input,
        h(
          'span',
          { class: 'option-body' },
          h('span', { class: 'option-title', id: `${id}-title` }, o.title),
          h('span', { class: 'option-desc', id: `${id}-desc` }, o.description),
        ),
        h('span', { class: 'option-price', id: `${id}-price`, 'data-testid': `${id}-price` }, price),
      ),
    );
    if (o.product === 'credit') box.append(creditBox);
  }
  if (!creditBox.isConnected) box.append(creditBox);
  const initial = selectedBefore ?? (page.held ? 'event' : page.offers.length === 1 ? page.offers[0].product : undefined);
  if (initial) {
    const el = document.getElementById(`product-${initial}`) as HTMLInputElement | null;
    if (el) el.checked = true;
  }
  const nothing = page.offers.length === 0;
  show($('products-empty'), nothing);
  show($('buy-actions'), !nothing);
  onProductChange();
}

export function selectedOffer(): Offer | null {
  const v = (document.querySelector('input[name=product]:checked') as HTMLInputElement | null)?.value;
  return page.offers.find((o) => o.product === v) ?? null;
}

function creditBounds(): { min: number; max: number } {
  const c = page.pricing?.credit ?? { min_msat: 1000, max_msat: 0 };
  return { min: Math.max(1, c.min_msat), max: c.max_msat };
}

/** The credit amount in msat, or an error to show. */
export function creditAmount(): { msat: number } | { error: string } {
  const raw = $input('credit-amount').value.trim();
  if (!raw) return { error: 'Enter an amount in sats.' };
  const sats = Number(raw);
  if (!Number.isFinite(sats) || sats <= 0) return { error: 'Enter a positive number of sats.' };
  const msat = Math.round(sats * 1000);
  const { min, max } = creditBounds();
  if (msat < min || msat > max) return { error: `Choose between ${formatSats(min)} and ${formatSats(max)}.` };
  return { msat };
}

function setupCredit(p: PricingView): void {
  const { min, max } = creditBounds();
  const input = $input('credit-amount');
  const minSats = Math.ceil(min / 1000);
  const maxSats = Math.floor(max / 1000);
  input.min = String(minSats);
  input.max = String(maxSats);
  // A sensible default: about a hundred events at the base price, within the bounds.
  const perEvent = p.publication_msat > 0 ? p.publication_msat : 1000;
  let def = Math.ceil((perEvent * 100) / 1000);
  def = Math.min(Math.max(def, minSats), maxSats);
  if (!input.value) input.value = String(def);
  $('credit-range').textContent = `Between ${formatSats(min)} and ${formatSats(max)}.`;
  const chips = $('credit-presets');
  chips.replaceChildren();
  const presets = [1000, 5000, 21000, 100000].filter((s) => s >= minSats && s <= maxSats);
  if (presets.length === 0 && maxSats >= minSats) presets.push(minSats, maxSats);
  for (const s of [...new Set(presets)]) {
    chips.append(
      h(
        'button',
        { type: 'button', class: 'chip', 'data-sats': String(s), 'data-testid': `credit-preset-${s}` },
        formatSatsShort(s * 1000),
      ),
    );
  }
  updateCreditHint();
}

export function updateCreditHint(): void {
  const hint = $('credit-hint');
  const r = creditAmount();
  const per = page.pricing?.publication_msat ?? 0;
  if ('msat' in r && per > 0) {
    const n = Math.floor(r.msat / per);
    hint.textContent = `≈ ${n.toLocaleString('en-US')} event${n === 1 ? '' : 's'} at ${formatSats(per)} each.`;
  } else hint.textContent = '';
  for (const chip of $('credit-presets').querySelectorAll<HTMLButtonElement>('.chip')) {
    chip.setAttribute('aria-pressed', String($input('credit-amount').value === chip.dataset.sats));
  }
}

export function onProductChange(): void {
  const o = selectedOffer();
  show($('credit-box'), o?.product === 'credit');
  setFieldError(null, $('product-error'), null);
  const btn = $button('get-invoice');
  let label = 'Get invoice';
  if (o?.product === 'credit') {
    const r = creditAmount();
    if ('msat' in r) label = `Get invoice · ${formatSatsShort(r.msat)}`;
  } else if (o?.amountMsat) label = `Get invoice · ${formatSatsShort(o.amountMsat)}`;
  btn.textContent = label;
}

function renderHeld(ev: HeldEventView): void {
  $('held-kind').textContent = `Kind ${ev.kind}${KIND_NAMES[String(ev.kind)] ? ` · ${KIND_NAMES[String(ev.kind)]}` : ''}`;
  $('held-price').textContent = formatSats(ev.amount_msat);
  $('held-id').textContent = shorten(ev.id, 10, 8);
  $('held-id').title = ev.id;
  const until = $('held-until');
  until.textContent = `${formatDate(ev.expires_at)} (${formatRelative(ev.expires_at, Date.now() + clock.offsetMs)})`;
  show($('held'), true);
}

export async function loadPricing(): Promise<void> {
  const err = $('pricing-error');
  show(err, false);
  try {
    page.pricing = await api.pricing();
  } catch (e) {
    $('pricing-error-text').textContent = `Prices could not be loaded: ${e instanceof Error ? e.message : String(e)}`;
    show(err, true);
    $('product-list').textContent = '';
    return;
  }
  const eventId = heldEventIdFromUrl();
  if (eventId) {
    try {
      // The short pay URL (`<page>/e/<id>`) names the event alone; the service answers with its author.
      page.held = await api.held(eventId, parseKey(params.get('pubkey') ?? '')?.send);
      renderHeld(page.held);
      if (!params.get('pubkey') && !$input('pubkey').value) {
        $input('pubkey').value = npubOf(page.held.pubkey);
        void loadAccount(page.held.pubkey);
      }
    } catch (e) {
      page.held = null;
      const gone = e instanceof ApiError && e.status === 404;
      $('held-missing').textContent = gone
        ? 'That event is no longer waiting for payment: it was already paid for, or its hold expired. Buy access below, then publish it again.'
        : `The held event could not be loaded: ${e instanceof Error ? e.message : String(e)}`;
      show($('held-missing'), true);
    }
  }
  renderPricing(page.pricing);
  page.offers = buildOffers(page.pricing, page.held);
  setupCredit(page.pricing);
  renderOffers();
  $button('get-invoice').disabled = false;
}
