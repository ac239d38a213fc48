/**
 * The admin dashboard in a real browser (Debian's headless Chromium through playwright-core)
 * against the real stack: relay + admission + the dev Lightning network, on Postgres when
 * TEST_DATABASE_URL is set, and the dashboard's own server. The browser has a NIP-07 signer
 * (window.nostr) whose key lives in this test process: every NIP-86 call the page makes is
 * NIP-98-signed by it through page.exposeFunction.
 *
 * Real data: a member pays admission with the payer NWC wallet, writes are accepted and
 * refused over WebSockets; the page's charts and figures must show them. Then an admin bans
 * the member in the Moderation tab and the relay refuses the member's next write; a non-admin
 * key sees only "not an admin". Screenshots (desktop and phone) go to a temp dir.
 *
 * Needs /usr/bin/chromium (or CHROMIUM_PATH); without it the suite is skipped with a message,
 * unless PAYPAGE_REQUIRE_BROWSER=1 makes that a failure.
 */
import { existsSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { chromium, type Browser, type BrowserContext, type Page } from 'playwright-core';
import { finalizeEvent, generateSecretKey, getPublicKey, type EventTemplate } from 'nostr-tools/pure';
import { npubEncode } from 'nostr-tools/nip19';
import { NWCClient } from '@paidrelay/lightning';
import { createLogger, loadConfig } from '@paidrelay/config';
import { getAccount } from '@paidrelay/db';
import { startDashboard, type Dashboard } from '../apps/dashboard/src/index.ts';
import { RawClient, sign, until } from '../apps/relay/test/harness.ts';
import { startStack, type TestStack } from './stack.ts';

const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
const haveBrowser = existsSync(CHROMIUM);
if (!haveBrowser) {
  const msg = `dashboard browser test: no Chromium at ${CHROMIUM} (apt-get install -y chromium)`;
  if (process.env.PAYPAGE_REQUIRE_BROWSER === '1') throw new Error(msg);
  console.warn(`${msg}: skipped`);
}

const BROWSER_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-background-networking',
  '--disable-quic',
  '--no-first-run',
  '--disable-component-update',
  '--disable-sync',
];

function newKey() {
  const sk = generateSecretKey();
  const pk = getPublicKey(sk);
  return { sk, pk, npub: npubEncode(pk) };
}
type Key = ReturnType<typeof newKey>;

describe.skipIf(!haveBrowser)('admin dashboard in a browser, against the real stack', () => {
  const admin = newKey();
  const outsider = newKey();
  const member = newKey();
  const stranger = newKey();
  let t: TestStack;
  let dashboard: Dashboard;
  let browser: Browser;
  let payer: NWCClient;
  let c: RawClient;
  const shots = mkdtempSync(join(tmpdir(), 'dashboard-shots-'));
  /** Requests to anywhere but the dashboard and the relay: must stay empty (no CDN). */
  const foreign: string[] = [];
  const pageErrors: string[] = [];
  /** NIP-98 events the in-page signer made, per key. */
  const signed = new Map<string, EventTemplate[]>();

  beforeAll(async () => {
    t = await startStack(
      {
        ADMIN_PUBKEYS: admin.npub,
        PRICE_ADMISSION_MSAT: '21000',
        PRICE_EVENT_MSAT: '5000',
        RATE_EVENTS_PER_IP: '0',
        RATE_EVENTS_PER_PUBKEY: '0',
        RATE_REQS_PER_IP: '0',
      },
      { backend: process.env.TEST_DATABASE_URL ? 'postgres' : 'pglite' },
    );
    const config = loadConfig({ HOST: '127.0.0.1', LOG_LEVEL: 'silent', RELAY_NAME: 'Test relay' });
    dashboard = await startDashboard(config, createLogger('silent', 'dashboard-test'), { relayUrl: t.relayUrl, port: 0 });
    payer = new NWCClient({ nostrWalletConnectUrl: t.payerNwc });
    c = await RawClient.open(t.relayUrl);
    browser = await chromium.launch({ executablePath: CHROMIUM, args: BROWSER_ARGS });
  }, 120_000);

  afterAll(async () => {
    c?.close();
    payer?.close();
    await browser?.close();
    await dashboard?.close();
    await t?.stop();
  }, 60_000);

  /** A browser context whose window.nostr signs with `key` in this process. */
  async function signerContext(key: Key, viewport: { width: number; height: number }, mobile = false): Promise<BrowserContext> {
    const ctx = await browser.newContext({ viewport, ...(mobile ? { isMobile: true, hasTouch: true, deviceScaleFactor: 2 } : {}) });
    const relayOrigin = new URL(t.relayUrl.replace(/^ws/, 'http')).origin;
    const own = new URL(dashboard.url).origin;
    ctx.on('request', (r) => {
      const u = r.url();
      if (!u.startsWith(own) && !u.startsWith(relayOrigin) && !u.startsWith('data:')) foreign.push(u);
    });
    await ctx.exposeFunction('__testNip07PublicKey', () => key.pk);
    await ctx.exposeFunction('__testNip07Sign', (tmpl: EventTemplate) => {
      const list = signed.get(key.pk) ?? [];
      list.push(tmpl);
      signed.set(key.pk, list);
      return finalizeEvent(tmpl, key.sk);
    });
    await ctx.addInitScript(() => {
      const w = window as unknown as Record<string, (...a: unknown[]) => Promise<unknown>>;
      (window as unknown as { nostr: unknown }).nostr = {
        getPublicKey: () => w.__testNip07PublicKey(),
        signEvent: (e: unknown) => w.__testNip07Sign(e),
      };
    });
    return ctx;
  }

  async function open(ctx: BrowserContext): Promise<Page> {
    const page = await ctx.newPage();
    page.on('pageerror', (e) => pageErrors.push(e.message));
    await page.goto(dashboard.url);
    await page.locator('body[data-ready=true]').waitFor();
    return page;
  }

  async function signIn(page: Page): Promise<void> {
    await page.getByTestId('signin-button').click();
    await page.getByTestId('panel-overview').waitFor();
  }

  async function publish(ev: ReturnType<typeof sign>) {
    c.send(['EVENT', ev]);
    const m = await c.ok(ev.id);
    return { ok: m[2] as boolean, reason: m[3] as string };
  }

  async function api(path: string, json: unknown) {
    const res = await fetch(t.apiBase + path, {
      method: 'POST',
      body: JSON.stringify(json),
      headers: { 'Content-Type': 'application/json' },
    });
    return (await res.json()) as Record<string, any>;
  }

  const points = async (page: Page, chart: string) => Number(await page.getByTestId(chart).getAttribute('data-points'));
  const series = async (page: Page, chart: string) => ((await page.getByTestId(chart).getAttribute('data-series')) ?? '').split(',');

  it('signs in an admin; the charts and figures fill from real writes and a real Lightning payment; polling follows new data', async () => {
    // Real data first: one refused write (not paid), then admission paid over NWC, then writes.
    const refused = await publish(sign(member.sk, { content: 'before paying' }));
    expect(refused.ok).toBe(false);
    expect(refused.reason).toMatch(/^blocked: payment required/);
    expect((await publish(sign(stranger.sk, { content: 'never pays' }))).ok).toBe(false);
    const inv = await api('/api/invoices', { pubkey: member.npub, product: 'admission' });
    expect(inv).toMatchObject({ amount_msat: 21000, status: 'pending' });
    await payer.payInvoice({ invoice: inv.bolt11 });
    const accepted = await until(async () => {
      const m = await publish(sign(member.sk, { content: 'paid ' + Math.random() }));
      return m.ok && m;
    });
    expect(accepted.ok).toBe(true);

    const ctx = await signerContext(admin, { width: 1280, height: 900 });
    const page = await open(ctx);
    await signIn(page);
    expect(await page.getByTestId('not-admin').isHidden()).toBe(true);
    // The NIP-98 events the extension signed name the relay, POST and a payload hash.
    const made = signed.get(admin.pk)!;
    expect(made.length).toBeGreaterThanOrEqual(2);
    expect(made[0].kind).toBe(27235);
    expect(made[0].tags).toEqual(
      expect.arrayContaining([
        ['u', t.relayUrl.replace(/^ws/, 'http') + '/'],
        ['method', 'POST'],
        ['payload', expect.stringMatching(/^[0-9a-f]{64}$/)],
      ]),
    );

    // Revenue by product: the admission's 21 sats in the current hour.
    await expect.poll(() => points(page, 'chart-revenue'), { timeout: 10_000 }).toBeGreaterThanOrEqual(1);
    expect(await series(page, 'chart-revenue')).toContain('admission');
    expect(await page.getByTestId('fig-received').textContent()).toBe('21 sats');
    expect(await page.locator('[data-testid=chart-revenue] canvas').count()).toBe(1);
    // Writes per minute by reason: accepted and refused (payment required is a blocked: refusal).
    await expect
      .poll(() => series(page, 'chart-writes'), { timeout: 10_000 })
      .toEqual(expect.arrayContaining(['accepted', 'refused:blocked']));
    // Held events wait for payment: the stranger's refused write.
    expect(Number((await page.getByTestId('fig-held').textContent())!.split(' ')[0])).toBeGreaterThanOrEqual(1);
    expect(Number(await page.getByTestId('fig-connections').textContent())).toBeGreaterThanOrEqual(1);

    // Polling: a new stored event shows up without a reload, within a poll period (5 s).
    const stored = Number((await page.getByTestId('fig-events').textContent())!.replace(/[^\d]/g, ''));
    const at = Number(await page.getByTestId('updated').getAttribute('data-at'));
    expect((await publish(sign(member.sk, { content: 'one more' }))).ok).toBe(true);
    await expect
      .poll(async () => Number((await page.getByTestId('fig-events').textContent())!.replace(/[^\d]/g, '')), {
        timeout: 8000,
        interval: 250,
      })
      .toBe(stored + 1);
    expect(Number(await page.getByTestId('updated').getAttribute('data-at'))).toBeGreaterThan(at);

    const shot = join(shots, 'dashboard-overview-desktop.png');
    await page.screenshot({ path: shot, fullPage: true });
    console.log(`dashboard screenshot (desktop, overview): ${shot}`);
    await ctx.close();
  }, 90_000);

  it('Invoices: the paid admission with its ledger rows; Members: search and grant credit; Audit log', async () => {
    const ctx = await signerContext(admin, { width: 1280, height: 900 });
    const page = await open(ctx);
    await signIn(page);

    await page.getByTestId('tab-invoices').click();
    await page.getByTestId('inv-status').selectOption('paid');
    await page.getByTestId('inv-pubkey').fill(member.npub);
    await page.getByTestId('inv-search').click();
    await expect.poll(() => page.locator('[data-testid=invoice-row][data-status=paid][data-product=admission]').count()).toBe(1);
    await page.getByTestId('invoice-open').first().click();
    await page.getByTestId('ledger-table').waitFor();
    const ledger = await page.getByTestId('ledger-row').allTextContents();
    expect(ledger).toHaveLength(2);
    expect(ledger.join('\n')).toMatch(/wallet-21 sats/);
    expect(ledger.join('\n')).toMatch(/revenue:admission21 sats/);

    await page.getByTestId('tab-members').click();
    await page.getByTestId('member-q').fill(member.npub.slice(0, 14));
    await page.getByTestId('member-search').click();
    await expect.poll(() => page.locator(`[data-testid=member-row][data-pubkey="${member.pk}"]`).count()).toBe(1);
    expect(await page.locator('[data-testid=member-row]').count()).toBe(1);
    expect(await page.getByTestId('member-until').first().textContent()).toBe('forever');
    await page.getByTestId('member-pick').first().click();
    expect(await page.getByTestId('grant-pubkey').inputValue()).toBe(member.npub);
    await page.getByTestId('grant-kind').selectOption('credit');
    await page.getByTestId('grant-amount').fill('7');
    await page.getByTestId('grant-reason').fill('thanks');
    await page.getByTestId('grant-submit').click();
    await expect.poll(() => page.getByTestId('grant-result').textContent()).toContain('balance 7 sats');
    expect((await getAccount(t.stack.db.kysely, member.pk))!.balanceMsat).toBe(7000);
    await expect.poll(() => page.getByTestId('member-balance').first().textContent()).toBe('7 sats');

    await page.getByTestId('tab-audit').click();
    await expect.poll(() => page.locator('[data-testid=audit-row][data-method=grantcredit]').count()).toBe(1);
    await ctx.close();
  }, 60_000);

  it('Moderation: a reported event banned from the page; banning a pubkey makes the relay refuse its next write; phone-sized screenshots', async () => {
    const target = sign(member.sk, { content: 'still fine' });
    expect((await publish(target)).ok).toBe(true);
    // A NIP-56 report of it (kind 1984, an `e` tag with the report type).
    const report = sign(member.sk, {
      kind: 1984,
      tags: [
        ['e', target.id, 'spam'],
        ['p', member.pk],
      ],
      content: '',
    });
    expect((await publish(report)).ok).toBe(true);
    const ctx = await signerContext(admin, { width: 390, height: 844 }, true);
    const page = await open(ctx);
    await signIn(page);
    await expect.poll(() => points(page, 'chart-revenue'), { timeout: 10_000 }).toBeGreaterThanOrEqual(1);
    // The phone layout: nothing wider than the screen.
    expect(await page.evaluate(() => document.documentElement.scrollWidth)).toBeLessThanOrEqual(390);
    const phone = join(shots, 'dashboard-overview-phone.png');
    await page.screenshot({ path: phone, fullPage: true });
    console.log(`dashboard screenshot (phone, overview): ${phone}`);

    await page.getByTestId('tab-moderation').click();
    const reported = page.locator(`[data-testid=reported-item][data-id="${target.id}"]`);
    await reported.waitFor();
    expect(await reported.textContent()).toContain('1 report: spam');
    await reported.getByTestId('reported-ban').click();
    await page.locator(`[data-testid=mod-item-bannedevents][data-value="${target.id}"]`).waitFor();
    expect(await reported.count()).toBe(0);
    const gone = await c.req('gone', { ids: [target.id] });
    expect(gone.events).toEqual([]);
    expect(await publish(target)).toEqual({ ok: false, reason: 'blocked: this event is banned from this relay' });

    await page.getByTestId('mod-value-bannedpubkeys').fill(member.npub);
    await page.getByTestId('mod-reason-bannedpubkeys').fill('spam');
    await page.getByTestId('mod-add-bannedpubkeys').click();
    await page.locator(`[data-testid=mod-item-bannedpubkeys][data-value="${member.pk}"]`).waitFor();
    const refused = await publish(sign(member.sk, { content: 'after the ban' }));
    expect(refused).toEqual({ ok: false, reason: 'blocked: this pubkey is banned from this relay' });
    expect(await page.evaluate(() => document.documentElement.scrollWidth)).toBeLessThanOrEqual(390);
    const phoneMod = join(shots, 'dashboard-moderation-phone.png');
    await page.screenshot({ path: phoneMod, fullPage: true });
    console.log(`dashboard screenshot (phone, moderation): ${phoneMod}`);

    // Unbanning through the page lets the member write again.
    await page.getByTestId('mod-remove-bannedpubkeys').first().click();
    await expect.poll(() => page.locator('[data-testid=mod-item-bannedpubkeys]').count()).toBe(0);
    expect((await publish(sign(member.sk, { content: 'unbanned' }))).ok).toBe(true);
    await ctx.close();
  }, 60_000);

  it('Relay info: the NIP-11 name and description changed from the page', async () => {
    const ctx = await signerContext(admin, { width: 1280, height: 900 });
    const page = await open(ctx);
    await signIn(page);
    await page.getByTestId('tab-info').click();
    await expect.poll(() => page.getByTestId('info-name').inputValue()).toBe('paidrelay');
    await page.getByTestId('info-name').fill('Dashboard relay');
    await page.getByTestId('info-description').fill('Run from the dashboard.');
    await page.getByTestId('info-save').click();
    await expect.poll(() => page.getByTestId('info-result').textContent()).toBe('Saved (name, description).');
    const doc = (await (
      await fetch(t.relayUrl.replace(/^ws/, 'http'), { headers: { Accept: 'application/nostr+json' } })
    ).json()) as Record<string, unknown>;
    expect(doc).toMatchObject({ name: 'Dashboard relay', description: 'Run from the dashboard.' });
    await ctx.close();
  }, 30_000);

  it('Pricing: an admin changes prices in the page; NIP-11 and the pay page show them at once; the history has who, old and new', async () => {
    const ctx = await signerContext(admin, { width: 1280, height: 900 });
    const page = await open(ctx);
    await signIn(page);
    await page.getByTestId('tab-pricing').click();
    // The prices seeded from this stack's environment on its first start.
    await expect.poll(() => page.getByTestId('price-admission_msat').inputValue()).toBe('21');
    expect(await page.getByTestId('price-event_msat').inputValue()).toBe('5');
    await expect.poll(() => page.getByTestId('price-change').count()).toBe(1);
    expect(await page.getByTestId('price-change').first().textContent()).toContain('the environment (first start)');

    await page.getByTestId('price-admission_msat').fill('42');
    await page.getByTestId('price-publication_kinds').fill('30023:9');
    await page.getByTestId('prices-save').click();
    await expect.poll(() => page.getByTestId('prices-result').textContent()).toBe('Saved (Admission (one time), by kind).');
    await expect.poll(() => page.getByTestId('price-change').count()).toBe(2);
    const latest = (await page.getByTestId('price-change').first().textContent()) ?? '';
    expect(latest).toContain('Admission (one time): 21 sats → 42 sats');
    expect(latest).toContain('by kind: none → 30023:9');
    expect(latest).toContain(admin.npub.slice(0, 12));
    expect(await page.getByTestId('price-admission_msat').inputValue()).toBe('42');

    const doc = (await (
      await fetch(t.relayUrl.replace(/^ws/, 'http'), { headers: { Accept: 'application/nostr+json' } })
    ).json()) as Record<string, any>;
    expect(doc.fees.admission).toEqual([{ amount: 42000, unit: 'msats' }]);
    expect(doc.fees.publication).toContainEqual({ kinds: [30023], amount: 9000, unit: 'msats' });
    const shot = join(shots, 'dashboard-pricing-desktop.png');
    await page.screenshot({ path: shot, fullPage: true });
    console.log(`dashboard screenshot (desktop, pricing): ${shot}`);
    await ctx.close();

    // The pay page (the admission service's origin: a context of its own) offers the new prices.
    const payCtx = await browser.newContext({ viewport: { width: 1280, height: 900 } });
    const pay = await payCtx.newPage();
    pay.on('pageerror', (e) => pageErrors.push(e.message));
    await pay.goto(t.paymentsUrl);
    await pay.locator('[data-testid=products]:not([aria-busy])').waitFor();
    expect(await pay.getByTestId('product-admission-price').textContent()).toBe('42 sats');
    expect(await pay.getByTestId('price-admission').textContent()).toContain('42 sats');
    expect(await pay.getByTestId('price-kind-30023').textContent()).toContain('9 sats');
    const payShot = join(shots, 'paypage-after-price-change-desktop.png');
    await pay.screenshot({ path: payShot, fullPage: true });
    console.log(`pay page screenshot (desktop, after the price change): ${payShot}`);
    await payCtx.close();
    // And what the relay refuses with now.
    const refused = await publish(sign(newKey().sk, { content: 'new prices' }));
    expect(refused.reason).toMatch(/^blocked: payment required: 42 sats for admission or 5 sats for this event: /);
  }, 60_000);

  it('Spam pricing: an admin lowers the fresh allowance in the page; the relay refuses past it; the history and the top senders show it', async () => {
    const ctx = await signerContext(admin, { width: 1280, height: 900 });
    const page = await open(ctx);
    await signIn(page);
    await page.getByTestId('tab-pricing').click();
    // The policy seeded from the environment (the defaults), in the form's units.
    await expect.poll(() => page.getByTestId('spam-allowance_fresh_events').inputValue()).toBe('50');
    expect(await page.getByTestId('spam-allowance_fresh_bytes').inputValue()).toBe('256');
    expect(await page.getByTestId('spam-window_seconds').inputValue()).toBe('60');
    expect(await page.getByTestId('spam-trust_age_seconds').inputValue()).toBe('30');
    expect(await page.getByTestId('spam-enabled').isChecked()).toBe(true);

    await page.getByTestId('spam-allowance_fresh_events').fill('2');
    await page.getByTestId('spam-max_multiplier').fill('64');
    await page.getByTestId('spam-save').click();
    await expect
      .poll(() => page.getByTestId('spam-result').textContent())
      .toBe('Saved (spam: daily allowance of a fresh key (events), spam: largest multiplier (×)).');
    await expect.poll(() => page.getByTestId('price-change').first().textContent()).toContain('spam: daily allowance');
    const latest = (await page.getByTestId('price-change').first().textContent()) ?? '';
    expect(latest).toContain('spam: daily allowance of a fresh key (events): 50 events → 2 events');
    expect(latest).toContain('spam: largest multiplier (×): 1,024 × → 64 ×');
    expect(await page.getByTestId('spam-allowance_fresh_events').inputValue()).toBe('2');
    // A bad value: the relay's reason, and nothing saved.
    await page.getByTestId('spam-allowance_fresh_events').fill('5000');
    await page.getByTestId('spam-save').click();
    await expect.poll(() => page.getByTestId('error').textContent()).toMatch(/allowance_fresh_events \(5000\) must not exceed/);

    // The member (admitted today, a little paid history: a few events above the fresh 2) is soon
    // past its allowance, far below the 50 of before: refused with the allowance named.
    const past = await until(async () => {
      const m = await publish(sign(member.sk, { content: `past the allowance ${Math.random()}` }));
      return !m.ok && m;
    });
    const allowance = Number(/daily allowance of (\d+) events used/.exec(past.reason)?.[1]);
    expect(allowance).toBeGreaterThanOrEqual(2);
    expect(allowance).toBeLessThan(50);

    // Top senders by volume in the window: the member wrote the most.
    await page.getByTestId('tab-overview').click();
    await page.getByTestId('tab-pricing').click();
    const row = page.locator(`[data-testid=top-sender][data-pubkey="${member.pk}"]`);
    await expect.poll(() => row.count(), { timeout: 10_000 }).toBe(1);
    expect(await row.textContent()).toContain(member.npub);
    expect(await page.getByTestId('top-senders-note').textContent()).toContain('the last hour');
    const shot = join(shots, 'dashboard-spam-pricing-desktop.png');
    await page.screenshot({ path: shot, fullPage: true });
    console.log(`dashboard screenshot (desktop, spam pricing): ${shot}`);
    await ctx.close();
  }, 60_000);

  it('a non-admin key sees only "not an admin": the relay answers 401', async () => {
    const ctx = await signerContext(outsider, { width: 1280, height: 900 });
    const page = await open(ctx);
    const statuses: number[] = [];
    page.on('response', (r) => r.request().method() === 'POST' && statuses.push(r.status()));
    await page.getByTestId('signin-button').click();
    await page.getByTestId('not-admin').waitFor();
    expect(await page.getByTestId('not-admin').textContent()).toContain(outsider.npub);
    expect(await page.getByTestId('not-admin').textContent()).toContain('this pubkey is not an admin of this relay');
    expect(statuses).toEqual([401]);
    expect(await page.locator('#app').isHidden()).toBe(true);
    expect(await page.getByTestId('panel-overview').isVisible()).toBe(false);
    expect(await page.getByTestId('fig-received').isVisible()).toBe(false);
    const shot = join(shots, 'dashboard-not-admin-desktop.png');
    await page.screenshot({ path: shot });
    console.log(`dashboard screenshot (desktop, not an admin): ${shot}`);
    await ctx.close();
  }, 30_000);

  it('loaded nothing from other origins and threw no page errors', () => {
    expect(foreign).toEqual([]);
    expect(pageErrors).toEqual([]);
  });
});
