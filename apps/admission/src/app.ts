import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { busReadiness } from '@paidrelay/bus';
import type { Config } from '@paidrelay/config';
import { LivePrices, LoadMonitor } from '@paidrelay/payment-gate';
import { sendAsset } from '@paidrelay/page';
import type { Logger } from 'pino';
import { Counter, Registry, collectDefaultMetrics } from 'prom-client';
import { getAccountRoute, getHeldRoute, getInvoiceRoute, getPricingRoute, invoiceEvents, InvoiceRateLimit, postInvoice } from './api.ts';
import type { AdmissionContext, AdmissionDeps } from './context.ts';
import { clientIp, CORS, corsPreflight, error, HttpError, Router, send, type Req } from './http.ts';
import { lnurlCallback, lnurlPay } from './lnurl.ts';
import { publishRelayProfile } from './profile.ts';
import { InvoiceStreams } from './sse.ts';
import { watchPayments } from './watch.ts';
import { buildPayPage } from './web/index.ts';
import { SharedCounters } from './volumes.ts';

export type { AdmissionDeps };

export type Admission = {
  port: number;
  url: string;
  ctx: AdmissionContext;
  /** Runs the reconciler now (tests, and operators after a wallet outage). */
  reconcile(): Promise<void>;
  close(): Promise<void>;
};

/** The payments service: JSON API, pay page, LNURL-pay with zaps, payment watching. */
export async function startAdmission(config: Config, log: Logger, deps: AdmissionDeps, port = config.ADMISSION_PORT): Promise<Admission> {
  const paymentsUrl = new URL(config.PAYMENTS_URL);
  // Invoices, /api/pricing and settlement read the prices as they are now (admins change them).
  const prices = await LivePrices.start(deps.db, deps.bus, log, deps.pricing);
  const counters = SharedCounters.open(config.REDIS_URL, config.REDIS_PREFIX, log);
  // This service stores no writes: it only follows the level the relay replicas' writes make.
  const load = new LoadMonitor(
    counters.store,
    () => prices.pricing.surge,
    () => 1,
    log,
  );
  load.start();
  const ctx: AdmissionContext = { config, log, ...deps, pricing: prices.pricing, origin: paymentsUrl.origin, counters, load };
  const limiter = new InvoiceRateLimit(config.INVOICES_PER_MINUTE_PER_IP);
  const streams = new InvoiceStreams(ctx);
  const basePath = paymentsUrl.pathname.replace(/\/$/, '') || '/pay';
  const page = await buildPayPage({ title: config.RELAY_NAME, basePath });

  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  const requests = new Counter({
    name: 'admission_http_requests_total',
    help: 'HTTP requests by route and status',
    labelNames: ['route', 'status'],
    registers: [registry],
  });

  const router = new Router()
    .on('GET', '/api/pricing', (req, res) => getPricingRoute(ctx, req, res))
    .on('POST', '/api/invoices', (req, res) => postInvoice(ctx, limiter, req, res))
    .on('GET', '/api/invoices/:id', (req, res) => getInvoiceRoute(ctx, req, res))
    .on('GET', '/api/invoices/:id/events', (req, res) => invoiceEvents(ctx, streams, req, res))
    .on('GET', '/api/accounts/:pubkey', (req, res) => getAccountRoute(ctx, req, res))
    .on('GET', '/api/held/:event_id', (req, res) => getHeldRoute(ctx, req, res))
    .on('GET', '/.well-known/lnurlp/:name', (req, res) => lnurlPay(ctx, req, res))
    .on('GET', '/lnurlp/:name/callback', (req, res) => lnurlCallback(ctx, limiter, req, res))
    .on('GET', basePath, (_req, res) => send(res, 200, page.html, 'text/html; charset=utf-8', { 'Cache-Control': 'no-cache' }))
    .on('GET', basePath + '/', (_req, res) => send(res, 200, page.html, 'text/html; charset=utf-8', { 'Cache-Control': 'no-cache' }))
    .on('GET', basePath + '/e/:event_id', (_req, res) =>
      send(res, 200, page.html, 'text/html; charset=utf-8', { 'Cache-Control': 'no-cache' }),
    )
    .on('GET', basePath + '/pay.js', (req, res) => sendAsset(req, res, page.js, CORS))
    .on('GET', basePath + '/pay.css', (req, res) => sendAsset(req, res, page.css, CORS))
    .on('GET', '/healthz', (_req, res) => send(res, 200, 'ok\n', 'text/plain'))
    // db.isReady(): one probe in flight at most, false after 2 s (a silent database), cached 1 s.
    // The bus is reported too, but only the database makes the service unready.
    .on('GET', '/readyz', async (_req, res) => {
      if (await ctx.db.isReady()) send(res, 200, `ready\n${busReadiness(ctx.bus)}`, 'text/plain');
      else send(res, 503, `database unreachable\n${busReadiness(ctx.bus)}`, 'text/plain');
    })
    .on('GET', '/metrics', async (_req, res) => send(res, 200, await registry.metrics(), registry.contentType));

  /** One request; anything it throws or rejects with is answered by the caller below. */
  const handle = async (rawReq: IncomingMessage, res: ServerResponse): Promise<void> => {
    let url: URL;
    try {
      // Absolute-form targets (`GET http://host/path`) are parsed too: a bad host throws here.
      url = new URL(rawReq.url ?? '/', 'http://x');
    } catch {
      throw new HttpError(400, 'malformed request target');
    }
    const req = Object.assign(rawReq, { params: {}, query: url.searchParams, ip: clientIp(rawReq, config.TRUST_PROXY) }) as Req;
    if (req.method === 'OPTIONS') return corsPreflight(res);
    const found = router.match(req.method ?? 'GET', url.pathname);
    if (found === undefined) return error(res, 404, 'not found');
    if (found === 'method') return error(res, 405, 'method not allowed');
    req.params = found.params;
    res.on('finish', () =>
      requests.inc({
        route: url.pathname.startsWith('/api/') ? url.pathname.split('/').slice(0, 3).join('/') : 'other',
        status: res.statusCode,
      }),
    );
    await found.handler(req, res);
  };

  // Nothing a client sends may escape the handler: a throw or a rejection is a 4xx/500 and a
  // log line, never an uncaught exception (which would end the process).
  const server: Server = createServer((rawReq, res) => {
    res.on('error', (err) => log.warn({ err }, 'response error'));
    handle(rawReq, res).catch((err: unknown) => {
      try {
        if (err instanceof HttpError) return error(res, err.status, err.message);
        log.error({ err, path: String(rawReq.url).slice(0, 200) }, 'request failed');
        error(res, 500, 'internal error, try again');
      } catch (e) {
        log.warn({ err: e }, 'could not answer a failed request');
        res.destroy();
      }
    });
  });
  // Unparseable HTTP (bad request line, bad header, oversized headers): a 4xx and close.
  server.on('clientError', (err: NodeJS.ErrnoException, socket) => {
    // Raw bytes must not interleave with a response already in flight on this socket.
    if (err.code === 'ECONNRESET' || !socket.writable || (socket as { _httpMessage?: unknown })._httpMessage) return void socket.destroy();
    const [status, text] =
      err.code === 'HPE_HEADER_OVERFLOW'
        ? [431, 'Request Header Fields Too Large']
        : err.code === 'ERR_HTTP_REQUEST_TIMEOUT'
          ? [408, 'Request Timeout']
          : [400, 'Bad Request'];
    const body = JSON.stringify({ error: `malformed HTTP request (${text.toLowerCase()})` });
    socket.end(
      `HTTP/1.1 ${status} ${text}\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`,
    );
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, config.HOST, () => resolve());
  });
  const actualPort = (server.address() as AddressInfo).port;

  await publishRelayProfile(ctx).catch((err) => log.warn({ err }, 'could not publish the relay profile'));
  const watcher = await watchPayments(ctx);
  log.info({ port: actualPort, paymentsUrl: config.PAYMENTS_URL, wallet: deps.lightning.kind }, 'admission service listening');

  return {
    port: actualPort,
    url: `http://127.0.0.1:${actualPort}`,
    ctx,
    reconcile: watcher.reconcile,
    async close() {
      watcher.stop();
      prices.close();
      streams.close();
      await load.close();
      await counters.close();
      server.closeAllConnections();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}
