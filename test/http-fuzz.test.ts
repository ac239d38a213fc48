import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLogger, loadConfig } from '@paidrelay/config';
import { httpRoutes } from '../apps/relay/src/http.ts';
import { loadUws, type TemplatedApp, type us_listen_socket } from '../apps/relay/src/uws.ts';
import type { RelayContext } from '../apps/relay/src/context.ts';
import { jsonBody, rawHttp, rawRequest, type RawAnswer } from './raw-http.ts';
import { startStack, type TestStack } from './stack.ts';

/**
 * Both HTTP servers (the admission service on node:http, the relay on uWS) take arbitrary bytes
 * over raw TCP: every answer is below 500 (or the server closes an unparseable connection), and
 * the process, which hosts both servers, stays up and serving.
 */

const backend = process.env.TEST_DATABASE_URL ? 'postgres' : 'pglite';
if (process.env.CI && !process.env.TEST_DATABASE_URL) throw new Error('CI must set TEST_DATABASE_URL');

const BAD_ENCODINGS = ['%ZZ', '%E0%A4%A', '%C0%AF', '%', '%FF%FE'];
const PARAM_ROUTES = [
  '/api/invoices/{}',
  '/api/invoices/{}/events',
  '/api/accounts/{}',
  '/api/held/{}',
  '/.well-known/lnurlp/{}',
  '/lnurlp/{}/callback',
];

let t: TestStack;
let admissionPort: number;
let relayPort: number;

beforeAll(async () => {
  t = await startStack({ PRICE_ADMISSION_MSAT: '21000', PRICE_EVENT_MSAT: '5000', RECONCILE_INTERVAL_SECONDS: '3600' }, { backend });
  admissionPort = Number(new URL(t.apiBase).port);
  relayPort = t.stack.relay.port;
});
afterAll(async () => {
  await t?.stop();
});

async function bothServersAnswer(): Promise<void> {
  const pricing = await fetch(`${t.apiBase}/api/pricing`);
  expect(pricing.status).toBe(200);
  expect(((await pricing.json()) as { admission_msat: number }).admission_msat).toBe(21000);
  const health = await fetch(`http://127.0.0.1:${relayPort}/healthz`);
  expect(health.status).toBe(200);
  const nip11 = await fetch(`http://127.0.0.1:${relayPort}/`, { headers: { Accept: 'application/nostr+json' } });
  expect(((await nip11.json()) as { limitation: object }).limitation).toBeDefined();
}

function below500(a: RawAnswer): void {
  for (const s of a.statuses) expect(s, a.data.toString('latin1').slice(0, 300)).toBeLessThan(500);
}

describe('admission service: malformed request targets are 4xx, never a crash', () => {
  it.each(PARAM_ROUTES.flatMap((r) => BAD_ENCODINGS.map((e) => [r.replace('{}', e), e] as const)))(
    'GET %s is 400 with a message',
    async (path) => {
      const a = await rawRequest(admissionPort, `GET ${path} HTTP/1.1`);
      expect(a.statuses).toEqual([400]);
      expect((jsonBody(a) as { error: string }).error).toMatch(/percent-encoding/);
      expect((await fetch(`${t.apiBase}/healthz`)).status).toBe(200);
    },
  );

  it.each(['GET http://[::1/api/pricing HTTP/1.1', 'GET http://%zz/ HTTP/1.1', 'GET http://[::1/api/invoices/%ZZ HTTP/1.1'])(
    '%s is 400',
    async (line) => {
      const a = await rawRequest(admissionPort, line);
      expect(a.statuses).toEqual([400]);
      expect((jsonBody(a) as { error: string }).error).toMatch(/malformed request target/);
      expect((await fetch(`${t.apiBase}/healthz`)).status).toBe(200);
    },
  );

  it('an absolute-form target with a good host is routed by its path', async () => {
    const a = await rawRequest(admissionPort, 'GET http://example.com/api/pricing HTTP/1.1');
    expect(a.statuses).toEqual([200]);
  });

  it('unparseable HTTP gets a JSON 400 and the connection is closed', async () => {
    const a = await rawHttp(admissionPort, 'GET / HTTP/1.1\r\nBad Header\r\n\r\n');
    expect(a.statuses).toEqual([400]);
    expect((jsonBody(a) as { error: string }).error).toMatch(/malformed HTTP request/);
    expect(a.closedByServer).toBe(true);
  });

  it('a plain LNURL-pay callback (no zap request) gets an invoice, recorded as credit to the relay, not a 500', async () => {
    const res = await fetch(`${t.apiBase}/lnurlp/relay/callback?amount=2000`);
    expect(res.status).toBe(200);
    const { pr } = (await res.json()) as { pr: string };
    expect(pr).toMatch(/^ln/);
    const row = await t.stack.db.kysely
      .selectFrom('invoices')
      .select(['product', 'bolt11'])
      .where('bolt11', '=', pr)
      .executeTakeFirstOrThrow();
    expect(row.product).toBe('credit');
  });

  it('a well-formed but unknown route is a JSON 404, a known path with the wrong method a 405', async () => {
    expect((await rawRequest(admissionPort, 'GET /nope%20here HTTP/1.1')).statuses).toEqual([404]);
    expect((await rawRequest(admissionPort, 'DELETE /api/pricing HTTP/1.1')).statuses).toEqual([405]);
  });
});

describe('relay HTTP handlers (uWS): no throw or rejection escapes, aborted responses are not written', () => {
  const uWS = loadUws();
  let app: TemplatedApp;
  let listen: us_listen_socket;
  let port = 0;
  const mode = { ready: 'ok' as 'ok' | 'reject' | 'slow', metrics: 'ok' as 'ok' | 'throw' | 'reject' };
  const errors: string[] = [];

  beforeAll(async () => {
    const config = loadConfig({ HOST: '127.0.0.1', PORT: '0', LOG_LEVEL: 'silent', PRICE_ADMISSION_MSAT: '0' });
    const log = createLogger('silent', 'http-test');
    const ctx = {
      config,
      log: Object.assign(Object.create(log), {
        error: (o: { err: string }) => errors.push(o.err),
        warn: (o: { err: string }) => errors.push(o.err),
      }),
      key: { pubkey: 'a'.repeat(64) },
      nip11: t.stack.relay.ctx.nip11,
      bus: t.stack.relay.ctx.bus,
      relayUrl: 'ws://localhost',
      metrics: {
        registry: {
          contentType: 'text/plain',
          metrics: () => {
            if (mode.metrics === 'throw') throw new Error('metrics threw');
            if (mode.metrics === 'reject') return Promise.reject(new Error('metrics rejected'));
            return Promise.resolve('m 1\n');
          },
        },
      },
    } as unknown as RelayContext;
    app = uWS.App();
    httpRoutes(app, ctx, {
      ready: () =>
        mode.ready === 'reject'
          ? Promise.reject(new Error('ready rejected'))
          : mode.ready === 'slow'
            ? new Promise((r) => setTimeout(() => r(true), 150))
            : Promise.resolve(true),
    });
    listen = await new Promise((resolve, reject) => app.listen('127.0.0.1', 0, (s) => (s ? resolve(s) : reject(new Error('listen')))));
    port = uWS.us_socket_local_port(listen);
  });
  afterAll(() => {
    if (listen) uWS.us_listen_socket_close(listen);
  });

  it('a failing /metrics or /readyz is a 500 and a log line', async () => {
    mode.metrics = 'throw';
    expect((await rawRequest(port, 'GET /metrics HTTP/1.1')).statuses).toEqual([500]);
    mode.metrics = 'reject';
    expect((await rawRequest(port, 'GET /metrics HTTP/1.1')).statuses).toEqual([500]);
    mode.ready = 'reject';
    expect((await rawRequest(port, 'GET /readyz HTTP/1.1')).statuses).toEqual([500]);
    expect(errors).toEqual(expect.arrayContaining(['metrics threw', 'metrics rejected', 'ready rejected']));
    mode.metrics = 'ok';
    mode.ready = 'ok';
    expect((await rawRequest(port, 'GET /metrics HTTP/1.1')).statuses).toEqual([200]);
    expect((await rawRequest(port, 'GET /readyz HTTP/1.1')).statuses).toEqual([200]);
  });

  it('a client that leaves before /readyz answers is not written to', async () => {
    mode.ready = 'slow';
    await Promise.all(Array.from({ length: 20 }, () => rawHttp(port, 'GET /readyz HTTP/1.1\r\nHost: x\r\n\r\n', { timeoutMs: 20 })));
    await new Promise((r) => setTimeout(r, 300));
    mode.ready = 'ok';
    expect((await rawRequest(port, 'GET /healthz HTTP/1.1')).statuses).toEqual([200]);
    expect((await rawRequest(port, 'GET /readyz HTTP/1.1')).statuses).toEqual([200]);
  });
});

// ---------------------------------------------------------------------------------------------
// The fuzzer

const ADMISSION_PATHS = [
  '/api/pricing',
  '/api/invoices',
  '/api/invoices/{}',
  '/api/invoices/{}/events',
  '/api/accounts/{}',
  '/api/held/{}',
  '/.well-known/lnurlp/{}',
  '/lnurlp/{}/callback',
  '/.well-known/lnurlp/relay',
  '/lnurlp/relay/callback',
  '/pay',
  '/pay/',
  '/pay/pay.js',
  '/pay/pay.css',
  '/healthz',
  '/readyz',
  '/metrics',
  '/',
  '/{}',
  '/{}/{}',
];
const RELAY_PATHS = ['/', '/metrics', '/healthz', '/readyz', '/{}', '/{}/{}'];

const hexDigit = fc.constantFrom(...'0123456789abcdefABCDEFzZ%'.split(''));
const pctPiece = fc.oneof(
  fc.constantFrom(...BAD_ENCODINGS, '%2F', '%00', '%0D%0A', '%20', '%25', '%F0%9F%98%80', '%ED%A0%80', '%C3', '..', '.', ''),
  fc.tuple(hexDigit, hexDigit).map(([a, b]) => `%${a}${b}`),
  fc.constantFrom(..."abcXYZ019-._~!$&'()*+,;=:@".split('')),
  fc.stringMatching(/^[0-9a-f]{64}$/),
  fc.constant('npub1' + 'q'.repeat(58)),
);
const param = fc.oneof(
  { weight: 4, arbitrary: fc.array(pctPiece, { minLength: 1, maxLength: 8 }).map((a) => a.join('')) },
  { weight: 1, arbitrary: fc.string({ unit: 'grapheme', maxLength: 12 }).map((s) => encodeURIComponent(s)) },
  { weight: 1, arbitrary: fc.string({ unit: 'binary-ascii', maxLength: 12 }) },
);
const query = fc.option(
  fc
    .array(
      fc.tuple(
        fc.constantFrom('amount', 'nostr', 'pubkey', 'x', '%ZZ', ''),
        fc.oneof(param, fc.integer().map(String), fc.constantFrom('1e400', 'NaN', '-1', '21000', '{}')),
      ),
      {
        maxLength: 4,
      },
    )
    .map((kv) => '?' + kv.map(([k, v]) => `${k}=${v}`).join('&')),
  { nil: '' },
);
const host = fc.oneof(
  fc.constantFrom('x', '127.0.0.1', '[::1', '[::1]', '%zz', '[::1]:99999', 'a:b:c', 'user@host', 'xn--', 'ex%41mple.com', ''),
  fc.string({ unit: 'binary-ascii', maxLength: 10 }),
);
const method = fc.oneof(
  { weight: 6, arbitrary: fc.constantFrom('GET', 'POST', 'HEAD', 'OPTIONS') },
  { weight: 2, arbitrary: fc.constantFrom('PUT', 'DELETE', 'PATCH', 'TRACE', 'CONNECT', 'PROPFIND', 'get', 'BREW', '') },
  { weight: 1, arbitrary: fc.string({ unit: 'binary-ascii', maxLength: 8 }) },
);
const version = fc.oneof(
  { weight: 8, arbitrary: fc.constant('HTTP/1.1') },
  { weight: 2, arbitrary: fc.constantFrom('HTTP/1.0', 'HTTP/2.0', 'HTTP/9', 'HTTP/1.1x', '') },
);
const printable = fc.stringMatching(/^[\x20-\x7e]{0,40}$/);
const header = fc.oneof(
  fc.tuple(
    fc.constantFrom(
      'Content-Type',
      'Accept',
      'Accept-Encoding',
      'X-Forwarded-For',
      'Host',
      'Origin',
      'Upgrade',
      'Sec-WebSocket-Key',
      'Sec-WebSocket-Version',
      'Sec-WebSocket-Protocol',
      'Sec-WebSocket-Extensions',
      'Cookie',
      'Authorization',
      'Range',
    ),
    fc.oneof(
      fc.constantFrom(
        'application/json',
        'application/nostr+json',
        'gzip',
        'websocket',
        'dGhlIHNhbXBsZSBub25jZQ==',
        '13',
        '*/*',
        '',
        '%ZZ',
        '::1, 1.2.3.4',
      ),
      printable,
      fc.string({ unit: 'binary-ascii', maxLength: 40 }),
    ),
  ),
  fc.tuple(fc.stringMatching(/^[A-Za-z0-9!#$%&'*+.^_`|~-]{1,12}$/), printable),
  fc.tuple(fc.string({ unit: 'binary-ascii', minLength: 1, maxLength: 12 }), fc.string({ unit: 'binary-ascii', maxLength: 40 })),
);
const body = fc.oneof(
  { weight: 3, arbitrary: fc.constant(Buffer.alloc(0)) },
  { weight: 2, arbitrary: fc.json({ maxDepth: 3 }).map((s) => Buffer.from(s)) },
  {
    weight: 2,
    arbitrary: fc
      .record(
        {
          pubkey: fc.oneof(fc.stringMatching(/^[0-9a-f]{64}$/), fc.string()),
          product: fc.constantFrom('admission', 'subscription', 'credit', 'event', 'gold', ''),
          amount_msat: fc.oneof(fc.integer(), fc.double(), fc.constant(Number.POSITIVE_INFINITY)),
          event_id: fc.oneof(fc.stringMatching(/^[0-9a-f]{64}$/), fc.string()),
        },
        { requiredKeys: [] },
      )
      .map((o) => Buffer.from(JSON.stringify(o))),
  },
  { weight: 1, arbitrary: fc.uint8Array({ maxLength: 300 }).map((a) => Buffer.from(a)) },
);

/** `halfClose`: the client shuts its side after writing (the server may then abort the request). */
type Case = { bytes: Buffer; what: string; halfClose: boolean };

/**
 * A request line and headers from the pieces above. `wild`: any method, version, header bytes,
 * absolute-form targets, early half-close; otherwise a well-formed request (the path, query,
 * header values and body still fuzzed) that reaches the route handlers.
 */
function structuredArb(paths: string[], wild: boolean): fc.Arbitrary<Case> {
  const printableHeader = fc.tuple(
    fc.constantFrom('Content-Type', 'Accept', 'Accept-Encoding', 'X-Forwarded-For', 'Origin', 'Cookie', 'Range', 'X-Any'),
    printable,
  );
  return fc
    .record({
      method: wild ? method : fc.constantFrom('GET', 'GET', 'POST', 'HEAD', 'OPTIONS'),
      path: fc
        .tuple(fc.constantFrom(...paths), fc.array(param, { minLength: 2, maxLength: 2 }))
        .map(([p, [a, b]]) => p.replace('{}', a).replace('{}', b)),
      query,
      absolute: wild ? fc.oneof({ weight: 3, arbitrary: fc.constant(undefined) }, { weight: 1, arbitrary: host }) : fc.constant(undefined),
      version: wild ? version : fc.constant('HTTP/1.1'),
      headers: fc.array(wild ? header : printableHeader, { maxLength: 6 }),
      body,
      lengthHeader: wild ? fc.constantFrom('exact', 'exact', 'none', 'chunked', 'short') : fc.constantFrom('exact', 'chunked'),
      halfClose: wild ? fc.boolean() : fc.constant(false),
    })
    .map((r) => {
      const target = (r.absolute !== undefined ? `http://${r.absolute}` : '') + r.path + r.query;
      const line = `${r.method} ${target}${r.version ? ' ' + r.version : ''}`;
      const hs = [...r.headers.map(([k, v]) => `${k}: ${v}`)];
      let payload = r.body;
      if (r.lengthHeader === 'exact' && payload.length > 0) hs.push(`Content-Length: ${payload.length}`);
      if (r.lengthHeader === 'short') hs.push(`Content-Length: ${Math.floor(payload.length / 2)}`);
      if (r.lengthHeader === 'chunked') {
        hs.push('Transfer-Encoding: chunked');
        payload = Buffer.concat([Buffer.from(`${payload.length.toString(16)}\r\n`), payload, Buffer.from('\r\n0\r\n\r\n')]);
      }
      const head = [line, 'Host: 127.0.0.1', ...hs, 'Connection: close'].join('\r\n') + '\r\n\r\n';
      return {
        bytes: Buffer.concat([Buffer.from(head, 'latin1'), payload]),
        what: JSON.stringify(head.slice(0, 400)),
        halfClose: r.halfClose,
      };
    });
}

function requestArb(paths: string[]): fc.Arbitrary<Case> {
  const structured = structuredArb(paths, false);
  const wild = structuredArb(paths, true);
  const garbage = fc.tuple(fc.uint8Array({ minLength: 1, maxLength: 400 }), fc.boolean()).map(([a, crlf]) => {
    const bytes = Buffer.concat([Buffer.from(a), Buffer.from(crlf ? '\r\n\r\n' : '')]);
    return { bytes, what: `garbage ${bytes.toString('hex').slice(0, 200)}`, halfClose: true };
  });
  const prefixed = fc
    .tuple(
      fc.constantFrom('GET / HTTP/1.1\r\n', 'GET /api/held/', 'POST /api/invoices HTTP/1.1\r\nContent-Length: 5\r\n\r\n', 'GET '),
      fc.uint8Array({ maxLength: 200 }),
    )
    .map(([p, a]) => {
      const bytes = Buffer.concat([Buffer.from(p), Buffer.from(a), Buffer.from('\r\n\r\n')]);
      return { bytes, what: `prefixed ${JSON.stringify(bytes.toString('latin1').slice(0, 200))}`, halfClose: true };
    });
  return fc.oneof(
    { weight: 4, arbitrary: structured },
    { weight: 3, arbitrary: wild },
    { weight: 1, arbitrary: garbage },
    { weight: 1, arbitrary: prefixed },
  );
}

describe(`HTTP fuzz over raw TCP (${backend})`, () => {
  const runs = Number(process.env.HTTP_FUZZ_RUNS ?? 150);

  it.each([
    // uWS says nothing to what it cannot parse (absolute-form, bad headers, bad versions) and
    // drops the connection later, so fewer of its cases get an answer.
    ['admission service', () => admissionPort, ADMISSION_PATHS, 0.5],
    ['relay', () => relayPort, RELAY_PATHS, 0.25],
  ] as const)(
    'the %s answers every request below 500 and keeps serving',
    async (_name, port, paths, minAnswered) => {
      let answered = 0;
      await fc.assert(
        fc.asyncProperty(requestArb([...paths]), async (c) => {
          const a = await rawHttp(port(), c.bytes, { timeoutMs: 700, halfClose: c.halfClose });
          if (a.statuses.length > 0) answered++;
          // Anything sent back is a complete status below 500; silence means the server waits for
          // more bytes or closed the connection, never that it died (checked next).
          for (const s of a.statuses) {
            if (s >= 500) throw new Error(`status ${s} for ${c.what}:\n${a.data.toString('latin1').slice(0, 400)}`);
          }
        }),
        { numRuns: runs, endOnFailure: true },
      );
      // Most fuzz cases are well-formed enough to be answered: the fuzzer reaches the handlers.
      expect(answered).toBeGreaterThan(runs * minAnswered);
      await bothServersAnswer();
    },
    240_000,
  );

  it('both servers still answer normal requests, and every route answers a normal request below 500', async () => {
    await bothServersAnswer();
    for (const p of ADMISSION_PATHS.map((p) => p.replaceAll('{}', 'a'.repeat(64))).filter((p) => !p.endsWith('/events'))) {
      below500(await rawRequest(admissionPort, `GET ${p} HTTP/1.1`));
    }
    for (const p of RELAY_PATHS.map((p) => p.replaceAll('{}', 'x'))) below500(await rawRequest(relayPort, `GET ${p} HTTP/1.1`));
  });
});
