/**
 * The admin dashboard, in the browser. Every call goes to the relay's NIP-86 endpoint (its URL
 * is in <body data-relay-url>), signed with NIP-98 by the admin's NIP-07 extension
 * (window.nostr.signEvent): one signature per request, so a stolen request cannot be replayed.
 * A key that is not an admin gets 401 from the relay and sees only "not an admin".
 */
import { npubEncode } from 'nostr-tools/nip19';
import type { WindowNostr } from 'nostr-tools/nip07';
import { getToken } from 'nostr-tools/nip98';
import uPlot from 'uplot';
import { PRICE_FIELDS, PRICE_KINDS_FIELD, SPAM_FIELDS, spamShown, spamStored } from './prices.ts';

declare global {
  interface Window {
    nostr?: WindowNostr;
  }
}

const RELAY = document.body.dataset.relayUrl ?? '';
const POLL_MS = 5000;

// ---------------------------------------------------------------------------------------------
// DOM helpers

function $(id: string): HTMLElement {
  const el = document.getElementById(id);
  if (!el) throw new Error(`dashboard: missing #${id}`);
  return el;
}
function h<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  attrs: Record<string, string | undefined> = {},
  ...children: Array<Node | string | null | undefined | false>
): HTMLElementTagNameMap[K] {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined) continue;
    if (k === 'class') el.className = v;
    else el.setAttribute(k, v);
  }
  for (const c of children) if (c !== null && c !== undefined && c !== false) el.append(c);
  return el;
}
const show = (el: HTMLElement, on: boolean) => (el.hidden = !on);

const npub = (hex: string) => {
  try {
    return npubEncode(hex);
  } catch {
    return hex;
  }
};
const shortKey = (hex: string) => {
  const n = npub(hex);
  return `${n.slice(0, 12)}…${n.slice(-6)}`;
};
const sats = (msat: number) => {
  const s = msat / 1000;
  return `${s.toLocaleString(undefined, { maximumFractionDigits: 3 })} sat${s === 1 ? '' : 's'}`;
};
const when = (t: number | null) => (t === null ? '–' : new Date(t * 1000).toLocaleString());
const count = (n: number) => n.toLocaleString();

// ---------------------------------------------------------------------------------------------
// NIP-86 over NIP-98

class RpcError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

async function rpc<T = any>(method: string, params: unknown[] = []): Promise<T> {
  const nostr = window.nostr;
  if (!nostr) throw new RpcError(0, 'no NIP-07 extension');
  const call = { method, params };
  // getToken hashes JSON.stringify(call) into the payload tag: the body is that same string.
  const auth = await getToken(RELAY, 'POST', (t) => nostr.signEvent(t), true, call);
  let res: Response;
  try {
    res = await fetch(RELAY, {
      method: 'POST',
      headers: { 'Content-Type': 'application/nostr+json+rpc', Authorization: auth },
      body: JSON.stringify(call),
    });
  } catch (err) {
    throw new RpcError(0, `the relay cannot be reached (${(err as Error).message})`);
  }
  let body: { result?: T; error?: string };
  try {
    body = (await res.json()) as typeof body;
  } catch {
    throw new RpcError(res.status, `the relay answered ${res.status} without JSON`);
  }
  if (res.status === 401) {
    notAdmin(body.error ?? 'unauthorized');
    throw new RpcError(401, body.error ?? 'unauthorized');
  }
  if (!res.ok || body.error) throw new RpcError(res.status, body.error ?? `HTTP ${res.status}`);
  return body.result as T;
}

function fail(err: unknown): void {
  if (err instanceof RpcError && err.status === 401) return; // shown as "not an admin"
  const el = $('error');
  el.textContent = (err as Error)?.message ?? String(err);
  show(el, true);
}
const clearError = () => show($('error'), false);

// ---------------------------------------------------------------------------------------------
// Sign-in

let me = '';

function notAdmin(why: string): void {
  stopPolling();
  show($('app'), false);
  show($('signin'), false);
  $('not-admin-key').textContent = me ? npub(me) : '';
  $('not-admin-why').textContent = `(${why})`;
  show($('not-admin'), true);
}

async function signIn(): Promise<void> {
  const err = $('signin-error');
  show(err, false);
  if (!window.nostr) {
    err.textContent = 'No NIP-07 extension found in this browser. Install one (nos2x, Alby, …) and reload.';
    show(err, true);
    return;
  }
  try {
    me = await window.nostr.getPublicKey();
    await rpc('supportedmethods');
  } catch (e) {
    if (e instanceof RpcError && e.status === 401) return;
    err.textContent = `Sign-in failed: ${(e as Error).message}`;
    show(err, true);
    return;
  }
  $('who').textContent = shortKey(me);
  $('who').title = npub(me);
  show($('who'), true);
  show($('sign-out'), true);
  show($('signin'), false);
  show($('app'), true);
  select('overview');
}

// ---------------------------------------------------------------------------------------------
// Tabs

const TABS = ['overview', 'invoices', 'members', 'moderation', 'pricing', 'info', 'audit'] as const;
type Tab = (typeof TABS)[number];
let current: Tab = 'overview';

function select(tab: Tab): void {
  current = tab;
  clearError();
  for (const t of TABS) {
    const b = $(`tab-${t}`);
    b.setAttribute('aria-selected', String(t === tab));
    b.tabIndex = t === tab ? 0 : -1;
    show($(`panel-${t}`), t === tab);
  }
  if (tab === 'overview') startPolling();
  else stopPolling();
  const load: Record<Tab, () => Promise<void>> = {
    overview: loadStats,
    invoices: () => loadInvoices(0),
    members: () => loadMembers(0),
    moderation: loadModeration,
    pricing: loadPrices,
    info: loadInfo,
    audit: () => loadAudit(undefined),
  };
  load[tab]().catch(fail);
}

// ---------------------------------------------------------------------------------------------
// Overview: figures and charts, polled

const PALETTE = ['#7c3aed', '#0891b2', '#ea580c', '#16a34a', '#db2777', '#ca8a04', '#2563eb', '#dc2626', '#64748b'];
let timer: number | undefined;
let inFlight = false;

function startPolling(): void {
  stopPolling();
  timer = window.setInterval(() => {
    if (!inFlight && !document.hidden) loadStats().catch(fail);
  }, POLL_MS);
}
function stopPolling(): void {
  if (timer !== undefined) window.clearInterval(timer);
  timer = undefined;
}

type Chart = { plot?: uPlot; keys: string };
const charts: Record<string, Chart> = { revenue: { keys: '' }, writes: { keys: '' } };

function chartWidth(el: HTMLElement): number {
  return Math.max(260, el.clientWidth || el.parentElement?.clientWidth || 600);
}
const chartHeight = () => (window.innerWidth < 600 ? 200 : 260);

/** Draws (or updates) one time-series chart: x in unix seconds, one series per key. */
function drawChart(name: string, el: HTMLElement, times: number[], series: Record<string, number[]>, unit: string, scale = 1): void {
  const keys = Object.keys(series).sort();
  const data: uPlot.AlignedData = [times, ...keys.map((k) => series[k].map((v) => v / scale))];
  const c = charts[name];
  let points = 0;
  for (const k of keys) for (const v of series[k]) if (v !== 0) points++;
  el.dataset.points = String(points);
  el.dataset.series = keys.join(',');
  if (c.plot && c.keys === keys.join(',')) {
    c.plot.setData(data);
    return;
  }
  c.plot?.destroy();
  el.textContent = '';
  if (keys.length === 0) {
    el.append(h('p', { class: 'empty muted' }, 'Nothing yet in this range.'));
    c.plot = undefined;
    c.keys = '';
    return;
  }
  c.keys = keys.join(',');
  c.plot = new uPlot(
    {
      width: chartWidth(el),
      height: chartHeight(),
      series: [
        {},
        ...keys.map((k, i) => ({
          label: k,
          stroke: PALETTE[i % PALETTE.length],
          fill: `${PALETTE[i % PALETTE.length]}22`,
          width: 2,
          points: { show: true, size: 5 },
          value: (_u: uPlot, v: number | null) => (v === null ? '–' : `${v.toLocaleString()} ${unit}`),
        })),
      ],
      axes: [
        { stroke: 'currentColor', grid: { stroke: '#8882' } },
        { stroke: 'currentColor', grid: { stroke: '#8882' }, size: 56 },
      ],
      scales: { y: { range: (_u, _min, max) => [0, Math.max(1, max * 1.1)] } },
      legend: { live: true },
      cursor: { drag: { x: false, y: false } },
    },
    data,
    el,
  );
}

window.addEventListener('resize', () => {
  for (const [name, c] of Object.entries(charts)) {
    const el = $(`chart-${name}`);
    c.plot?.setSize({ width: chartWidth(el), height: chartHeight() });
  }
});

const RANGES: Record<string, { seconds: number; bucket: 'hour' | 'day' }> = {
  '24h': { seconds: 86_400, bucket: 'hour' },
  '7d': { seconds: 7 * 86_400, bucket: 'hour' },
  '30d': { seconds: 30 * 86_400, bucket: 'day' },
};

async function loadStats(): Promise<void> {
  inFlight = true;
  try {
    const range = RANGES[($('range') as HTMLSelectElement).value] ?? RANGES['24h'];
    const to = Math.floor(Date.now() / 1000) + 1;
    const s = await rpc('stats', [{ from: to - range.seconds, to, bucket: range.bucket, minutes: 60 }]);
    $('fig-connections').textContent = count(s.live.connections);
    $('fig-subscriptions').textContent = count(s.live.subscriptions);
    $('fig-events').textContent = (s.live.eventsStoredEstimated ? '≈ ' : '') + count(s.live.eventsStored);
    $('fig-held').textContent = `${count(s.live.heldEvents)} (${(s.live.heldBytes / 1024).toFixed(1)} KiB)`;
    $('fig-received').textContent = sats(s.totals.receivedMsat);
    $('fig-granted').textContent = sats(s.totals.grantedMsat);
    drawChart('revenue', $('chart-revenue'), s.revenue.times, s.revenue.products, 'sats', 1000);
    drawChart('writes', $('chart-writes'), s.writes.minutes, s.writes.series, '/min');
    $('updated').textContent = new Date().toLocaleTimeString();
    $('updated').dataset.at = String(s.now);
  } finally {
    inFlight = false;
  }
}

// ---------------------------------------------------------------------------------------------
// Invoices

let invOffset = 0;
const PAGE = 25;

function formValues(form: HTMLFormElement): Record<string, string> {
  const out: Record<string, string> = {};
  new FormData(form).forEach((v, k) => (out[k] = String(v).trim()));
  return out;
}
const dayStart = (d: string) => (d ? Math.floor(new Date(`${d}T00:00:00`).getTime() / 1000) : undefined);

async function loadInvoices(offset: number): Promise<void> {
  const f = formValues($('invoice-filter') as HTMLFormElement);
  const to = dayStart(f.to);
  const r = await rpc('listinvoices', [
    {
      status: f.status || undefined,
      product: f.product || undefined,
      pubkey: f.pubkey || undefined,
      from: dayStart(f.from),
      to: to && to + 86_400,
      limit: PAGE,
      offset,
    },
  ]);
  invOffset = offset;
  const body = $('invoices');
  body.textContent = '';
  for (const inv of r.invoices) {
    const open = h(
      'button',
      { type: 'button', class: 'link', 'data-testid': 'invoice-open', 'data-id': inv.id },
      inv.id.slice(0, 10) + '…',
    );
    open.addEventListener('click', () => openInvoice(inv.id).catch(fail));
    body.append(
      h(
        'tr',
        { 'data-testid': 'invoice-row', 'data-status': inv.status, 'data-product': inv.product },
        h('td', { 'data-label': 'Created' }, when(inv.createdAt)),
        h('td', { 'data-label': 'Product' }, inv.product),
        h('td', { class: 'num', 'data-label': 'Amount' }, sats(inv.amountMsat)),
        h('td', { 'data-label': 'Status' }, h('span', { class: `pill ${inv.status}` }, inv.status)),
        h('td', { 'data-label': 'Pubkey' }, h('code', { title: npub(inv.pubkey) }, shortKey(inv.pubkey))),
        h('td', { 'data-label': 'Id' }, open),
      ),
    );
  }
  if (r.invoices.length === 0) body.append(h('tr', {}, h('td', { colspan: '6', class: 'muted' }, 'No invoices match.')));
  $('inv-page').textContent = r.total ? `${offset + 1}–${offset + r.invoices.length} of ${r.total}` : '';
  ($('inv-prev') as HTMLButtonElement).disabled = offset === 0;
  ($('inv-next') as HTMLButtonElement).disabled = r.nextOffset === null;
}

async function openInvoice(id: string): Promise<void> {
  const { invoice: inv, ledger } = await rpc('getinvoice', [id]);
  const el = $('invoice-detail');
  el.textContent = '';
  const rows = ledger.map((l: any) =>
    h(
      'tr',
      { 'data-testid': 'ledger-row' },
      h('td', { 'data-label': 'Account' }, h('code', {}, l.account)),
      h('td', { class: 'num', 'data-label': 'Amount' }, sats(l.amountMsat)),
      h('td', { 'data-label': 'Txid' }, h('code', { class: 'small' }, l.txid)),
      h('td', { 'data-label': 'Memo' }, l.memo),
    ),
  );
  el.append(
    h('h2', {}, `Invoice ${inv.id}`),
    h(
      'dl',
      { class: 'kv' },
      ...(
        [
          ['Status', inv.status],
          ['Product', inv.product],
          ['Amount', sats(inv.amountMsat)],
          ['Pubkey', npub(inv.pubkey)],
          ['Created', when(inv.createdAt)],
          ['Paid', when(inv.paidAt)],
          ['Expires', when(inv.expiresAt)],
          ['Event', inv.eventId ?? '–'],
          ['Payment hash', inv.paymentHash],
        ] as [string, string][]
      ).flatMap(([k, v]) => [h('dt', {}, k), h('dd', {}, h('code', { class: 'wrap-any' }, v))]),
    ),
    h('h3', {}, 'Ledger rows'),
    ledger.length
      ? h(
          'table',
          { class: 'table', 'data-testid': 'ledger-table' },
          h(
            'thead',
            {},
            h('tr', {}, h('th', {}, 'Account'), h('th', { class: 'num' }, 'Amount'), h('th', {}, 'Txid'), h('th', {}, 'Memo')),
          ),
          h('tbody', {}, ...rows),
        )
      : h('p', { class: 'muted' }, 'None: the invoice is not paid.'),
  );
  show(el, true);
  el.scrollIntoView({ block: 'nearest' });
}

// ---------------------------------------------------------------------------------------------
// Members and grants

let memOffset = 0;

async function loadMembers(offset: number): Promise<void> {
  const f = formValues($('member-search') as HTMLFormElement);
  const all = ($('member-search') as HTMLFormElement).elements.namedItem('all') as HTMLInputElement;
  const r = await rpc('listmembers', [{ q: f.q || undefined, all: all.checked, limit: PAGE, offset }]);
  memOffset = offset;
  const body = $('members');
  body.textContent = '';
  for (const m of r.members) {
    const pick = h('button', { type: 'button', class: 'ghost small', 'data-testid': 'member-pick' }, 'Grant…');
    pick.addEventListener('click', () => {
      ($('grant-form').querySelector('[name=pubkey]') as HTMLInputElement).value = npub(m.pubkey);
      $('grant-form').scrollIntoView({ block: 'nearest' });
    });
    const until = !m.admitted ? 'not admitted' : m.admittedUntil === null ? 'forever' : when(m.admittedUntil);
    body.append(
      h(
        'tr',
        { 'data-testid': 'member-row', 'data-pubkey': m.pubkey },
        h('td', { 'data-label': 'Pubkey' }, h('code', { title: npub(m.pubkey) }, shortKey(m.pubkey))),
        h('td', { 'data-label': 'Admitted until', 'data-testid': 'member-until' }, until),
        h('td', { class: 'num', 'data-label': 'Balance', 'data-testid': 'member-balance' }, sats(m.balanceMsat)),
        h('td', { 'data-label': 'Last write' }, when(m.lastEventAt)),
        h('td', {}, pick),
      ),
    );
  }
  if (r.members.length === 0) body.append(h('tr', {}, h('td', { colspan: '5', class: 'muted' }, 'No members match.')));
  $('mem-page').textContent = r.total ? `${offset + 1}–${offset + r.members.length} of ${r.total}` : '';
  ($('mem-prev') as HTMLButtonElement).disabled = offset === 0;
  ($('mem-next') as HTMLButtonElement).disabled = r.nextOffset === null;
}

async function grant(form: HTMLFormElement): Promise<void> {
  const f = formValues(form);
  const amount = Number(f.amount);
  const base = { pubkey: f.pubkey, reason: f.reason || undefined };
  const [method, params] =
    f.kind === 'admission'
      ? ['grantadmission', base]
      : f.kind === 'extend'
        ? ['extendadmission', { ...base, days: amount }]
        : ['grantcredit', { ...base, amount_msat: Math.round(amount * 1000) }];
  const r = await rpc(method, [params]);
  const a = r.account;
  $('grant-result').textContent =
    `Done: ${shortKey(a.pubkey)} is ${a.admitted ? (a.admittedUntil === null ? 'admitted forever' : `admitted until ${when(a.admittedUntil)}`) : 'not admitted'}, balance ${sats(a.balanceMsat)}.`;
  await loadMembers(memOffset);
}

// ---------------------------------------------------------------------------------------------
// Moderation

type ModList = { list: string; method: string; remove: string; value: (e: any) => string; label: (e: any) => string };
const MOD: ModList[] = [
  { list: 'bannedpubkeys', method: 'listbannedpubkeys', remove: 'unbanpubkey', value: (e) => e.pubkey, label: (e) => npub(e.pubkey) },
  { list: 'allowedpubkeys', method: 'listallowedpubkeys', remove: 'unallowpubkey', value: (e) => e.pubkey, label: (e) => npub(e.pubkey) },
  { list: 'bannedevents', method: 'listbannedevents', remove: 'allowevent', value: (e) => e.id, label: (e) => e.id },
  { list: 'allowedkinds', method: 'listallowedkinds', remove: 'disallowkind', value: (e) => String(e), label: (e) => `kind ${e}` },
  { list: 'blockedips', method: 'listblockedips', remove: 'unblockip', value: (e) => e.ip, label: (e) => e.ip },
];
const ADD: Record<string, string> = {
  bannedpubkeys: 'banpubkey',
  allowedpubkeys: 'allowpubkey',
  bannedevents: 'banevent',
  allowedkinds: 'allowkind',
  blockedips: 'blockip',
};

async function loadModeration(): Promise<void> {
  const [reported, ...lists] = await Promise.all([rpc('listeventsneedingmoderation'), ...MOD.map((m) => rpc<any[]>(m.method))]);
  MOD.forEach((m, i) => {
    const ul = document.querySelector(`[data-mod-list=${m.list}]`) as HTMLElement;
    ul.textContent = '';
    for (const e of lists[i]) {
      const rm = h('button', { type: 'button', class: 'ghost small', 'data-testid': `mod-remove-${m.list}` }, 'Remove');
      rm.addEventListener('click', () =>
        rpc(m.remove, [m.value(e)])
          .then(loadModeration)
          .catch(fail),
      );
      ul.append(
        h(
          'li',
          { 'data-testid': `mod-item-${m.list}`, 'data-value': m.value(e) },
          h('code', { class: 'wrap-any' }, m.label(e)),
          e.reason ? h('span', { class: 'muted small' }, e.reason) : null,
          rm,
        ),
      );
    }
    if (lists[i].length === 0) ul.append(h('li', { class: 'muted small' }, 'None.'));
  });
  const ul = $('reported');
  ul.textContent = '';
  for (const r of reported) {
    const ban = h('button', { type: 'button', class: 'danger small', 'data-testid': 'reported-ban' }, 'Ban event');
    const allow = h('button', { type: 'button', class: 'ghost small', 'data-testid': 'reported-allow' }, 'Keep');
    ban.addEventListener('click', () => rpc('banevent', [r.id, r.reason]).then(loadModeration).catch(fail));
    allow.addEventListener('click', () => rpc('allowevent', [r.id, 'reviewed']).then(loadModeration).catch(fail));
    ul.append(
      h(
        'li',
        { 'data-testid': 'reported-item', 'data-id': r.id },
        h('code', { class: 'wrap-any' }, r.id),
        h('span', { class: 'small' }, `${r.reports} report${r.reports === 1 ? '' : 's'}: ${r.reasons.join(', ') || 'no reason given'}`),
        h('span', { class: 'actions' }, ban, allow),
      ),
    );
  }
  if (reported.length === 0) ul.append(h('li', { class: 'muted small' }, 'Nothing reported.'));
}

// ---------------------------------------------------------------------------------------------
// Pricing: the stored prices (NIP-86 getprices / setprices) and their history

/** The spam policy as NIP-86 shows it (null: a database from before it was stored). */
type Spam = Record<string, number> & { enabled: boolean };
type Prices = Record<string, number> & { publication_kinds: Record<string, number>; spam: Spam | null };
let prices: Prices | undefined;

/** Fields in the form's order (the history lists them so). */
const ORDER = [...PRICE_FIELDS.map(([f]) => f), PRICE_KINDS_FIELD];
const UNITS = new Map(PRICE_FIELDS.map(([field, , unit]) => [field, unit]));
const LABELS = new Map<string, string>([...PRICE_FIELDS.map(([f, label]): [string, string] => [f, label]), [PRICE_KINDS_FIELD, 'by kind']]);
/** A form value in sats as integer msat (the form allows 3 decimals); NaN when it is not one. */
const toMsat = (v: string): number => {
  const m = Number(v) * 1000;
  return v.trim() !== '' && Math.abs(m - Math.round(m)) < 1e-6 ? Math.round(m) : Number.NaN;
};
/** `kind:sats, ...` in kind order. */
const kindsText = (k: Record<string, number>) =>
  Object.entries(k)
    .sort((a, b) => Number(a[0]) - Number(b[0]))
    .map(([kind, msat]) => `${kind}:${msat / 1000}`)
    .join(', ');
function parseKinds(text: string): Record<string, number> {
  const out: Record<string, number> = {};
  for (const part of text
    .split(',')
    .map((x) => x.trim())
    .filter(Boolean)) {
    const m = /^(\d{1,5})\s*:\s*(\S+)$/.exec(part);
    const msat = m ? toMsat(m[2]) : Number.NaN;
    if (!m || Number.isNaN(msat)) throw new Error(`"${part}" is not <kind>:<sats>`);
    out[String(Number(m[1]))] = msat;
  }
  return out;
}
const SPAM_UNIT = new Map(SPAM_FIELDS.map(([field, label, unit]) => [field, { label, unit }]));
const spamValue = (field: string, v: unknown): string => {
  if (field === 'enabled') return v ? 'on' : 'off';
  const f = SPAM_UNIT.get(field);
  return f ? `${spamShown(f.unit, v as number).toLocaleString()} ${f.unit}` : String(v);
};
const spamLabel = (field: string) => {
  const f = SPAM_UNIT.get(field);
  return field === 'enabled' ? 'spam pricing' : f ? `spam: ${f.label.toLowerCase()} (${f.unit})` : `spam: ${field}`;
};
/** What a history row changed in the spam policy, as text. */
function spamChanges(old: Spam | null | undefined, next: Spam | null | undefined, first: boolean): string[] {
  if (!next) return [];
  if (!old) return [first ? `spam pricing: ${spamValue('enabled', next.enabled)}` : 'spam policy stored (from the environment)'];
  return ['enabled', ...SPAM_FIELDS.map(([f]) => f)]
    .filter((f) => old[f] !== next[f])
    .map((f) => `${spamLabel(f)}: ${spamValue(f, old[f])} → ${spamValue(f, next[f])}`);
}
const shown = (field: string, v: unknown): string =>
  field === PRICE_KINDS_FIELD
    ? kindsText(v as Record<string, number>) || 'none'
    : UNITS.get(field) === 'seconds'
      ? `${v} s`
      : sats(v as number);

async function loadPrices(): Promise<void> {
  const [p, history] = await Promise.all([rpc<Prices>('getprices'), rpc('listpricechanges', [{ limit: 100 }]), loadTopSenders()]);
  prices = p;
  fillSpam(p.spam);
  const form = $('prices-form') as HTMLFormElement;
  for (const [field, , unit] of PRICE_FIELDS) {
    (form.elements.namedItem(field) as HTMLInputElement).value = String(unit === 'sats' ? p[field] / 1000 : p[field]);
  }
  (form.elements.namedItem(PRICE_KINDS_FIELD) as HTMLInputElement).value = kindsText(p.publication_kinds);
  const body = $('price-history');
  body.textContent = '';
  for (const c of history.changes) {
    const fields = ORDER.filter((f) => c.old === null || JSON.stringify(c.old[f]) !== JSON.stringify(c.new[f]));
    const what = fields.map((f) =>
      c.old === null
        ? `${LABELS.get(f) ?? f}: ${shown(f, c.new[f])}`
        : `${LABELS.get(f) ?? f}: ${shown(f, c.old[f])} → ${shown(f, c.new[f])}`,
    );
    what.push(...spamChanges(c.old?.spam, c.new.spam, c.old === null));
    body.append(
      h(
        'tr',
        { 'data-testid': 'price-change' },
        h('td', { 'data-label': 'When' }, when(c.at)),
        h(
          'td',
          { 'data-label': 'Who' },
          c.pubkey ? h('code', { title: npub(c.pubkey) }, shortKey(c.pubkey)) : 'the environment (first start)',
        ),
        h('td', { 'data-label': 'Changes' }, what.join('; ') || 'nothing'),
      ),
    );
  }
}

async function savePrices(form: HTMLFormElement): Promise<void> {
  if (!prices) return;
  const f = formValues(form);
  const change: Record<string, unknown> = {};
  for (const [field, label, unit] of PRICE_FIELDS) {
    const v = unit === 'sats' ? toMsat(f[field]) : Number(f[field]);
    if (!Number.isInteger(v)) throw new Error(`${label}: not a number of ${unit}`);
    if (v !== prices[field]) change[field] = v;
  }
  const kinds = parseKinds(f[PRICE_KINDS_FIELD] ?? '');
  if (kindsText(kinds) !== kindsText(prices.publication_kinds)) change[PRICE_KINDS_FIELD] = kinds;
  const names = Object.keys(change);
  if (names.length > 0) await rpc('setprices', [change]);
  $('prices-result').textContent = names.length ? `Saved (${names.map((n) => LABELS.get(n) ?? n).join(', ')}).` : 'Nothing changed.';
  await loadPrices();
}

function fillSpam(spam: Spam | null): void {
  const form = $('spam-form') as HTMLFormElement;
  // Before the policy is stored (an upgrade, until the next start seeds it) there is nothing to edit.
  for (const el of Array.from(form.elements)) (el as HTMLInputElement).disabled = spam === null;
  if (!spam) {
    $('spam-result').textContent = 'The spam policy is not stored yet: it is seeded from the environment on the next start.';
    return;
  }
  (form.elements.namedItem('enabled') as HTMLInputElement).checked = spam.enabled;
  for (const [field, , unit] of SPAM_FIELDS) {
    (form.elements.namedItem(field) as HTMLInputElement).value = String(spamShown(unit, spam[field]));
  }
}

/** The fields of the spam form that differ from the stored policy, as `setprices` takes them. */
function spamChange(form: HTMLFormElement, spam: Spam): Record<string, number | boolean> {
  const f = formValues(form);
  const change: Record<string, number | boolean> = {};
  const enabled = (form.elements.namedItem('enabled') as HTMLInputElement).checked;
  if (enabled !== spam.enabled) change.enabled = enabled;
  for (const [field, label, unit] of SPAM_FIELDS) {
    const v = spamStored(unit, f[field] ?? '');
    if (Number.isNaN(v)) throw new Error(`${label}: not a number of ${unit}`);
    if (v !== spam[field]) change[field] = v;
  }
  return change;
}

async function saveSpam(form: HTMLFormElement): Promise<void> {
  if (!prices?.spam) return;
  const change = spamChange(form, prices.spam);
  const names = Object.keys(change);
  if (names.length > 0) await rpc('setprices', [{ spam: change }]);
  $('spam-result').textContent = names.length ? `Saved (${names.map(spamLabel).join(', ')}).` : 'Nothing changed.';
  await loadPrices();
}

type TopSenders = { window_seconds: number; senders: { pubkey: string; events: number; bytes: number; multiplier: number }[] };

/** The senders with the most volume in the window (NIP-86 `listtopsenders`), or "not available" on a relay without it. */
async function loadTopSenders(): Promise<void> {
  const body = $('top-senders');
  const note = $('top-senders-note');
  let top: TopSenders;
  try {
    top = await rpc<TopSenders>('listtopsenders', [{ limit: 20 }]);
  } catch (err) {
    if (!(err instanceof RpcError) || !/unsupported method|unknown method|-32601/i.test(err.message)) throw err;
    body.textContent = '';
    note.textContent = 'Not available: this relay does not list its top senders.';
    return;
  }
  note.textContent =
    top.window_seconds > 0
      ? `By volume in the last ${durationText(top.window_seconds)}; the multiplier is what the next paid write of each costs, times the base.`
      : 'Spam pricing is off: no volume is counted.';
  body.textContent = '';
  for (const s of top.senders) {
    body.append(
      h(
        'tr',
        { 'data-testid': 'top-sender', 'data-pubkey': s.pubkey },
        h('td', { 'data-label': 'Pubkey' }, h('code', { class: 'wrap-any', title: s.pubkey }, npub(s.pubkey))),
        h('td', { 'data-label': 'Events' }, count(s.events)),
        h('td', { 'data-label': 'Bytes' }, count(s.bytes)),
        h('td', { 'data-label': 'Multiplier' }, `${count(s.multiplier)}×`),
      ),
    );
  }
  if (top.senders.length === 0) body.append(h('tr', {}, h('td', { colspan: '4', class: 'muted small' }, 'Nobody wrote in the window.')));
}

/** Seconds as a person reads a window: "hour", "2 hours", "10 minutes". */
function durationText(seconds: number): string {
  const [n, unit] = seconds % 3600 === 0 ? [seconds / 3600, 'hour'] : seconds % 60 === 0 ? [seconds / 60, 'minute'] : [seconds, 'second'];
  return n === 1 ? unit : `${count(n)} ${unit}s`;
}

// ---------------------------------------------------------------------------------------------
// Relay info (NIP-11)

let info: { name?: string; description?: string; icon?: string } = {};

async function loadInfo(): Promise<void> {
  const res = await fetch(RELAY, { headers: { Accept: 'application/nostr+json' } });
  info = (await res.json()) as typeof info;
  const form = $('info-form') as HTMLFormElement;
  (form.elements.namedItem('name') as HTMLInputElement).value = info.name ?? '';
  (form.elements.namedItem('description') as HTMLTextAreaElement).value = info.description ?? '';
  (form.elements.namedItem('icon') as HTMLInputElement).value = info.icon ?? '';
  $('info-current-name').textContent = info.name ?? '';
  $('info-current-desc').textContent = info.description ?? '';
  const img = $('info-icon-img') as HTMLImageElement;
  if (info.icon) img.src = info.icon;
  show(img, Boolean(info.icon));
}

async function saveInfo(form: HTMLFormElement): Promise<void> {
  const f = formValues(form);
  const changes: [string, string][] = [];
  if (f.name !== (info.name ?? '')) changes.push(['changerelayname', f.name]);
  if (f.description !== (info.description ?? '')) changes.push(['changerelaydescription', f.description]);
  if (f.icon && f.icon !== (info.icon ?? '')) changes.push(['changerelayicon', f.icon]);
  for (const [m, v] of changes) await rpc(m, [v]);
  $('info-result').textContent = changes.length
    ? `Saved (${changes.map((c) => c[0].replace('changerelay', '')).join(', ')}).`
    : 'Nothing changed.';
  await loadInfo();
}

// ---------------------------------------------------------------------------------------------
// Audit log

let auditNext: number | null = null;

async function loadAudit(before: number | undefined): Promise<void> {
  const r = await rpc('listauditlog', [{ limit: 50, before }]);
  auditNext = r.nextBefore;
  const body = $('audit');
  body.textContent = '';
  for (const e of r.entries) {
    body.append(
      h(
        'tr',
        { 'data-testid': 'audit-row', 'data-method': e.method },
        h('td', { 'data-label': 'When' }, when(e.at)),
        h('td', { 'data-label': 'Admin' }, h('code', { title: npub(e.pubkey) }, shortKey(e.pubkey))),
        h('td', { 'data-label': 'Method' }, h('code', {}, e.method)),
        h('td', { 'data-label': 'Params' }, h('code', { class: 'small wrap-any' }, JSON.stringify(e.params))),
      ),
    );
  }
  if (r.entries.length === 0) body.append(h('tr', {}, h('td', { colspan: '4', class: 'muted' }, 'No changes yet.')));
  ($('audit-next') as HTMLButtonElement).disabled = auditNext === null;
}

// ---------------------------------------------------------------------------------------------
// Wiring

function onSubmit(id: string, fn: (form: HTMLFormElement) => Promise<void>): void {
  const form = $(id) as HTMLFormElement;
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    clearError();
    fn(form).catch(fail);
  });
}

$('signin-button').addEventListener('click', () => void signIn());
$('sign-out').addEventListener('click', () => location.reload());
for (const t of TABS) $(`tab-${t}`).addEventListener('click', () => select(t));
$('tab-overview').parentElement!.addEventListener('keydown', (e) => {
  const i = TABS.indexOf(current);
  const next =
    e.key === 'ArrowRight' ? TABS[(i + 1) % TABS.length] : e.key === 'ArrowLeft' ? TABS[(i + TABS.length - 1) % TABS.length] : undefined;
  if (next) {
    select(next);
    $(`tab-${next}`).focus();
  }
});
$('range').addEventListener('change', () => loadStats().catch(fail));
onSubmit('invoice-filter', () => loadInvoices(0));
$('inv-prev').addEventListener('click', () => loadInvoices(Math.max(0, invOffset - PAGE)).catch(fail));
$('inv-next').addEventListener('click', () => loadInvoices(invOffset + PAGE).catch(fail));
onSubmit('member-search', () => loadMembers(0));
$('mem-prev').addEventListener('click', () => loadMembers(Math.max(0, memOffset - PAGE)).catch(fail));
$('mem-next').addEventListener('click', () => loadMembers(memOffset + PAGE).catch(fail));
onSubmit('grant-form', grant);
for (const form of document.querySelectorAll<HTMLFormElement>('[data-mod-form]')) {
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    clearError();
    const list = form.dataset.modForm!;
    const f = formValues(form);
    const params = list === 'allowedkinds' ? [f.value] : [f.value, f.reason ?? ''];
    rpc(ADD[list], params)
      .then(() => {
        form.reset();
        return loadModeration();
      })
      .catch(fail);
  });
}
onSubmit('prices-form', savePrices);
onSubmit('spam-form', saveSpam);
onSubmit('info-form', saveInfo);
$('audit-first').addEventListener('click', () => loadAudit(undefined).catch(fail));
$('audit-next').addEventListener('click', () => auditNext !== null && loadAudit(auditNext).catch(fail));
document.body.dataset.ready = 'true';
