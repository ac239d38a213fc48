/** The invoice: minted on request, shown (QR, copy, wallet), followed live until it is paid or expires. */
import type { InvoiceView } from '../api-types.ts';
import { loadAccount, parseKey, rememberPubkey } from './account.ts';
import { api, ApiError } from './api.ts';
import { $, $button, $input, h, setFieldError, show } from './dom.ts';
import { formatCountdown, formatSats } from './format.ts';
import { creditAmount, selectedOffer } from './offers.ts';
import { qrSvg } from './qr.ts';
import { appName, nowSec, page, type Offer } from './state.ts';
import { initWallet, payWithWallet, type WalletPayment } from './wallet.ts';

let current: { invoice: InvoiceView; offer: Offer | null; pubkeyHex: string | null } | null = null;
let stream: EventSource | null = null;
let pollTimer: number | undefined;
let countdownTimer: number | undefined;
let wallet: WalletPayment | null = null;

function rememberInvoice(id: string | null): void {
  const url = new URL(location.href);
  if (id) url.searchParams.set('invoice', id);
  else url.searchParams.delete('invoice');
  history.replaceState(null, '', url);
}

export async function onSubmit(ev: Event): Promise<void> {
  ev.preventDefault();
  const form = $('buy-form');
  const pubInput = $input('pubkey');
  const formError = $('form-error');
  setFieldError(null, formError, null);
  setFieldError(pubInput, $('pubkey-error'), null);
  setFieldError($input('credit-amount'), $('credit-error'), null);

  const offer = selectedOffer();
  // A held event is paid for under its author's key, whoever pays.
  const key = offer?.product === 'event' && page.held ? { send: page.held.pubkey, hex: page.held.pubkey } : parseKey(pubInput.value);
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
      ...(offer.product === 'event' && page.held ? { event_id: page.held.id } : {}),
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

export async function poll(): Promise<void> {
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

export async function copyInvoice(): Promise<void> {
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

export function openWallet(): void {
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

export function resetInvoice(): void {
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

export async function resumeInvoice(id: string): Promise<void> {
  try {
    const inv = await api.invoice(id);
    showInvoice(inv, null, parseKey($input('pubkey').value)?.hex ?? null);
  } catch {
    rememberInvoice(null);
  }
}
