/** The key the page pays for and its account (admission, balance), looked up as it is typed. */
import { decode as nip19Decode, npubEncode } from 'nostr-tools/nip19';
import type { AccountView, SenderView } from '../api-types.ts';
import { api, ApiError, clock } from './api.ts';
import { $, $input, h, setFieldError, show } from './dom.ts';
import { formatAllowanceLeft, formatDate, formatMultiplier, formatRelative, formatSats, shorten } from './format.ts';

export interface ParsedKey {
  /** What we send to the service: the npub or hex as typed (the service validates it). */
  send: string;
  /** The hex key when it could be decoded here (for the account lookup), else null. */
  hex: string | null;
}

export const HEX64 = /^[0-9a-f]{64}$/;

export function parseKey(raw: string): ParsedKey | null {
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

export function npubOf(hex: string): string {
  try {
    return npubEncode(hex);
  } catch {
    return hex;
  }
}

let accountSeq = 0;

export async function loadAccount(pubkeyHex: string | null, opts: { quiet?: boolean } = {}): Promise<AccountView | null> {
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
    // The sender's price now is extra: without it (an older service, an error) the account still shows.
    const sender = api.pricingFor(pubkeyHex).then(
      (p) => p.sender,
      () => undefined,
    );
    let acct: AccountView;
    try {
      acct = await api.account(pubkeyHex);
    } catch (err) {
      if (err instanceof ApiError && err.status === 404) {
        acct = { pubkey: pubkeyHex, admitted: false, admitted_until: null, balance_msat: 0 };
      } else throw err;
    }
    const s = await sender;
    if (seq !== accountSeq) return acct;
    renderAccount(acct);
    renderSender(s);
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

  const admitted = a.admitted;
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

/** The multiplier with its reason, and the allowance left today; hidden while spam pricing is off. */
function renderSender(s: SenderView | undefined): void {
  const allowance = s?.allowance;
  const left = s?.allowance_left;
  const on = Boolean(s && allowance && left);
  show($('account-price-row'), on);
  show($('account-allowance-row'), on);
  if (!s || !allowance || !left) return;
  const price = $('account-multiplier');
  price.textContent = formatMultiplier(s.multiplier, s.why);
  price.dataset.multiplier = String(s.multiplier);
  $('account-allowance').textContent = formatAllowanceLeft(left, allowance);
}

let accountDebounce: number | undefined;
export function onPubkeyInput(): void {
  setFieldError($input('pubkey'), $('pubkey-error'), null);
  window.clearTimeout(accountDebounce);
  accountDebounce = window.setTimeout(() => {
    const k = parseKey($input('pubkey').value);
    void loadAccount(k?.hex ?? null);
  }, 350);
}

export function rememberPubkey(value: string): void {
  const url = new URL(location.href);
  url.searchParams.set('pubkey', value.trim());
  history.replaceState(null, '', url);
}
