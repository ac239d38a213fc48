/**
 * The pay page in a real browser (Debian's headless Chromium through playwright-core) against the
 * real stack: relay + admission service + the dev Lightning network + PGlite, in this process.
 * A person opens the page, picks a product, gets an invoice, pays it from a Lightning wallet (the
 * dev network's payer, over NWC, from this test process) and watches the page turn to "paid" live.
 *
 * Needs /usr/bin/chromium (`apt-get install -y chromium`) or CHROMIUM_PATH; without a browser the
 * suite is skipped with a message, unless PAYPAGE_REQUIRE_BROWSER=1 makes that a failure.
 */
import { existsSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { chromium, type Browser, type BrowserContext, type Page } from 'playwright-core';
import { finalizeEvent, generateSecretKey, getPublicKey } from 'nostr-tools/pure';
import { npubEncode } from 'nostr-tools/nip19';
// @getalby/sdk's NWCClient, re-exported (the import also installs a global WebSocket on Node 20).
import { NWCClient } from '@paidrelay/lightning';
import { startStack } from './stack.ts';

const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
const haveBrowser = existsSync(CHROMIUM);
if (!haveBrowser) {
  const msg = `paypage browser test: no Chromium at ${CHROMIUM} (apt-get install -y chromium)`;
  if (process.env.PAYPAGE_REQUIRE_BROWSER === '1') throw new Error(msg);
  console.warn(`${msg}: skipped`);
}

const SCREENSHOT = '/tmp/paypage.png';

type Stack = Awaited<ReturnType<typeof startStack>>;

function newKey() {
  const sk = generateSecretKey();
  const pk = getPublicKey(sk);
  return { sk, pk, npub: npubEncode(pk) };
}

/** Publishes one event over a plain WebSocket and returns the relay's OK message. */
async function publish(relayUrl: string, ev: { id: string }): Promise<[string, string, boolean, string]> {
  const ws = new WebSocket(relayUrl);
  try {
    await new Promise<void>((resolve, reject) => {
      ws.once('open', () => resolve());
      ws.once('error', reject);
    });
    return await new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('no OK from the relay')), 10_000);
      ws.on('message', (data) => {
        const msg = JSON.parse(String(data)) as unknown[];
        if (msg[0] === 'OK' && msg[1] === ev.id) {
          clearTimeout(timer);
          resolve(msg as [string, string, boolean, string]);
        }
      });
      ws.send(JSON.stringify(['EVENT', ev]));
    });
  } finally {
    ws.close();
  }
}

/** Whether the relay serves an event with this id (a REQ, answered up to EOSE). */
async function relayHas(relayUrl: string, id: string): Promise<boolean> {
  const ws = new WebSocket(relayUrl);
  try {
    await new Promise<void>((resolve, reject) => {
      ws.once('open', () => resolve());
      ws.once('error', reject);
    });
    return await new Promise((resolve, reject) => {
      let found = false;
      const timer = setTimeout(() => reject(new Error('no EOSE from the relay')), 10_000);
      ws.on('message', (data) => {
        const msg = JSON.parse(String(data)) as [string, string, { id?: string }?];
        if (msg[0] === 'EVENT' && msg[2]?.id === id) found = true;
        if (msg[0] === 'EOSE' || msg[0] === 'CLOSED') {
          clearTimeout(timer);
          resolve(found);
        }
      });
      ws.send(JSON.stringify(['REQ', 'q', { ids: [id] }]));
    });
  } finally {
    ws.close();
  }
}

async function getInvoice(page: Page): Promise<string> {
  await page.getByTestId('get-invoice').click();
  const bolt11 = page.getByTestId('bolt11');
  await bolt11.waitFor();
  const text = (await bolt11.textContent())!.trim();
  expect(text).toMatch(/^ln(bcrt|bc|tb)[0-9a-z]+$/);
  await expect.poll(() => page.getByTestId('invoice-status').getAttribute('data-status')).toBe('pending');
  return text;
}

async function payWith(payer: NWCClient, bolt11: string): Promise<void> {
  const res = await payer.payInvoice({ invoice: bolt11 });
  expect(res.preimage).toMatch(/^[0-9a-f]{64}$/);
}

async function waitPaid(page: Page): Promise<void> {
  await page.locator('[data-testid=invoice-status][data-status=paid]').waitFor({ timeout: 20_000 });
  expect(await page.getByTestId('invoice-status').textContent()).toContain('Paid');
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

describe.skipIf(!haveBrowser)('pay page in a browser, against the real stack', () => {
  let stack: Stack;
  let browser: Browser;
  let context: BrowserContext;
  let payer: NWCClient;
  let origin: string;
  /** Requests the pages made to anywhere but our own service: must stay empty (no CDN). */
  const foreign: string[] = [];
  const pageErrors: string[] = [];

  beforeAll(async () => {
    stack = await startStack({
      PRICE_ADMISSION_MSAT: '21000',
      PRICE_PUBLICATION_MSAT: '1000',
      PRICE_EVENT_MSAT: '5000',
    });
    origin = new URL(stack.paymentsUrl).origin;
    payer = new NWCClient({ nostrWalletConnectUrl: stack.payerNwc });
    browser = await chromium.launch({ executablePath: CHROMIUM, args: BROWSER_ARGS });
    context = await browser.newContext({ viewport: { width: 1280, height: 900 }, permissions: ['clipboard-read', 'clipboard-write'] });
    watch(context);
  }, 120_000);

  /** Records requests to anywhere but our own service (WebSockets, e.g. NWC, are not requests). */
  function watch(ctx: BrowserContext): void {
    ctx.on('request', (r) => {
      const url = r.url();
      if (!url.startsWith(origin) && !url.startsWith('data:')) foreign.push(url);
    });
  }

  afterAll(async () => {
    payer?.close();
    await context?.close();
    await browser?.close();
    await stack?.stop();
  }, 60_000);

  async function open(query: string): Promise<Page> {
    const page = await context.newPage();
    page.on('pageerror', (e) => pageErrors.push(e.message));
    await page.goto(`${stack.paymentsUrl}${query}`);
    // The products appear once /api/pricing has answered.
    await page.locator('[data-testid=products]:not([aria-busy])').waitFor();
    return page;
  }

  const pay = (bolt11: string) => payWith(payer, bolt11);

  it('buys admission: prices shown, QR and invoice, paid live, account admitted', async () => {
    const { npub, pk } = newKey();
    const page = await open(`?pubkey=${npub}`);

    // Prices from the config, in sats.
    expect(await page.getByTestId('product-admission-price').textContent()).toBe('21 sats');
    expect(await page.getByTestId('price-admission').textContent()).toContain('21 sats');
    expect(await page.getByTestId('price-publication').textContent()).toContain('1 sat');
    // Credit is offered because publication has a price; no subscription is configured.
    expect(await page.getByTestId('product-credit').isVisible()).toBe(true);
    expect(await page.getByTestId('product-subscription').count()).toBe(0);
    // No NIP-07 extension in this browser: its button stays hidden.
    expect(await page.getByTestId('nip07-button').isHidden()).toBe(true);
    // The account of a new key, looked up from ?pubkey=.
    await page.locator('[data-testid=account-admitted][data-admitted=false]').waitFor();

    await page.getByTestId('product-admission').click();
    expect(await page.getByTestId('product-admission-input').isChecked()).toBe(true);
    const bolt11 = await getInvoice(page);

    // The QR code is drawn, and is a lightning: link to the same invoice.
    const qr = page.getByTestId('qr');
    expect(await qr.isVisible()).toBe(true);
    expect(Number(await qr.getAttribute('data-modules'))).toBeGreaterThanOrEqual(21);
    const box = await qr.boundingBox();
    expect(box!.width).toBeGreaterThan(150);
    expect(await page.getByTestId('qr-link').getAttribute('href')).toBe(`lightning:${bolt11}`);
    expect(await page.getByTestId('invoice-amount').textContent()).toBe('21 sats');
    await page.getByTestId('copy-button').click();
    await expect.poll(() => page.getByTestId('copy-button').getAttribute('data-copied')).toBe('true');
    expect(await page.evaluate(() => navigator.clipboard.readText())).toBe(bolt11);
    expect(await page.getByTestId('wallet-pay').isVisible()).toBe(true);
    expect(await page.getByTestId('invoice-countdown').textContent()).toMatch(/^Expires in \d+:\d\d$/);

    // Pay from a wallet outside the page; the page must turn to "paid" without a reload.
    await page.evaluate(() => ((window as unknown as { __sameDocument: boolean }).__sameDocument = true));
    await pay(bolt11);
    await waitPaid(page);
    expect(await page.evaluate(() => (window as unknown as { __sameDocument?: boolean }).__sameDocument)).toBe(true);

    await page.locator('[data-testid=account-admitted][data-admitted=true]').waitFor({ timeout: 10_000 });
    expect(await page.getByTestId('account-admitted').textContent()).toBe('Admitted');
    expect(await page.getByTestId('account-admitted-until').textContent()).toBe('No expiry');
    expect(await page.getByTestId('account-pubkey').getAttribute('title')).toBe(npubEncode(pk));

    await page.screenshot({ path: SCREENSHOT, fullPage: true });
    await page.close();
  }, 60_000);

  it('buys prepaid credit of a chosen amount: the balance is shown', async () => {
    const { pk } = newKey();
    const page = await open('');
    // Typed by hand this time, as hex.
    await page.getByTestId('pubkey-input').fill(pk);
    await page.getByTestId('product-credit').click();
    await page.getByTestId('credit-amount').fill('2100');
    expect(await page.getByTestId('get-invoice').textContent()).toContain('2,100 sats');
    const bolt11 = await getInvoice(page);
    expect(await page.getByTestId('invoice-amount').textContent()).toBe('2,100 sats');

    await pay(bolt11);
    await waitPaid(page);
    await page.locator('[data-testid=account-balance][data-msat="2100000"]').waitFor({ timeout: 10_000 });
    expect(await page.getByTestId('account-balance').textContent()).toBe('2,100 sats');
    expect(await page.getByTestId('account-admitted').getAttribute('data-admitted')).toBe('false');
    await page.close();
  }, 60_000);

  it('shows a 400 from the service inline (a bad npub)', async () => {
    const page = await open('?pubkey=npub1thisisnotavalidkey');
    await page.getByTestId('product-admission').click();
    await page.getByTestId('get-invoice').click();
    const error = page.locator('[data-testid=pubkey-error]:visible, [data-testid=form-error]:visible');
    await error.first().waitFor();
    expect((await error.first().textContent())!.length).toBeGreaterThan(5);
    expect(await page.getByTestId('pubkey-error').textContent()).toMatch(/npub|pubkey|key/i);
    expect(await page.getByTestId('pubkey-input').getAttribute('aria-invalid')).toBe('true');
    expect(await page.getByTestId('invoice-panel').isHidden()).toBe(true);
    await page.close();
  }, 60_000);

  it('from a refused write, offers to pay for that event and publishes it', async () => {
    const { sk } = newKey();
    const ev = finalizeEvent({ kind: 1, created_at: Math.floor(Date.now() / 1000), tags: [], content: 'gm from the pay page test' }, sk);
    const [, , accepted, reason] = await publish(stack.relayUrl, ev);
    expect(accepted).toBe(false);
    expect(reason).toMatch(/^blocked: payment required: /);
    const url = reason.match(/(https?:\/\/\S+)$/)![1];
    expect(url.startsWith(stack.paymentsUrl)).toBe(true);

    const page = await context.newPage();
    page.on('pageerror', (e) => pageErrors.push(e.message));
    await page.goto(url);
    await page.getByTestId('held-event').waitFor();
    expect(url).toBe(`${stack.paymentsUrl}/e/${ev.id}`);
    expect(await page.getByTestId('held-event').textContent()).not.toContain('gm from the pay page test');
    expect(await page.getByTestId('held-price').textContent()).toBe('5 sats');
    expect(await page.getByTestId('product-event-input').isChecked()).toBe(true);

    const bolt11 = await getInvoice(page);
    expect(await page.getByTestId('invoice-amount').textContent()).toBe('5 sats');
    await pay(bolt11);
    await waitPaid(page);
    await expect.poll(() => relayHas(stack.relayUrl, ev.id), { timeout: 10_000, interval: 250 }).toBe(true);
    await page.close();
  }, 60_000);

  it('pays from the page with Bitcoin Connect over NWC, with the key from a NIP-07 extension', async () => {
    const { pk, npub } = newKey();
    // A separate browser profile: Bitcoin Connect remembers a connected wallet in localStorage.
    const ctx = await browser.newContext({ viewport: { width: 1280, height: 900 } });
    watch(ctx);
    try {
      // A stand-in NIP-07 extension, injected before the page's own script runs.
      await ctx.addInitScript((hex: string) => {
        (window as unknown as { nostr: unknown }).nostr = {
          getPublicKey: async () => hex,
          signEvent: async () => {
            throw new Error('not in this test');
          },
        };
      }, pk);
      const page = await ctx.newPage();
      page.on('pageerror', (e) => pageErrors.push(e.message));
      // Bitcoin Connect connects the NWC wallet given in the URL fragment (never sent to a server).
      await page.goto(`${stack.paymentsUrl}#nwc=${encodeURIComponent(stack.payerNwc)}`);
      await page.locator('[data-testid=products]:not([aria-busy])').waitFor();

      await page.getByTestId('nip07-button').click();
      await expect.poll(() => page.getByTestId('pubkey-input').inputValue()).toBe(npub);

      await page.getByTestId('product-admission').click();
      await getInvoice(page);
      await page.getByTestId('wallet-pay').click();
      // The payment modal (a web component; Playwright's role locators see through its shadow DOM).
      await page.getByRole('button', { name: 'Confirm Payment' }).click({ timeout: 20_000 });
      await waitPaid(page);
      await page.locator('[data-testid=account-admitted][data-admitted=true]').waitFor({ timeout: 10_000 });
      await page.close();
    } finally {
      await ctx.close();
    }
  }, 60_000);

  it('loaded nothing from anywhere but our own service, and threw no script errors', () => {
    expect(foreign).toEqual([]);
    expect(pageErrors).toEqual([]);
  });
});

describe.skipIf(!haveBrowser)('with the default config (`pnpm start`): from a refused note to published, per event and per pubkey', () => {
  let stack: Stack;
  let browser: Browser;
  let payer: NWCClient;

  beforeAll(async () => {
    stack = await startStack({}, { defaultPrices: true });
    payer = new NWCClient({ nostrWalletConnectUrl: stack.payerNwc });
    browser = await chromium.launch({ executablePath: CHROMIUM, args: BROWSER_ARGS });
  }, 120_000);
  afterAll(async () => {
    payer?.close();
    await browser?.close();
    await stack?.stop();
  }, 60_000);

  /** A note from a fresh key, refused with both choices in sats and the short pay URL. */
  async function refusedNote(content: string) {
    const { sk } = newKey();
    const ev = finalizeEvent({ kind: 1, created_at: Math.floor(Date.now() / 1000), tags: [], content }, sk);
    const [, , accepted, reason] = await publish(stack.relayUrl, ev);
    expect(accepted).toBe(false);
    expect(reason).toBe(`blocked: payment required: 21 sats for admission or 2 sats for this event: ${stack.paymentsUrl}/e/${ev.id}`);
    return { sk, ev, url: reason.slice(reason.lastIndexOf(' ') + 1) };
  }

  async function openPayPage(url: string): Promise<Page> {
    const page = await browser.newPage();
    await page.goto(url);
    await page.getByTestId('held-event').waitFor();
    await page.locator('[data-testid=products]:not([aria-busy])').waitFor();
    return page;
  }

  it('pays 2 sats for the one event: the page preselects it, and the note is published', async () => {
    const { ev, url } = await refusedNote('published by paying for it alone');
    const page = await openPayPage(url);
    expect(await page.getByTestId('held-price').textContent()).toBe('2 sats');
    expect(await page.getByTestId('product-event-input').isChecked()).toBe(true);
    const bolt11 = await getInvoice(page);
    expect(await page.getByTestId('invoice-amount').textContent()).toBe('2 sats');
    await payWith(payer, bolt11);
    await waitPaid(page);
    await expect.poll(() => relayHas(stack.relayUrl, ev.id), { timeout: 10_000, interval: 250 }).toBe(true);
    await page.screenshot({ path: '/tmp/paypage-default-event.png', fullPage: true });
    await page.close();
  }, 90_000);

  it('buys admission for 21 sats from the same page: the held note is published and the next one accepted', async () => {
    const { sk, ev, url } = await refusedNote('published by the admission');
    const page = await openPayPage(url);
    await page.getByTestId('product-admission').click();
    expect(await page.getByTestId('product-admission-input').isChecked()).toBe(true);
    const bolt11 = await getInvoice(page);
    expect(await page.getByTestId('invoice-amount').textContent()).toBe('21 sats');
    await payWith(payer, bolt11);
    await waitPaid(page);
    await expect.poll(() => relayHas(stack.relayUrl, ev.id), { timeout: 10_000, interval: 250 }).toBe(true);
    const next = finalizeEvent({ kind: 1, created_at: Math.floor(Date.now() / 1000), tags: [], content: 'admitted now' }, sk);
    expect((await publish(stack.relayUrl, next))[2]).toBe(true);
    await page.screenshot({ path: '/tmp/paypage-default-admission.png', fullPage: true });
    await page.close();
  }, 90_000);
});

const redisUrl = process.env.TEST_REDIS_URL;
if (process.env.CI && !redisUrl) throw new Error('CI must set TEST_REDIS_URL');

describe.skipIf(!haveBrowser || !redisUrl)('spam pricing on the pay page: a sender’s price now and its allowance left (Redis)', () => {
  let stack: Stack;
  let browser: Browser;
  let payer: NWCClient;

  beforeAll(async () => {
    // A small allowance and a short step, so a few writes show both; counters shared through Redis.
    stack = await startStack({
      PRICE_ADMISSION_MSAT: '21000',
      PRICE_EVENT_MSAT: '2000',
      ALLOWANCE_FRESH_EVENTS: '5',
      SURGE_STEP_EVENTS: '3',
      // The admission paid is no trust to speak of: the allowance stays the fresh one.
      TRUST_PAID_MSAT: String(1e15),
      // Loopback is one network shared with every other run on this Redis: per-network surge off.
      SURGE_NETWORK_STEP_EVENTS: '0',
      SURGE_NETWORK_STEP_BYTES: '0',
      REDIS_URL: redisUrl!,
    });
    payer = new NWCClient({ nostrWalletConnectUrl: stack.payerNwc });
    browser = await chromium.launch({ executablePath: CHROMIUM, args: BROWSER_ARGS });
  }, 120_000);
  afterAll(async () => {
    payer?.close();
    await browser?.close();
    await stack?.stop();
  }, 60_000);

  it('after admission and four notes: "2x the base" with the reason, and 1 of 5 events left today', async () => {
    const { sk, npub } = newKey();
    const page = await browser.newPage();
    await page.goto(`${stack.paymentsUrl}?pubkey=${npub}`);
    await page.locator('[data-testid=products]:not([aria-busy])').waitFor();
    // Before writing: the base price, the whole allowance.
    await expect.poll(() => page.getByTestId('account-allowance').textContent()).toBe('5 of 5 events, 256 KB of 256 KB left today');
    expect(await page.getByTestId('account-multiplier').textContent()).toBe('the base price');

    await page.getByTestId('product-admission').click();
    await payWith(payer, await getInvoice(page));
    await waitPaid(page);
    let bytes = 0;
    for (let i = 0; i < 4; i++) {
      const ev = finalizeEvent({ kind: 1, created_at: Math.floor(Date.now() / 1000), tags: [], content: `note ${i}` }, sk);
      bytes += Buffer.byteLength(JSON.stringify(ev));
      expect((await publish(stack.relayUrl, ev))[2]).toBe(true);
    }
    // The relay's counts reach Redis within its flush; the page reads them on a refresh.
    const left = `${Math.round((256 * 1024 - bytes) / 102.4) / 10} KB`;
    await expect
      .poll(async () => {
        await page.getByTestId('account-refresh').click();
        await page.locator('[data-testid=account]:not([aria-busy])').waitFor();
        return page.getByTestId('account-allowance').textContent();
      })
      .toBe(`1 of 5 events, ${left} of 256 KB left today`);
    expect(await page.getByTestId('account-multiplier').textContent()).toBe('2x the base: 4 events from you in the last hour');
    expect(await page.getByTestId('account-multiplier').getAttribute('data-multiplier')).toBe('2');
    await page.screenshot({ path: '/tmp/paypage-spam-pricing.png', fullPage: true });
    await page.close();
  }, 90_000);
});
