/**
 * A refusal's text costs little (issue 12): amounts are formatted once each and the pay page's
 * URL is parsed once, while the text stays exactly what the formatter and the URL parser write.
 * Counted, never timed.
 */
import { randomBytes } from 'node:crypto';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { loadConfig } from '@paidrelay/config';
import { formatSats, payUrl, pricingFromConfig } from '../src/index.ts';

const pricing = (paymentsUrl: string) => ({
  ...pricingFromConfig(loadConfig({ PRICE_ADMISSION_MSAT: '0', PRICE_EVENT_MSAT: '0' })),
  paymentsUrl,
});
const hex = () => randomBytes(32).toString('hex');

/** What the en-US formatter writes, as a person reads it. */
function written(msat: number): string {
  const sats = msat / 1000;
  return `${new Intl.NumberFormat('en-US', { maximumFractionDigits: 3 }).format(sats)} ${sats === 1 ? 'sat' : 'sats'}`;
}

/** The event pay URL as the URL parser writes it. */
function parsed(paymentsUrl: string, eventId: string): string {
  const u = new URL(paymentsUrl);
  u.pathname = `${u.pathname.replace(/\/$/, '')}/e/${eventId}`;
  return u.toString();
}

afterEach(() => {
  vi.restoreAllMocks();
  vi.unstubAllGlobals();
});

describe('refusal text', () => {
  it('formatSats writes what the formatter writes, formatting each amount once however often it is named', () => {
    const amounts = [0, 1, 999, 1000, 1500, 2000, 21_000, 1_000_000, 1_234_567, 10_000_000_001, -5000, 0.5, Number.MAX_SAFE_INTEGER];
    for (let i = 0; i < 200; i++) amounts.push(Math.floor(Math.random() * 10 ** (1 + (i % 15))));
    const distinct = new Set(amounts).size;
    // `format` is a getter (of a bound function): each use reads it.
    const proto = Intl.NumberFormat.prototype;
    const format = Object.getOwnPropertyDescriptor(proto, 'format')!;
    let uses = 0;
    Object.defineProperty(proto, 'format', {
      ...format,
      get() {
        uses++;
        return format.get!.call(this);
      },
    });
    let texts: string[];
    try {
      texts = [...amounts, ...amounts, ...amounts].map(formatSats);
    } finally {
      Object.defineProperty(proto, 'format', format);
    }
    expect(texts).toEqual([...amounts, ...amounts, ...amounts].map(written));
    expect(uses).toBeLessThanOrEqual(distinct);
    // -0 is written as the formatter writes it, apart from 0.
    expect([formatSats(-0), formatSats(0), formatSats(-0)]).toEqual(['-0 sats', '0 sats', '-0 sats']);
  });

  it('the event pay URL is what the URL parser writes, whatever the pay page, which is parsed once', () => {
    const tag = randomBytes(4).toString('hex');
    const pages = [
      `http://localhost:7778/${tag}/pay`,
      `http://localhost:7778/${tag}/`,
      `https://relay.example.com/${tag}?ref=nostr#top`,
      `https://EXAMPLE.com:443/${tag}/b/`,
      `http://[::1]:8080/${tag}`,
      `http://127.0.0.1:7778?${tag}`,
      `mailto:${tag}@example.com`,
    ];
    const ids = [...Array.from({ length: 300 }, hex), 'not hex: a b/c', 'F'.repeat(64)];
    let made = 0;
    const Parser = URL;
    vi.stubGlobal(
      'URL',
      class extends Parser {
        constructor(url: string | URL, base?: string | URL) {
          super(url, base);
          made++;
        }
      },
    );
    const urls = pages.map((page) => ids.map((id) => payUrl(pricing(page), 'a'.repeat(64), id)));
    vi.unstubAllGlobals();
    expect(urls).toEqual(pages.map((page) => ids.map((id) => parsed(page, id))));
    // Once per pay page, and for each id that is not hex (the parser encodes it), or for every id
    // of a page whose path it does not take (mailto:).
    expect(made).toBeLessThanOrEqual(pages.length + (pages.length - 1) * 2 + ids.length);
  });
});
