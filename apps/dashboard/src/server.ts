import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Config } from '@paidrelay/config';
import { sendAsset } from '@paidrelay/page';
import type { Logger } from 'pino';
import { buildDashboardPage } from './page/index.ts';

export type Dashboard = {
  port: number;
  /** Where an admin opens it. */
  url: string;
  /** The relay HTTP URL the page calls (NIP-86). */
  relayUrl: string;
  close(): Promise<void>;
};

export type DashboardOptions = {
  /** The relay's URL (ws(s):// or http(s)://) when the caller knows better than the config (the all-in-one, a test on port 0). */
  relayUrl?: string;
  /** Port to listen on instead of DASHBOARD_PORT (0: any). */
  port?: number;
};

/** The relay's HTTP URL for the page: DASHBOARD_RELAY_URL, else RELAY_URL (or the given URL) in http(s) form, else http://localhost:PORT/. */
export function dashboardRelayUrl(config: Config, given?: string): string {
  const raw = config.DASHBOARD_RELAY_URL ?? given ?? config.RELAY_URL ?? `http://localhost:${config.PORT}/`;
  const u = new URL(raw);
  if (u.protocol === 'ws:') u.protocol = 'http:';
  else if (u.protocol === 'wss:') u.protocol = 'https:';
  return u.toString();
}

const SECURITY: Record<string, string> = {
  'X-Content-Type-Options': 'nosniff',
  'Referrer-Policy': 'no-referrer',
  'X-Frame-Options': 'DENY',
};

/**
 * The admin dashboard's server: the static page (HTML, one script, one stylesheet) and
 * /healthz. It holds no secret and no data: the page talks to the relay's NIP-86 endpoint
 * directly, each call signed by the admin's NIP-07 extension.
 */
export async function startDashboard(config: Config, log: Logger, opts: DashboardOptions = {}): Promise<Dashboard> {
  const relayUrl = dashboardRelayUrl(config, opts.relayUrl);
  const page = await buildDashboardPage({ relayUrl, title: config.RELAY_NAME });
  const relayOrigin = new URL(relayUrl).origin;
  // The page may connect to its own origin and to the relay only; scripts and styles are ours.
  const csp = `default-src 'self'; connect-src 'self' ${relayOrigin}; img-src 'self' data: https: http:; style-src 'self'; script-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'`;
  const server: Server = createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    const send = (status: number, type: string, body: string, headers: Record<string, string> = {}) => {
      res.writeHead(status, { ...SECURITY, 'Content-Type': type, 'Content-Length': String(Buffer.byteLength(body)), ...headers });
      res.end(req.method === 'HEAD' ? undefined : body);
    };
    if (req.method !== 'GET' && req.method !== 'HEAD') return send(405, 'text/plain', 'method not allowed\n', { Allow: 'GET, HEAD' });
    if (path === '/' || path === '/index.html')
      return send(200, 'text/html; charset=utf-8', page.html, { 'Content-Security-Policy': csp, 'Cache-Control': 'no-cache' });
    if (path === '/dashboard.js') return sendAsset(req, res, page.js, SECURITY);
    if (path === '/dashboard.css') return sendAsset(req, res, page.css, SECURITY);
    if (path === '/healthz') return send(200, 'text/plain', 'ok\n');
    send(404, 'text/plain', 'not found\n');
  });
  const port = opts.port ?? config.DASHBOARD_PORT;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, config.HOST, () => resolve());
  });
  const actual = (server.address() as AddressInfo).port;
  const host = config.HOST === '0.0.0.0' || config.HOST === '::' ? 'localhost' : config.HOST;
  const url = `http://${host.includes(':') ? `[${host}]` : host}:${actual}/`;
  log.info({ url, relay: relayUrl }, 'dashboard listening');
  return {
    port: actual,
    url,
    relayUrl,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
