/**
 * The pay page, in the browser. The HTML shell (html.ts) holds the static structure; this code loads
 * the prices, offers the products, mints an invoice on request, shows it (QR, copy, lightning: link,
 * Bitcoin Connect for WebLN/NWC), follows its status live (Server-Sent Events, with polling as a
 * safety net), and shows the account once it is paid.
 *
 * URL parameters: `pubkey` (npub or hex) prefills the key; `event` (a held event id, from a refused
 * write) offers to pay for that one event; `invoice` (set by the page itself) resumes an invoice
 * after a reload, e.g. when a phone comes back from its wallet app.
 *
 * This file wires the parts together: offers.ts (prices, products, credit, the held event),
 * account.ts (the key and its account), nip07.ts (the key from an extension), invoice.ts.
 */
import { loadAccount, onPubkeyInput, parseKey } from './account.ts';
import { $, $button, $input, setFieldError } from './dom.ts';
import { copyInvoice, openWallet, poll, resetInvoice, resumeInvoice, onSubmit } from './invoice.ts';
import { detectExtension, useExtension } from './nip07.ts';
import { loadPricing, onProductChange, updateCreditHint } from './offers.ts';
import { params, appName } from './state.ts';
import { initWallet } from './wallet.ts';

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
