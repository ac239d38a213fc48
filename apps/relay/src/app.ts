import type { Bus } from '@paidrelay/bus';
import type { Config } from '@paidrelay/config';
import type { Database } from '@paidrelay/db';
import type { Logger } from 'pino';
import type { RelayContext } from './context.ts';
import type { HookSource } from './hooks.ts';
import { httpRoutes } from './http.ts';
import { readiness, startPurgeTimer } from './lifecycle.ts';
import { buildServices } from './services.ts';
import { Sockets } from './sockets.ts';
import { loadUws, type us_listen_socket } from './uws.ts';

export type Relay = {
  port: number;
  url: string;
  ctx: RelayContext;
  /** One run of the purge timer's work now (expired events, then the purge hooks), as the timer does it. */
  purge(now: number): Promise<void>;
  close(): Promise<void>;
};

export type RelayOptions = {
  /** Share a database and a bus with other services of this process (they are not closed with the relay). */
  db?: Database;
  bus?: Bus;
  /**
   * What the entry point adds (write and read policies, the payment gate, NIP-11 changes, purge
   * and close hooks), joined in order. Without any, the relay is an open relay.
   */
  hooks?: HookSource[];
};

/**
 * Builds and starts one relay process, a stage per file: the services and their context
 * (services.ts), the WebSocket handlers (sockets.ts), the HTTP routes with readiness (http.ts,
 * lifecycle.ts), then the purge timer (lifecycle.ts). The core imports no payment code: a paid
 * relay's gate comes in `hooks`.
 */
export async function startRelay(config: Config, log: Logger, opts: RelayOptions = {}): Promise<Relay> {
  const uWS = loadUws();
  const services = await buildServices(config, log, opts);
  const { ctx, hooks } = services;
  const app = uWS.App();
  const sockets = new Sockets(ctx);
  sockets.listenOn(app, uWS);
  httpRoutes(app, ctx, { ready: readiness(ctx, () => sockets.shuttingDown) });

  const listenSocket = await new Promise<us_listen_socket>((resolve, reject) => {
    app.listen(config.HOST, config.PORT, (s) => (s ? resolve(s) : reject(new Error(`cannot listen on ${config.HOST}:${config.PORT}`))));
  });
  const port = uWS.us_socket_local_port(listenSocket);
  if (!config.RELAY_URL) ctx.relayUrl = `ws://localhost:${port}`;
  const purge = startPurgeTimer(ctx, hooks.purge);

  log.info(
    { url: ctx.relayUrl, port, db: ctx.db.kind, bus: ctx.bus.kind, verifier: ctx.verifier.backend, self: ctx.key.pubkey },
    'relay listening',
  );

  return {
    port,
    url: ctx.relayUrl,
    ctx,
    purge: purge.once,
    async close() {
      sockets.shuttingDown = true;
      purge.stop();
      uWS.us_listen_socket_close(listenSocket);
      await ctx.writer.drain();
      // Let the last OKs leave the per-connection outbox before the sockets close.
      await new Promise((r) => setImmediate(r));
      await new Promise((r) => setImmediate(r));
      sockets.endAll();
      await services.close();
    },
  };
}
