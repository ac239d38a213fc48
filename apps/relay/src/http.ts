import type { HttpRequest, HttpResponse, TemplatedApp } from './uws.ts';
import type { RelayContext } from './context.ts';
import { relayInfo } from './nip11.ts';

const CORS = [
  ['Access-Control-Allow-Origin', '*'],
  ['Access-Control-Allow-Headers', '*'],
  ['Access-Control-Allow-Methods', 'GET, OPTIONS'],
];

function reply(res: HttpResponse, status: string, type: string, body: string): void {
  res.cork(() => {
    res.writeStatus(status);
    for (const [k, v] of CORS) res.writeHeader(k, v);
    res.writeHeader('Content-Type', type);
    res.end(body);
  });
}

/** HTTP on the relay's own port: NIP-11, Prometheus metrics, liveness and readiness. */
export function httpRoutes(app: TemplatedApp, ctx: RelayContext, state: { ready: () => Promise<boolean> }): void {
  const info = JSON.stringify(relayInfo(ctx.config, ctx.key.pubkey, ctx.pricing));

  app.options('/*', (res) => reply(res, '204 No Content', 'text/plain', ''));

  app.get('/metrics', (res) => {
    let aborted = false;
    res.onAborted(() => (aborted = true));
    void ctx.metrics.registry.metrics().then((body) => {
      if (!aborted) reply(res, '200 OK', ctx.metrics.registry.contentType, body);
    });
  });

  app.get('/healthz', (res) => reply(res, '200 OK', 'text/plain', 'ok\n'));

  app.get('/readyz', (res) => {
    let aborted = false;
    res.onAborted(() => (aborted = true));
    void state.ready().then((ok) => {
      if (!aborted) reply(res, ok ? '200 OK' : '503 Service Unavailable', 'text/plain', ok ? 'ready\n' : 'not ready\n');
    });
  });

  app.get('/*', (res, req: HttpRequest) => {
    const accept = req.getHeader('accept');
    if (accept.includes('application/nostr+json')) {
      reply(res, '200 OK', 'application/nostr+json', info);
      return;
    }
    reply(
      res,
      '200 OK',
      'text/plain; charset=utf-8',
      `${ctx.config.RELAY_NAME}: a Nostr relay. Connect a Nostr client to ${ctx.relayUrl}\n`,
    );
  });

  app.any('/*', (res) => reply(res, '405 Method Not Allowed', 'text/plain', 'method not allowed\n'));
}
