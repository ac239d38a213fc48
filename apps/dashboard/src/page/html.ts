/** The dashboard's HTML shell: the static structure of every tab; app.ts fills it in. */
import { escapeHtml, pageHead } from '@paidrelay/page';
import { PRICE_FIELDS, PRICE_KINDS_FIELD, SPAM_FIELDS } from './prices.ts';

const FAVICON =
  "data:image/svg+xml,%3Csvg xmlns='http://www.w3.org/2000/svg' viewBox='0 0 24 24'%3E%3Crect width='24' height='24' rx='6' fill='%23334155'/%3E%3Cpath d='M5 18V9m5 9V5m5 13v-6m5 6V8' stroke='%23fbbf24' stroke-width='2.5' stroke-linecap='round'/%3E%3C/svg%3E";

const TABS: [id: string, label: string][] = [
  ['overview', 'Overview'],
  ['invoices', 'Invoices'],
  ['members', 'Members'],
  ['moderation', 'Moderation'],
  ['pricing', 'Pricing'],
  ['info', 'Relay info'],
  ['audit', 'Audit log'],
];

const MOD_FORMS: [list: string, title: string, placeholder: string, withReason: boolean][] = [
  ['bannedpubkeys', 'Banned pubkeys', 'npub or hex pubkey', true],
  ['allowedpubkeys', 'Allowed pubkeys (write free)', 'npub or hex pubkey', true],
  ['bannedevents', 'Banned events', 'event id (hex)', true],
  ['allowedkinds', 'Allowed kinds (empty: every kind)', 'kind number', false],
  ['blockedips', 'Blocked addresses', '1.2.3.4, 2001:db8::1 or 10.0.0.0/8', true],
];

export function renderShell(o: { title: string; relayUrl: string; jsUrl: string; cssUrl: string }): string {
  const title = escapeHtml(o.title);
  const tabs = TABS.map(
    ([id, label], i) =>
      `<button type="button" role="tab" id="tab-${id}" data-tab="${id}" data-testid="tab-${id}" aria-controls="panel-${id}" aria-selected="${i === 0}"${i === 0 ? '' : ' tabindex="-1"'}>${label}</button>`,
  ).join('');
  const mod = MOD_FORMS.map(
    ([list, t, ph, reason]) => `
    <section class="card" aria-labelledby="mod-${list}-title">
      <h3 id="mod-${list}-title">${t}</h3>
      <form class="inline-form" data-mod-form="${list}" data-testid="mod-form-${list}">
        <input name="value" required placeholder="${ph}" aria-label="${ph}" data-testid="mod-value-${list}">
        ${reason ? `<input name="reason" placeholder="reason (optional)" aria-label="reason" data-testid="mod-reason-${list}">` : ''}
        <button type="submit" data-testid="mod-add-${list}">Add</button>
      </form>
      <ul class="list" data-mod-list="${list}" data-testid="mod-list-${list}"></ul>
    </section>`,
  ).join('');
  const prices = PRICE_FIELDS.map(
    ([field, label, unit]) =>
      `<label>${label} (${unit}) <input name="${field}" type="number" min="${unit === 'seconds' ? 1 : 0}" step="${unit === 'seconds' ? 1 : 0.001}" required data-testid="price-${field}"></label>`,
  ).join('');
  const spam = SPAM_FIELDS.map(
    ([field, label, unit, help]) =>
      `<label>${label} (${unit}) <input name="${field}" type="number" min="${field === 'max_multiplier' ? 1 : 0}" step="any" required data-testid="spam-${field}" aria-describedby="help-${field}"><span id="help-${field}" class="muted small">${help}</span></label>`,
  ).join('');
  return `<!doctype html>
<html lang="en">
${pageHead({ title: `Dashboard · ${o.title}`, favicon: FAVICON, cssUrl: o.cssUrl, jsUrl: o.jsUrl })}
<body data-relay-url="${escapeHtml(o.relayUrl)}">
<header class="top">
  <div class="wrap top-inner">
    <p class="brand"><span class="dot" aria-hidden="true"></span>${title} <span class="muted">admin</span></p>
    <p class="who"><code id="relay-url" class="small" data-testid="relay-url">${escapeHtml(o.relayUrl)}</code>
      <span id="who" data-testid="who" hidden></span>
      <button type="button" id="sign-out" class="ghost" hidden>Sign out</button></p>
  </div>
</header>
<main class="wrap" id="main">
  <section id="signin" class="card signin" data-testid="signin" aria-labelledby="signin-title">
    <h1 id="signin-title">Sign in</h1>
    <p>Sign in with your Nostr key through a NIP-07 browser extension (nos2x, Alby, …). Every request to the relay is signed by it (NIP-98); only the keys in the relay's <code>ADMIN_PUBKEYS</code> get an answer.</p>
    <button type="button" id="signin-button" class="primary" data-testid="signin-button">Sign in with extension</button>
    <p id="signin-error" class="alert" role="alert" data-testid="signin-error" hidden></p>
  </section>
  <section id="not-admin" class="card alert-card" data-testid="not-admin" role="alert" hidden>
    <h1>Not an admin</h1>
    <p>The relay refused this key: <code id="not-admin-key"></code> is not one of its admins. <span id="not-admin-why" class="muted"></span></p>
  </section>

  <div id="app" hidden>
    <nav class="tabs" role="tablist" aria-label="Dashboard sections">${tabs}</nav>
    <p id="error" class="alert" role="alert" data-testid="error" hidden></p>

    <section id="panel-overview" role="tabpanel" aria-labelledby="tab-overview" data-testid="panel-overview">
      <div class="figures">
        <div class="figure"><span class="label">Connections</span><strong id="fig-connections" data-testid="fig-connections">–</strong></div>
        <div class="figure"><span class="label">Subscriptions</span><strong id="fig-subscriptions" data-testid="fig-subscriptions">–</strong></div>
        <div class="figure"><span class="label">Events stored</span><strong id="fig-events" data-testid="fig-events">–</strong></div>
        <div class="figure"><span class="label">Held, awaiting payment</span><strong id="fig-held" data-testid="fig-held">–</strong></div>
        <div class="figure"><span class="label">Received</span><strong id="fig-received" data-testid="fig-received">–</strong></div>
        <div class="figure"><span class="label">Granted by admins</span><strong id="fig-granted" data-testid="fig-granted">–</strong></div>
      </div>
      <section class="card chart-card" aria-labelledby="rev-title">
        <div class="card-head">
          <h2 id="rev-title">Revenue by product</h2>
          <label class="small">Range
            <select id="range" data-testid="range">
              <option value="24h">24 hours, hourly</option>
              <option value="7d">7 days, hourly</option>
              <option value="30d">30 days, daily</option>
            </select></label>
        </div>
        <div id="chart-revenue" class="chart" data-testid="chart-revenue" data-points="0"></div>
        <p class="muted small">Sats received per bucket (paid invoices and publication debits). Admin grants are not revenue: see the ledger's <code>grant:admin</code>.</p>
      </section>
      <section class="card chart-card" aria-labelledby="writes-title">
        <div class="card-head"><h2 id="writes-title">Writes per minute</h2><span class="muted small">last hour, this relay process</span></div>
        <div id="chart-writes" class="chart" data-testid="chart-writes" data-points="0"></div>
      </section>
      <p class="muted small">Updated <span id="updated" data-testid="updated">never</span>; every 5 s while this tab is open.</p>
    </section>

    <section id="panel-invoices" role="tabpanel" aria-labelledby="tab-invoices" data-testid="panel-invoices" hidden>
      <form id="invoice-filter" class="card filters">
        <label>Status <select name="status" data-testid="inv-status"><option value="">any</option><option>pending</option><option>paid</option><option>expired</option></select></label>
        <label>Product <select name="product" data-testid="inv-product"><option value="">any</option><option>admission</option><option>subscription</option><option>credit</option><option>event</option><option>zap</option></select></label>
        <label class="grow">Pubkey <input name="pubkey" placeholder="npub or hex" data-testid="inv-pubkey"></label>
        <label>From <input name="from" type="date"></label>
        <label>To <input name="to" type="date"></label>
        <button type="submit" class="primary" data-testid="inv-search">Search</button>
      </form>
      <div class="card table-card">
        <table class="table" data-testid="invoices-table">
          <thead><tr><th>Created</th><th>Product</th><th class="num">Amount</th><th>Status</th><th>Pubkey</th><th>Id</th></tr></thead>
          <tbody id="invoices"></tbody>
        </table>
        <div class="pager"><button type="button" id="inv-prev">Newer</button><span id="inv-page" class="muted small"></span><button type="button" id="inv-next">Older</button></div>
      </div>
      <section id="invoice-detail" class="card" data-testid="invoice-detail" hidden></section>
    </section>

    <section id="panel-members" role="tabpanel" aria-labelledby="tab-members" data-testid="panel-members" hidden>
      <form id="member-search" class="card filters">
        <label class="grow">Search <input name="q" placeholder="npub1… or hex prefix" data-testid="member-q"></label>
        <label class="check"><input type="checkbox" name="all" data-testid="member-all"> every account (also not admitted)</label>
        <button type="submit" class="primary" data-testid="member-search">Search</button>
      </form>
      <form id="grant-form" class="card filters" data-testid="grant-form">
        <h2 class="full">Grant</h2>
        <label class="grow">Pubkey <input name="pubkey" required placeholder="npub or hex" data-testid="grant-pubkey"></label>
        <label>What <select name="kind" data-testid="grant-kind">
          <option value="admission">admission (forever)</option>
          <option value="extend">extend admission by days</option>
          <option value="credit">credit in sats</option></select></label>
        <label>Amount <input name="amount" type="number" min="1" step="1" value="30" data-testid="grant-amount"></label>
        <label class="grow">Reason <input name="reason" placeholder="optional" data-testid="grant-reason"></label>
        <button type="submit" class="primary" data-testid="grant-submit">Grant</button>
        <p id="grant-result" class="full muted small" role="status" data-testid="grant-result"></p>
      </form>
      <div class="card table-card">
        <table class="table" data-testid="members-table">
          <thead><tr><th>Pubkey</th><th>Admitted until</th><th class="num">Balance</th><th>Last write</th><th></th></tr></thead>
          <tbody id="members"></tbody>
        </table>
        <div class="pager"><button type="button" id="mem-prev">Previous</button><span id="mem-page" class="muted small"></span><button type="button" id="mem-next">Next</button></div>
      </div>
    </section>

    <section id="panel-moderation" role="tabpanel" aria-labelledby="tab-moderation" data-testid="panel-moderation" hidden>
      <section class="card" aria-labelledby="reported-title">
        <h2 id="reported-title">Events needing moderation</h2>
        <p class="muted small">Reported with NIP-56 (kind 1984) and not yet banned or allowed, most reported first.</p>
        <ul class="list" id="reported" data-testid="reported"></ul>
      </section>
      <div class="grid2">${mod}
      </div>
    </section>

    <section id="panel-pricing" role="tabpanel" aria-labelledby="tab-pricing" data-testid="panel-pricing" hidden>
      <form id="prices-form" class="card stack" data-testid="prices-form">
        <p class="muted small">What every relay replica and the pay page charge, in sats (to the msat). A change takes effect everywhere within a second. The environment's <code>PRICE_*</code> values only seeded these on the first start.</p>
        ${prices}
        <label>Publication by kind (sats), overriding the per-event price <input name="${PRICE_KINDS_FIELD}" placeholder="1:0.1, 30023:5" data-testid="price-${PRICE_KINDS_FIELD}"></label>
        <button type="submit" class="primary" data-testid="prices-save">Save prices</button>
        <p id="prices-result" class="muted small" role="status" data-testid="prices-result"></p>
      </form>
      <form id="spam-form" class="card stack" data-testid="spam-form" aria-labelledby="spam-title">
        <h2 id="spam-title">Spam pricing</h2>
        <p class="muted small">A daily allowance per key that grows with trust, and beyond it a price that doubles with the sender's and its network's volume in the window, up to the cap. Every replica and the pay page follow a change within a second; the environment's <code>SPAM_PRICING</code>, <code>ALLOWANCE_*</code>, <code>TRUST_*</code> and <code>SURGE_*</code> only seeded these.</p>
        <label class="check"><input name="enabled" type="checkbox" data-testid="spam-enabled"> Spam pricing on <span class="muted small">Off: admitted keys write without an allowance and prices never surge (the values are kept).</span></label>
        ${spam}
        <button type="submit" class="primary" data-testid="spam-save">Save spam pricing</button>
        <p id="spam-result" class="muted small" role="status" data-testid="spam-result"></p>
      </form>
      <section class="card table-card" aria-labelledby="top-senders-title">
        <h2 id="top-senders-title">Top senders</h2>
        <p id="top-senders-note" class="muted small" data-testid="top-senders-note"></p>
        <table class="table" data-testid="top-senders">
          <thead><tr><th>Pubkey</th><th>Events</th><th>Bytes</th><th>Multiplier</th></tr></thead>
          <tbody id="top-senders"></tbody>
        </table>
      </section>
      <section class="card table-card" aria-labelledby="price-history-title">
        <h2 id="price-history-title">Change history</h2>
        <table class="table" data-testid="price-history">
          <thead><tr><th>When</th><th>Who</th><th>Changes</th></tr></thead>
          <tbody id="price-history"></tbody>
        </table>
      </section>
    </section>

    <section id="panel-info" role="tabpanel" aria-labelledby="tab-info" data-testid="panel-info" hidden>
      <form id="info-form" class="card stack">
        <div class="info-head"><img id="info-icon-img" alt="" width="56" height="56" hidden><div><strong id="info-current-name"></strong><p id="info-current-desc" class="muted small"></p></div></div>
        <label>Name <input name="name" data-testid="info-name" maxlength="200"></label>
        <label>Description <textarea name="description" rows="4" data-testid="info-description" maxlength="4000"></textarea></label>
        <label>Icon URL <input name="icon" type="url" placeholder="https://…" data-testid="info-icon"></label>
        <button type="submit" class="primary" data-testid="info-save">Save</button>
        <p id="info-result" class="muted small" role="status" data-testid="info-result"></p>
      </form>
    </section>

    <section id="panel-audit" role="tabpanel" aria-labelledby="tab-audit" data-testid="panel-audit" hidden>
      <div class="card table-card">
        <table class="table" data-testid="audit-table">
          <thead><tr><th>When</th><th>Admin</th><th>Method</th><th>Params</th></tr></thead>
          <tbody id="audit"></tbody>
        </table>
        <div class="pager"><button type="button" id="audit-first">Newest</button><span></span><button type="button" id="audit-next">Older</button></div>
      </div>
    </section>
  </div>
</main>
</body>
</html>
`;
}
