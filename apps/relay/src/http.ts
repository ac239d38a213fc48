import { busReadiness } from '@paidrelay/bus';
import type { HttpRequest, HttpResponse, TemplatedApp } from './uws.ts';
import type { RelayContext } from './context.ts';
import { managementRoute } from './management.ts';
import { relayInfo } from './nip11.ts';

const CORS = [
  ['Access-Control-Allow-Origin', '*'],
  // `*` does not cover Authorization: the NIP-86 API (POST, NIP-98) names it.
  ['Access-Control-Allow-Headers', 'Authorization, *'],
  ['Access-Control-Allow-Methods', 'GET, POST, OPTIONS'],
];

function reply(res: HttpResponse, status: string, type: string, body: string): void {
  res.cork(() => {
    res.writeStatus(status);
    for (const [k, v] of CORS) res.writeHeader(k, v);
    res.writeHeader('Content-Type', type);
    res.end(body);
  });
}

type Route = (res: HttpResponse, req: HttpRequest) => void;

/**
 * uWS ends the process on an exception thrown in a handler, and on any use of a response after
 * it was aborted. Every route goes through here: a synchronous throw is logged and answered 500
 * (when the response can still be written); asynchronous routes use `later`.
 */
function safe(ctx: RelayContext, route: Route): Route {
  return (res, req) => {
    try {
      route(res, req);
    } catch (err) {
      ctx.log.error({ err: (err as Error)?.message ?? String(err) }, 'http handler failed');
      try {
        reply(res, '500 Internal Server Error', 'text/plain', 'internal error\n');
      } catch {
        /* already answered or aborted: nothing more to write */
      }
    }
  };
}

/** Answers from a promise, never after the client has gone, and never with a rejection escaping. */
function later(ctx: RelayContext, res: HttpResponse, work: () => Promise<[status: string, type: string, body: string]>): void {
  let aborted = false;
  res.onAborted(() => (aborted = true));
  const answer = (status: string, type: string, body: string) => {
    if (aborted) return;
    try {
      reply(res, status, type, body);
    } catch (err) {
      ctx.log.warn({ err }, 'http: could not answer');
    }
  };
  work().then(
    (r) => answer(...r),
    (err: unknown) => {
      ctx.log.error({ err: (err as Error)?.message ?? String(err) }, 'http handler failed');
      answer('500 Internal Server Error', 'text/plain', 'internal error\n');
    },
  );
}

/** HTTP on the relay's own port: NIP-11, NIP-86 management, Prometheus metrics, liveness and readiness. */
export function httpRoutes(app: TemplatedApp, ctx: RelayContext, state: { ready: () => Promise<boolean> }): void {
  // NIP-11 is rendered again whenever an admin's change (NIP-86) reaches this replica: of the
  // moderation state, or of what a hook renders (prices). Each version only grows: their sum tells.
  let infoVersion = -1;
  let info = '';
  let name = ctx.config.RELAY_NAME;
  // (A context built by hand, as in the HTTP fuzz test, may come without moderation.)
  const moderation = ctx.moderation as RelayContext['moderation'] | undefined;
  const currentInfo = (): string => {
    let version = moderation?.version ?? 0;
    for (const hook of ctx.nip11 ?? []) version += hook.version?.() ?? 0;
    if (infoVersion !== version) {
      infoVersion = version;
      const config = moderation ? moderation.infoConfig(ctx.config) : ctx.config;
      let doc = relayInfo(config, ctx.key.pubkey, ctx.readPolicies);
      for (const hook of ctx.nip11 ?? []) doc = hook(doc);
      if (moderation && moderation.allowedKinds.size > 0) (doc.limitation as Record<string, unknown>).restricted_writes = true;
      info = JSON.stringify(doc);
      name = config.RELAY_NAME;
    }
    return info;
  };
  currentInfo();

  app.options(
    '/*',
    safe(ctx, (res) => reply(res, '204 No Content', 'text/plain', '')),
  );

  app.get(
    '/metrics',
    safe(ctx, (res) => later(ctx, res, async () => ['200 OK', ctx.metrics.registry.contentType, await ctx.metrics.registry.metrics()])),
  );

  app.get(
    '/healthz',
    safe(ctx, (res) => reply(res, '200 OK', 'text/plain', 'ok\n')),
  );

  app.get(
    '/readyz',
    safe(ctx, (res) =>
      later(ctx, res, async () =>
        (await state.ready())
          ? ['200 OK', 'text/plain', `ready\n${busReadiness(ctx.bus)}`]
          : ['503 Service Unavailable', 'text/plain', `not ready\n${busReadiness(ctx.bus)}`],
      ),
    ),
  );

  app.get(
    '/*',
    safe(ctx, (res, req) => {
      const accept = req.getHeader('accept');
      if (accept.includes('application/nostr+json')) {
        reply(res, '200 OK', 'application/nostr+json', currentInfo());
        return;
      }
      currentInfo();
      reply(res, '200 OK', 'text/plain; charset=utf-8', `${name}: a Nostr relay. Connect a Nostr client to ${ctx.relayUrl}\n`);
    }),
  );

  // NIP-86: JSON-RPC on the relay URL (Content-Type application/nostr+json+rpc), NIP-98 auth.
  app.post('/*', safe(ctx, managementRoute(ctx)));

  app.any(
    '/*',
    safe(ctx, (res) => reply(res, '405 Method Not Allowed', 'text/plain', 'method not allowed\n')),
  );
}
