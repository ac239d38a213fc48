/**
 * The pay page, in the browser. The HTML shell (html.ts) holds the static structure; this code loads
 * the prices, offers the products, mints an invoice on request, shows it (QR, copy, lightning: link,
 * Bitcoin Connect for WebLN/NWC), follows its status live (Server-Sent Events, with polling as a
 * safety net), and shows the account once it is paid.
 *
 * URL parameters: `pubkey` (npub or hex) prefills the key; `event` (a held event id, from a refused
 * write) offers to pay for that one event; `invoice` (set by the page itself) resumes an invoice
 * after a reload, e.g. when a phone comes back from its wallet app.
 */
import { decode as nip19Decode, npubEncode } from 'nostr-tools/nip19';
import type { WindowNostr } from 'nostr-tools/nip07';
import { api, ApiError, clock, type AccountView, type HeldEventView, type InvoiceView, type Pricing, type Product } from './api.ts';
import {
  formatCountdown,
  formatDate,
  formatPer,
  formatPeriod,
  formatRelative,
  formatSats,
  formatSatsShort,
  KIND_NAMES,
  shorten,
} from './format.ts';
import { qrSvg } from './qr.ts';
import { initWallet, payWithWallet, type WalletPayment } from './wallet.ts';

declare global {
  interface Window {
    nostr?: WindowNostr;
  }
}

// ---------------------------------------------------------------------------------------------
// DOM helpers

function $(id: string): HTMLElement {
  const el = document.getElementById(id);
  if (!el) throw new Error(`pay page: missing #${id}`);
  return el;
}
const $input = (id: string) => $(id) as HTMLInputElement;
const $button = (id: string) => $(id) as HTMLButtonElement;

function h<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  attrs: Record<string, string | boolean | undefined> = {},
  ...children: Array<Node | string | null | undefined | false>
): HTMLElementTagNameMap[K] {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === false) continue;
    if (k === 'class') el.className = String(v);
    else el.setAttribute(k, v === true ? '' : v);
  }
  for (const c of children) if (c !== null && c !== undefined && c !== false) el.append(c);
  return el;
}

function show(el: HTMLElement, on: boolean): void {
  el.hidden = !on;
}

function setFieldError(input: HTMLInputElement | null, errorEl: HTMLElement, message: string | null): void {
  errorEl.textContent = message ?? '';
  show(errorEl, !!message);
  if (input) {
    if (message) input.setAttribute('aria-invalid', 'true');
    else input.removeAttribute('aria-invalid');
  }
}

const nowSec = () => (Date.now() + clock.offsetMs) / 1000;

// ---------------------------------------------------------------------------------------------
// Public keys

interface ParsedKey {
  /** What we send to the service: the npub or hex as typed (the service validates it). */
  send: string;
  /** The hex key when it could be decoded here (for the account lookup), else null. */
  hex: string | null;
}

const HEX64 = /^[0-9a-f]{64}$/;

function parseKey(raw: string): ParsedKey | null {
  let s = raw.trim();
  if (!s) return null;
  if (s.toLowerCase().startsWith('nostr:')) s = s.slice(6);
  if (HEX64.test(s.toLowerCase())) return { send: s.toLowerCase(), hex: s.toLowerCase() };
  try {
    const d = nip19Decode(s);
    if (d.type === 'npub') return { send: s, hex: d.data };
    if (d.type === 'nprofile') return { send: d.data.pubkey, hex: d.data.pubkey };
  } catch {
    /* not decodable here: let the service say why */
  }
  return { send: s, hex: null };
}

function npubOf(hex: string): string {
  try {
    return npubEncode(hex);
  } catch {
    return hex;
  }
}

// ---------------------------------------------------------------------------------------------
// State

interface Offer {
  product: Product;
  title: string;
  description: string;
  amountMsat: number | null; // null: the person chooses (credit)
}

const params = new URLSearchParams(location.search);

/** The refused event this page was opened for: `<page>/e/<event id>`, or `?event=<id>` (the long form). */
function heldEventIdFromUrl(): string | null {
  const m = /\/e\/([0-9a-f]{64})\/?$/.exec(location.pathname);
  return m ? m[1] : params.get('event');
}
const appName = document.body.dataset.appName || 'Nostr relay';

let pricing: Pricing | null = null;
let held: HeldEventView | null = null;
let offers: Offer[] = [];
let current: { invoice: InvoiceView; offer: Offer | null; pubkeyHex: string | null } | null = null;
let stream: EventSource | null = null;
let pollTimer: number | undefined;
let countdownTimer: number | undefined;
let wallet: WalletPayment | null = null;
let accountSeq = 0;

// ---------------------------------------------------------------------------------------------
// Products and prices

function publicationPricesExist(p: Pricing): boolean {
  return p.publication_msat > 0 || p.publication_per_kb_msat > 0 || Object.values(p.publication_kinds ?? {}).some((v) => v > 0);
}

function buildOffers(p: Pricing, heldEvent: HeldEventView | null): Offer[] {
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

function renderPricing(p: Pricing): void {
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
  for (const o of offers) {
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
  const initial = selectedBefore ?? (held ? 'event' : offers.length === 1 ? offers[0].product : undefined);
  if (initial) {
    const el = document.getElementById(`product-${initial}`) as HTMLInputElement | null;
    if (el) el.checked = true;
  }
  const nothing = offers.length === 0;
  show($('products-empty'), nothing);
  show($('buy-actions'), !nothing);
  onProductChange();
}

function selectedOffer(): Offer | null {
  const v = (document.querySelector('input[name=product]:checked') as HTMLInputElement | null)?.value;
  return offers.find((o) => o.product === v) ?? null;
}

function creditBounds(): { min: number; max: number } {
  const c = pricing?.credit ?? { min_msat: 1000, max_msat: 0 };
  return { min: Math.max(1, c.min_msat), max: c.max_msat };
}

/** The credit amount in msat, or an error to show. */
function creditAmount(): { msat: number } | { error: string } {
  const raw = $input('credit-amount').value.trim();
  if (!raw) return { error: 'Enter an amount in sats.' };
  const sats = Number(raw);
  if (!Number.isFinite(sats) || sats <= 0) return { error: 'Enter a positive number of sats.' };
  const msat = Math.round(sats * 1000);
  const { min, max } = creditBounds();
  if (msat < min || msat > max) return { error: `Choose between ${formatSats(min)} and ${formatSats(max)}.` };
  return { msat };
}

function setupCredit(p: Pricing): void {
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

function updateCreditHint(): void {
  const hint = $('credit-hint');
  const r = creditAmount();
  const per = pricing?.publication_msat ?? 0;
  if ('msat' in r && per > 0) {
    const n = Math.floor(r.msat / per);
    hint.textContent = `≈ ${n.toLocaleString('en-US')} event${n === 1 ? '' : 's'} at ${formatSats(per)} each.`;
  } else hint.textContent = '';
  for (const chip of $('credit-presets').querySelectorAll<HTMLButtonElement>('.chip')) {
    chip.setAttribute('aria-pressed', String($input('credit-amount').value === chip.dataset.sats));
  }
}

function onProductChange(): void {
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

// ---------------------------------------------------------------------------------------------
// Held event ("pay for this event")

function renderHeld(ev: HeldEventView): void {
  $('held-kind').textContent = `Kind ${ev.kind}${KIND_NAMES[String(ev.kind)] ? ` · ${KIND_NAMES[String(ev.kind)]}` : ''}`;
  $('held-price').textContent = formatSats(ev.amount_msat);
  $('held-id').textContent = shorten(ev.id, 10, 8);
  $('held-id').title = ev.id;
  const until = $('held-until');
  until.textContent = `${formatDate(ev.expires_at)} (${formatRelative(ev.expires_at, Date.now() + clock.offsetMs)})`;
  show($('held'), true);
}

// ---------------------------------------------------------------------------------------------
// Account

async function loadAccount(pubkeyHex: string | null, opts: { quiet?: boolean } = {}): Promise<AccountView | null> {
  const seq = ++accountSeq;
  const panel = $('account');
  if (!pubkeyHex) {
    show($('account-empty'), true);
    show($('account-details'), false);
    show($('account-error'), false);
    panel.dataset.state = 'empty';
    return null;
  }
  if (!opts.quiet) panel.setAttribute('aria-busy', 'true');
  try {
    let acct: AccountView;
    try {
      acct = await api.account(pubkeyHex);
    } catch (err) {
      if (err instanceof ApiError && err.status === 404) {
        acct = { pubkey: pubkeyHex, admitted: false, admitted_until: null, balance_msat: 0 };
      } else throw err;
    }
    if (seq !== accountSeq) return acct;
    renderAccount(acct);
    return acct;
  } catch (err) {
    if (seq === accountSeq) {
      $('account-error').textContent = err instanceof Error ? err.message : String(err);
      show($('account-error'), true);
    }
    return null;
  } finally {
    if (seq === accountSeq) panel.removeAttribute('aria-busy');
  }
}

function renderAccount(a: AccountView): void {
  const panel = $('account');
  panel.dataset.state = 'loaded';
  show($('account-empty'), false);
  show($('account-error'), false);
  show($('account-details'), true);
  const npub = npubOf(a.pubkey);
  const keyEl = $('account-pubkey');
  keyEl.textContent = shorten(npub, 14, 6);
  keyEl.title = npub;

  const now = nowSec();
  const admitted = a.admitted && (a.admitted_until === null || a.admitted_until > now);
  const adm = $('account-admitted');
  adm.dataset.admitted = String(admitted);
  adm.replaceChildren(h('span', { class: `badge ${admitted ? 'ok' : 'no'}` }, admitted ? 'Admitted' : 'Not admitted'));

  const until = $('account-admitted-until');
  if (!a.admitted && a.admitted_until === null) until.textContent = '—';
  else if (a.admitted_until === null) until.textContent = 'No expiry';
  else {
    const rel = formatRelative(a.admitted_until, Date.now() + clock.offsetMs);
    until.textContent = `${formatDate(a.admitted_until)} (${rel})`;
  }
  until.dataset.until = a.admitted_until === null ? '' : String(a.admitted_until);

  const bal = $('account-balance');
  bal.textContent = formatSats(a.balance_msat);
  bal.dataset.msat = String(a.balance_msat);
}

let accountDebounce: number | undefined;
function onPubkeyInput(): void {
  setFieldError($input('pubkey'), $('pubkey-error'), null);
  window.clearTimeout(accountDebounce);
  accountDebounce = window.setTimeout(() => {
    const k = parseKey($input('pubkey').value);
    void loadAccount(k?.hex ?? null);
  }, 350);
}

// ---------------------------------------------------------------------------------------------
// NIP-07

function detectExtension(): void {
  const btn = $button('nip07');
  if (window.nostr && btn.hidden) show(btn, true);
}

async function useExtension(): Promise<void> {
  const btn = $button('nip07');
  const input = $input('pubkey');
  if (!window.nostr) return;
  btn.disabled = true;
  try {
    const hex = (await window.nostr.getPublicKey()).toLowerCase();
    if (!HEX64.test(hex)) throw new Error('The extension returned an invalid public key.');
    input.value = npubEncode(hex);
    setFieldError(input, $('pubkey-error'), null);
    rememberPubkey(input.value);
    await loadAccount(hex);
  } catch (err) {
    const msg = err instanceof Error && err.message ? err.message : 'The extension did not share a key.';
    setFieldError(input, $('pubkey-error'), `Your extension did not give a key: ${msg}`);
  } finally {
    btn.disabled = false;
  }
}

function rememberPubkey(value: string): void {
  const url = new URL(location.href);
  url.searchParams.set('pubkey', value.trim());
  history.replaceState(null, '', url);
}

function rememberInvoice(id: string | null): void {
  const url = new URL(location.href);
  if (id) url.searchParams.set('invoice', id);
  else url.searchParams.delete('invoice');
  history.replaceState(null, '', url);
}

// ---------------------------------------------------------------------------------------------
// Invoice

async function onSubmit(ev: Event): Promise<void> {
  ev.preventDefault();
  const form = $('buy-form');
  const pubInput = $input('pubkey');
  const formError = $('form-error');
  setFieldError(null, formError, null);
  setFieldError(pubInput, $('pubkey-error'), null);
  setFieldError($input('credit-amount'), $('credit-error'), null);

  const offer = selectedOffer();
  // A held event is paid for under its author's key, whoever pays.
  const key = offer?.product === 'event' && held ? { send: held.pubkey, hex: held.pubkey } : parseKey(pubInput.value);
  let bad = false;
  if (!key) {
    setFieldError(pubInput, $('pubkey-error'), 'Enter your npub or hex public key.');
    bad = true;
  }
  if (!offer) {
    setFieldError(null, $('product-error'), 'Choose what to buy.');
    bad = true;
  }
  let amountMsat: number | undefined;
  if (offer?.product === 'credit') {
    const r = creditAmount();
    if ('error' in r) {
      setFieldError($input('credit-amount'), $('credit-error'), r.error);
      bad = true;
    } else amountMsat = r.msat;
  }
  if (bad || !key || !offer) {
    (form.querySelector('[aria-invalid=true]') as HTMLElement | null)?.focus();
    return;
  }

  const btn = $button('get-invoice');
  const label = btn.textContent;
  btn.disabled = true;
  btn.setAttribute('aria-busy', 'true');
  btn.textContent = 'Creating invoice…';
  try {
    const invoice = await api.createInvoice({
      pubkey: key.send,
      product: offer.product,
      ...(amountMsat !== undefined ? { amount_msat: amountMsat } : {}),
      ...(offer.product === 'event' && held ? { event_id: held.id } : {}),
    });
    if (pubInput.value.trim()) rememberPubkey(pubInput.value);
    showInvoice(invoice, offer, key.hex);
  } catch (err) {
    const msg = err instanceof Error ? err.message : String(err);
    // Put the service's words next to the field they are about, when we can tell which.
    if (err instanceof ApiError && err.status === 400 && /pubkey|npub|public key|\bkey\b/i.test(msg)) {
      setFieldError(pubInput, $('pubkey-error'), msg);
      pubInput.focus();
    } else if (err instanceof ApiError && err.status === 400 && offer.product === 'credit' && /amount|msat|credit/i.test(msg)) {
      setFieldError($input('credit-amount'), $('credit-error'), msg);
      $input('credit-amount').focus();
    } else {
      setFieldError(null, formError, msg);
    }
    formError.dataset.status = err instanceof ApiError ? String(err.status) : '';
  } finally {
    btn.disabled = false;
    btn.removeAttribute('aria-busy');
    btn.textContent = label;
  }
}

function stopWatching(): void {
  stream?.close();
  stream = null;
  window.clearInterval(pollTimer);
  pollTimer = undefined;
  window.clearInterval(countdownTimer);
  countdownTimer = undefined;
}

function showInvoice(invoice: InvoiceView, offer: Offer | null, pubkeyHex: string | null): void {
  stopWatching();
  wallet?.done();
  wallet = null;
  current = { invoice, offer, pubkeyHex };
  rememberInvoice(invoice.id);

  const panel = $('invoice');
  show($('invoice-placeholder'), false);
  show(panel, true);
  panel.dataset.status = invoice.status;
  $('invoice-what').textContent = `${offer ? offer.title : 'Invoice'} · ${formatSats(invoice.amount_msat)}`;
  $('invoice-amount').textContent = formatSats(invoice.amount_msat);
  $('bolt11').textContent = invoice.bolt11;
  const link = $('qr-link') as HTMLAnchorElement;
  link.href = `lightning:${invoice.bolt11}`;
  ($('open-wallet') as HTMLAnchorElement).href = `lightning:${invoice.bolt11}`;
  try {
    link.replaceChildren(qrSvg(invoice.bolt11, `QR code of the Lightning invoice for ${formatSats(invoice.amount_msat)}`));
  } catch {
    link.replaceChildren(h('span', { class: 'muted' }, 'QR code unavailable: copy the invoice below.'));
  }
  $('copy-feedback').textContent = '';
  updateStatus(invoice);

  const heading = $('invoice-title');
  heading.focus({ preventScroll: true });
  panel.scrollIntoView({ behavior: matchMedia('(prefers-reduced-motion: reduce)').matches ? 'auto' : 'smooth', block: 'nearest' });

  if (invoice.status === 'pending') watch(invoice.id);
}

function watch(id: string): void {
  // Live: Server-Sent Events from the service.
  if ('EventSource' in window) {
    const es = new EventSource(api.invoiceEventsUrl(id));
    stream = es;
    es.addEventListener('status', (e) => {
      try {
        const inv = JSON.parse((e as MessageEvent<string>).data) as InvoiceView;
        if (current && inv.id === current.invoice.id) updateStatus(inv);
      } catch {
        /* ignore a malformed message; polling covers us */
      }
    });
    es.onerror = () => {
      // The stream ends after paid/expired; if it broke earlier, the browser retries by itself.
      if (current?.invoice.status !== 'pending') es.close();
    };
  }
  // Safety net: some proxies buffer SSE, and phones drop connections while the wallet app is open.
  pollTimer = window.setInterval(() => void poll(), 'EventSource' in window ? 10_000 : 3_000);
  countdownTimer = window.setInterval(tick, 1000);
  tick();
}

async function poll(): Promise<void> {
  const cur = current;
  if (cur?.invoice.status !== 'pending') return;
  try {
    const inv = await api.invoice(cur.invoice.id);
    if (current === cur) updateStatus(inv);
  } catch {
    /* transient: the next poll or the stream will do */
  }
}

function tick(): void {
  if (!current) return;
  const inv = current.invoice;
  const left = inv.expires_at - nowSec();
  const el = $('invoice-countdown');
  if (inv.status !== 'pending') {
    el.textContent = '';
    return;
  }
  if (left <= 0) {
    el.textContent = 'Expired';
    // Ask the service: it is the judge of expiry (and of a last-second payment).
    void poll().then(() => {
      if (current?.invoice.id === inv.id && current.invoice.status === 'pending' && inv.expires_at - nowSec() < -5) {
        updateStatus({ ...inv, status: 'expired' });
      }
    });
    return;
  }
  el.textContent = `Expires in ${formatCountdown(left)}`;
  el.classList.toggle('soon', left < 60);
}

const STATUS_TEXT: Record<InvoiceView['status'], string> = {
  pending: 'Waiting for payment…',
  paid: 'Paid',
  expired: 'Expired',
};

function paidMessage(offer: Offer | null, inv: InvoiceView): string {
  switch (offer?.product) {
    case 'admission':
      return 'You are admitted. Your writes to this relay are accepted from now on.';
    case 'subscription':
      return 'Your subscription is active. Your writes to this relay are accepted.';
    case 'credit':
      return `${formatSats(inv.amount_msat)} were added to your balance.`;
    case 'event':
      return 'Thank you! Your held event is being published now.';
    default:
      return 'Thank you! The payment has been received.';
  }
}

function updateStatus(inv: InvoiceView): void {
  if (!current || current.invoice.id !== inv.id) return;
  const prev = current.invoice.status;
  // Never go back from a final state (a late "pending" from a slow poll must not undo "paid").
  if (prev !== 'pending' && inv.status === 'pending') return;
  current.invoice = inv;

  const panel = $('invoice');
  panel.dataset.status = inv.status;
  const status = $('invoice-status');
  status.dataset.status = inv.status;
  $('invoice-status-text').textContent = STATUS_TEXT[inv.status];
  const detail = $('invoice-status-detail');
  if (inv.status === 'pending') detail.textContent = 'Scan the QR code or copy the invoice into your Lightning wallet.';
  else if (inv.status === 'paid') detail.textContent = paidMessage(current.offer, inv);
  else detail.textContent = 'This invoice can no longer be paid. Get a new one to continue.';

  const final = inv.status !== 'pending';
  show($('invoice-pay-actions'), !final);
  show($('invoice-again'), final);
  $('invoice-again-button').textContent = inv.status === 'paid' ? 'Buy something else' : 'Get a new invoice';
  if (final) {
    stopWatching();
    rememberInvoice(null);
    $('invoice-countdown').textContent = '';
    wallet?.done();
    wallet = null;
  }
  if (inv.status === 'paid' && prev !== 'paid') {
    // The grant lands in the same transaction as "paid"; refresh twice in case of a replica lag.
    const hex = current.pubkeyHex ?? parseKey($input('pubkey').value)?.hex ?? null;
    void loadAccount(hex, { quiet: true }).then(() => window.setTimeout(() => void loadAccount(hex, { quiet: true }), 1500));
  }
  tick();
}

async function copyInvoice(): Promise<void> {
  if (!current) return;
  const text = current.invoice.bolt11;
  const fb = $('copy-feedback');
  let ok = false;
  try {
    await navigator.clipboard.writeText(text);
    ok = true;
  } catch {
    // Older browsers, or no permission: select the text and use the legacy command.
    const range = document.createRange();
    range.selectNodeContents($('bolt11'));
    const sel = getSelection();
    sel?.removeAllRanges();
    sel?.addRange(range);
    try {
      ok = document.execCommand('copy');
    } catch {
      ok = false;
    }
  }
  fb.textContent = ok ? 'Invoice copied.' : 'Could not copy: the invoice text is selected, copy it by hand.';
  const btn = $button('copy-button');
  btn.dataset.copied = String(ok);
  if (ok) {
    btn.textContent = 'Copied ✓';
    window.setTimeout(() => {
      btn.textContent = 'Copy invoice';
      btn.dataset.copied = 'false';
    }, 2000);
  }
}

function openWallet(): void {
  if (current?.invoice.status !== 'pending') return;
  const inv = current.invoice;
  try {
    initWallet(appName);
    wallet = payWithWallet(inv.bolt11, {
      onPaid: () => {
        // The wallet says it paid; the service will confirm through the stream. Check now.
        $('invoice-status-detail').textContent = 'Payment sent. Waiting for the relay to confirm…';
        void poll();
      },
    });
  } catch (err) {
    $('copy-feedback').textContent = `The wallet could not be opened: ${err instanceof Error ? err.message : String(err)}`;
  }
}

function resetInvoice(): void {
  const expired = current?.invoice.status === 'expired' && current.offer !== null;
  stopWatching();
  current = null;
  rememberInvoice(null);
  show($('invoice'), false);
  show($('invoice-placeholder'), true);
  // An expired invoice: mint a fresh one for the same choice straight away.
  if (expired) ($('buy-form') as HTMLFormElement).requestSubmit();
  else $button('get-invoice').focus();
}

// ---------------------------------------------------------------------------------------------
// Start

async function loadPricing(): Promise<void> {
  const err = $('pricing-error');
  show(err, false);
  try {
    pricing = await api.pricing();
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
      held = await api.held(eventId, parseKey(params.get('pubkey') ?? '')?.send);
      renderHeld(held);
      if (!params.get('pubkey') && !$input('pubkey').value) {
        $input('pubkey').value = npubOf(held.pubkey);
        void loadAccount(held.pubkey);
      }
    } catch (e) {
      held = null;
      const gone = e instanceof ApiError && e.status === 404;
      $('held-missing').textContent = gone
        ? 'That event is no longer waiting for payment: it was already paid for, or its hold expired. Buy access below, then publish it again.'
        : `The held event could not be loaded: ${e instanceof Error ? e.message : String(e)}`;
      show($('held-missing'), true);
    }
  }
  renderPricing(pricing);
  offers = buildOffers(pricing, held);
  setupCredit(pricing);
  renderOffers();
  $button('get-invoice').disabled = false;
}

async function resumeInvoice(id: string): Promise<void> {
  try {
    const inv = await api.invoice(id);
    showInvoice(inv, null, parseKey($input('pubkey').value)?.hex ?? null);
  } catch {
    rememberInvoice(null);
  }
}

function main(): void {
  document.documentElement.classList.add('js');
  const pubInput = $input('pubkey');
  const fromUrl = params.get('pubkey');
  if (fromUrl) pubInput.value = fromUrl.trim();

  $('buy-form').addEventListener('submit', (e) => void onSubmit(e));
  pubInput.addEventListener('input', onPubkeyInput);
  $('product-list').addEventListener('change', onProductChange);
  $input('credit-amount').addEventListener('input', () => {
    setFieldError($input('credit-amount'), $('credit-error'), null);
    updateCreditHint();
    onProductChange();
  });
  $('credit-presets').addEventListener('click', (e) => {
    const chip = (e.target as HTMLElement).closest<HTMLButtonElement>('.chip');
    if (!chip?.dataset.sats) return;
    $input('credit-amount').value = chip.dataset.sats;
    $input('credit-amount').dispatchEvent(new Event('input'));
  });
  $button('nip07').addEventListener('click', () => void useExtension());
  $button('copy-button').addEventListener('click', () => void copyInvoice());
  $button('wallet-pay').addEventListener('click', openWallet);
  $button('invoice-again-button').addEventListener('click', resetInvoice);
  $button('account-refresh').addEventListener('click', () => void loadAccount(parseKey(pubInput.value)?.hex ?? null));
  $button('pricing-retry').addEventListener('click', () => void loadPricing());
  $button('relay-copy').addEventListener('click', () => {
    void navigator.clipboard?.writeText($('relay-url').textContent ?? '').then(
      () => ($('relay-copy').textContent = 'Copied ✓'),
      () => undefined,
    );
  });
  document.addEventListener('visibilitychange', () => {
    if (document.visibilityState === 'visible') void poll();
  });

  // Bitcoin Connect: restores a wallet connected on an earlier visit (or given as #nwc=...).
  try {
    initWallet(appName);
  } catch {
    /* the QR code and copy button still work */
  }

  // NIP-07 extensions inject window.nostr at their own pace.
  detectExtension();
  for (const ms of [250, 1000, 3000]) window.setTimeout(detectExtension, ms);

  void loadPricing().then(() => {
    const inv = params.get('invoice');
    if (inv) void resumeInvoice(inv);
  });
  void loadAccount(parseKey(pubInput.value)?.hex ?? null);
}

main();
