/**
 * The pay page's HTML shell: the whole static structure, so the page lays out before the script runs
 * and keeps its labels and landmarks for assistive technology. main.ts fills it in.
 */
import { escapeHtml, pageHead } from '@paidrelay/page';

const BOLT = `<svg class="bolt" viewBox="0 0 24 24" aria-hidden="true" focusable="false"><path d="M13.5 2 4 13.5h6.5L9.5 22 20 9.5h-6.6L13.5 2z" fill="currentColor"/></svg>`;

/** A lightning-bolt favicon as a data: URL, so the browser asks our server for nothing else. */
const FAVICON =
  "data:image/svg+xml,%3Csvg xmlns='http://www.w3.org/2000/svg' viewBox='0 0 24 24'%3E%3Crect width='24' height='24' rx='6' fill='%236d28d9'/%3E%3Cpath d='M13.5 3 5 13.2h5.8L9.9 21 19 10.3h-5.9L13.5 3z' fill='%23fbbf24'/%3E%3C/svg%3E";

export function renderShell(o: { title: string; jsUrl: string; cssUrl: string }): string {
  const title = escapeHtml(o.title);
  return `<!doctype html>
<html lang="en">
${pageHead({
  title: `Pay · ${o.title}`,
  description: `Pay with Lightning to write to the ${o.title} Nostr relay.`,
  favicon: FAVICON,
  cssUrl: o.cssUrl,
  jsUrl: o.jsUrl,
})}
<body data-app-name="${title}">
<a class="skip" href="#main">Skip to the payment form</a>
<header class="site">
  <div class="wrap site-inner">
    <p class="brand">${BOLT}<span>${title}</span></p>
    <p class="relay-chip"><span class="muted">Relay</span> <code id="relay-url" data-testid="relay-url">…</code>
      <button type="button" class="link-button" id="relay-copy" aria-label="Copy the relay address">Copy</button></p>
  </div>
</header>
<main id="main" class="wrap" tabindex="-1">
  <div class="intro">
    <h1>Pay to write to this relay</h1>
    <p class="lede">This Nostr relay is funded by its users. A small Lightning payment lets your key publish here and keeps spam out.</p>
  </div>
  <noscript><p class="alert">This page needs JavaScript to create an invoice. You can also pay through the relay's API at <code>/api/invoices</code>.</p></noscript>

  <div class="layout">
    <div class="col-main">
      <section id="held" class="card held" data-testid="held-event" aria-labelledby="held-title" hidden>
        <h2 id="held-title">Your event is waiting</h2>
        <p>The relay held this event because writing here needs a payment. Pay <strong id="held-price" data-testid="held-price"></strong> to publish just this event, or buy access below so your next writes go straight through.</p>
        <figure class="held-event">
          <figcaption><span id="held-kind"></span> · <code id="held-id"></code></figcaption>
        </figure>
        <p class="muted small">Held until <span id="held-until" data-testid="held-until"></span>.</p>
      </section>
      <p id="held-missing" class="notice" data-testid="held-missing" role="status" hidden></p>

      <form id="buy-form" class="card" novalidate aria-labelledby="buy-title">
        <h2 id="buy-title" class="sr-only">Buy write access</h2>
        <div class="step">
          <h3 class="step-title"><span class="step-num" aria-hidden="true">1</span><label for="pubkey">Your Nostr public key</label></h3>
          <div class="key-row">
            <input id="pubkey" name="pubkey" type="text" inputmode="text" autocomplete="off" autocapitalize="off" spellcheck="false"
              placeholder="npub1… or 64-character hex" data-testid="pubkey-input" aria-describedby="pubkey-help pubkey-error">
            <button type="button" id="nip07" class="secondary" data-testid="nip07-button" hidden>Use my extension</button>
          </div>
          <p id="pubkey-help" class="help">The key you publish with (npub or hex). What you buy is credited to this key.</p>
          <p id="pubkey-error" class="field-error" data-testid="pubkey-error" role="alert" hidden></p>
        </div>

        <fieldset class="step" aria-describedby="product-error">
          <legend class="step-title"><span class="step-num" aria-hidden="true">2</span>Choose what to buy</legend>
          <p id="pricing-error" class="alert" role="alert" hidden><span id="pricing-error-text"></span>
            <button type="button" id="pricing-retry" class="secondary small">Try again</button></p>
          <div id="product-list" class="options" data-testid="products" aria-busy="true">
            <p class="muted loading">Loading prices…</p>
            <div id="credit-box" class="credit-box" hidden>
              <label for="credit-amount">Amount to add <span class="muted">(sats)</span></label>
              <div class="credit-row">
                <input id="credit-amount" name="credit-amount" type="number" inputmode="decimal" step="any"
                  data-testid="credit-amount" aria-describedby="credit-range credit-hint credit-error">
                <span class="unit" aria-hidden="true">sats</span>
              </div>
              <div id="credit-presets" class="chips" role="group" aria-label="Suggested amounts"></div>
              <p class="help"><span id="credit-range"></span> <span id="credit-hint" data-testid="credit-hint"></span></p>
              <p id="credit-error" class="field-error" data-testid="credit-error" role="alert" hidden></p>
            </div>
          </div>
          <p id="products-empty" class="notice" data-testid="products-empty" hidden>This relay does not charge for writing: just add it to your Nostr client.</p>
          <p id="product-error" class="field-error" role="alert" hidden></p>
        </fieldset>

        <div id="buy-actions" class="step actions-row">
          <p id="form-error" class="alert" data-testid="form-error" role="alert" hidden></p>
          <button type="submit" id="get-invoice" class="primary" data-testid="get-invoice" disabled>Get invoice</button>
          <p class="help">Invoices are valid for a few minutes. Nothing is charged until you pay.</p>
        </div>
      </form>
    </div>

    <div class="col-side">
      <section id="invoice-placeholder" class="card placeholder" aria-hidden="true">
        <span class="step-num">3</span>
        <p>Your invoice appears here: scan it, copy it, or pay it from a connected wallet.</p>
      </section>

      <section id="invoice" class="card invoice" data-testid="invoice-panel" aria-labelledby="invoice-title" hidden>
        <h2 id="invoice-title" tabindex="-1"><span class="step-num" aria-hidden="true">3</span>Pay the invoice</h2>
        <p id="invoice-what" class="muted" data-testid="invoice-what"></p>
        <div id="invoice-status" class="status" data-testid="invoice-status" data-status="pending" role="status" aria-live="polite" aria-atomic="true">
          <span class="status-dot" aria-hidden="true"></span>
          <span class="status-body"><strong id="invoice-status-text">Waiting for payment…</strong>
          <span id="invoice-status-detail" class="status-detail"></span></span>
        </div>
        <p id="invoice-countdown" class="countdown" data-testid="invoice-countdown" aria-hidden="true"></p>
        <div class="qr-wrap">
          <a id="qr-link" class="qr" href="#" data-testid="qr-link" title="Open in a Lightning wallet on this device"></a>
          <div class="qr-paid" aria-hidden="true">${BOLT}<span>Paid</span></div>
        </div>
        <p class="amount-line">Amount <strong id="invoice-amount" data-testid="invoice-amount"></strong></p>
        <div id="invoice-pay-actions">
          <p class="bolt11-label" id="bolt11-label">Lightning invoice (BOLT11)</p>
          <p id="bolt11" class="bolt11" data-testid="bolt11" aria-labelledby="bolt11-label"></p>
          <div class="invoice-actions">
            <button type="button" id="copy-button" class="secondary" data-testid="copy-button">Copy invoice</button>
            <a id="open-wallet" class="button secondary" href="#" data-testid="open-wallet">Open wallet app</a>
            <button type="button" id="wallet-pay" class="primary" data-testid="wallet-pay">${BOLT}Pay with WebLN / NWC</button>
          </div>
          <p id="copy-feedback" class="small muted" role="status" aria-live="polite"></p>
        </div>
        <div id="invoice-again" hidden>
          <button type="button" id="invoice-again-button" class="secondary" data-testid="invoice-again">Get a new invoice</button>
        </div>
      </section>

      <section id="account" class="card account" data-testid="account" data-state="empty" aria-labelledby="account-title">
        <div class="card-head">
          <h2 id="account-title">Your account</h2>
          <button type="button" id="account-refresh" class="link-button" data-testid="account-refresh">Refresh</button>
        </div>
        <p id="account-empty" class="muted">Enter your public key to see your account.</p>
        <p id="account-error" class="field-error" role="alert" hidden></p>
        <dl id="account-details" class="facts" aria-live="polite" hidden>
          <div><dt>Key</dt><dd><code id="account-pubkey" data-testid="account-pubkey"></code></dd></div>
          <div><dt>Write access</dt><dd id="account-admitted" data-testid="account-admitted"></dd></div>
          <div><dt>Admitted until</dt><dd id="account-admitted-until" data-testid="account-admitted-until"></dd></div>
          <div><dt>Credit balance</dt><dd id="account-balance" data-testid="account-balance"></dd></div>
          <div id="account-price-row" hidden><dt>Your price now</dt><dd id="account-multiplier" data-testid="account-multiplier"></dd></div>
          <div id="account-allowance-row" hidden><dt>Daily allowance</dt><dd id="account-allowance" data-testid="account-allowance"></dd></div>
        </dl>
      </section>

      <section id="pricing" class="card pricing" data-testid="pricing" aria-labelledby="pricing-title">
        <h2 id="pricing-title">What writing costs</h2>
        <dl id="price-list" class="facts"></dl>
        <p id="price-free" class="muted" hidden>Writing is free on this relay.</p>
        <p id="zap-info" class="small muted" hidden>You can also zap <code id="ln-address" data-testid="lightning-address"></code> from any Nostr client: zaps are credited to the zapper's key.</p>
      </section>
    </div>
  </div>
</main>
<footer class="site-footer wrap">
  <p class="small muted">Payments are confirmed by the relay's Lightning wallet, never by this page. Amounts in sats (1 sat = 1,000 msat).</p>
</footer>
</body>
</html>
`;
}
