import { randomBytes } from 'node:crypto';
import { createBus, decodeEventMessage, EVENTS_CHANNEL, RecentIds, type Bus } from '@paidrelay/bus';
import { loadRelayKey, type Config } from '@paidrelay/config';
import { databaseOptions, openDatabase, purgeExpired, type Database } from '@paidrelay/db';
import { encodeAuth, parsePubkeyList, upgradeRequestUrl, type NostrEvent, type ParseLimits } from '@paidrelay/nostr';
import type { Logger } from 'pino';
import { send, type Connection } from './connection.ts';
import type { RelayContext } from './context.ts';
import { deliver, SubscriptionIndex } from './fanout.ts';
import { resolveHooks, type HookSource, type RelayCore } from './hooks.ts';
import { httpRoutes } from './http.ts';
import { ingest } from './ingest.ts';
import { IpCounter, TokenBucket } from './limits.ts';
import { createMetrics } from './metrics.ts';
import { Moderation } from './moderation.ts';
import { defaultPolicies } from './policy.ts';
import { closeSub } from './query.ts';
import { defaultReadPolicies } from './read-policy.ts';
import { GroupCommitWriter } from './store.ts';
import { loadUws, type us_listen_socket } from './uws.ts';
import { VerifyPool } from './verify.ts';
import { createRateLimiter } from './rate-limit.ts';

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

const decoder = new TextDecoder();

/**
 * Builds and starts one relay process: storage, bus, moderation, the hooks, verifier, then the
 * WebSocket server. The core imports no payment code: a paid relay's gate comes in `hooks`.
 */
export async function startRelay(config: Config, log: Logger, opts: RelayOptions = {}): Promise<Relay> {
  const uWS = loadUws();
  const metrics = createMetrics();
  const key = loadRelayKey(config.RELAY_SECRET_KEY, config.DATA_DIR, config.NODE_ENV === 'production');
  const instanceId = randomBytes(8).toString('hex');
  const db = opts.db ?? (await openDatabase(databaseOptions(config, log)));
  if (!opts.db) await db.migrate();
  // Bounded: a replica starts without Redis and joins the bus when it comes.
  const bus = opts.bus ?? (await createBus({ redisUrl: config.REDIS_URL, logger: log }));
  metrics.probes.busUp = () => bus.healthy();
  // NIP-86 moderation, loaded before anything consults it; its allow-list (the admins' joined
  // to ALLOWED_PUBKEYS) is what a payment gate hook takes as free.
  const moderation = new Moderation(db, bus, log, instanceId, new Set(parsePubkeyList('ALLOWED_PUBKEYS', config.ALLOWED_PUBKEYS)));
  await moderation.start();
  const core: RelayCore = { config, log, db, bus, key, metrics, instanceId, allowedPubkeys: () => moderation.allowedPubkeys };
  const hooks = await resolveHooks(opts.hooks ?? [], core);
  const readPolicies = [moderation.readPolicy, ...defaultReadPolicies(config, hooks.membership), ...hooks.readPolicies];
  const verifier = await VerifyPool.start(
    config.VERIFY_WORKERS,
    (n) => metrics.verifyBatch.observe(n),
    (err) => log.error({ err }, 'signature worker failed; replacing it'),
  );
  const limits: ParseLimits = {
    maxTags: config.MAX_EVENT_TAGS,
    maxContentLength: config.MAX_CONTENT_LENGTH,
    maxLimit: config.MAX_LIMIT,
    defaultLimit: config.DEFAULT_LIMIT,
    maxFilters: config.MAX_FILTERS,
    maxSubIdLength: config.MAX_SUBID_LENGTH,
  };
  const ctx: RelayContext = {
    config,
    log,
    db,
    bus,
    writer: new GroupCommitWriter(
      db,
      config.WRITE_BATCH_MAX,
      metrics,
      log,
      hooks.gate?.charges,
      db.kind === 'postgres' ? config.WRITE_CONCURRENCY : 1,
    ),
    verifier,
    index: new SubscriptionIndex(),
    metrics,
    policies: [moderation.writePolicy, ...defaultPolicies(config), ...hooks.writePolicies],
    readPolicies,
    limits,
    relayUrl: config.RELAY_URL ?? `ws://localhost:${config.PORT}`,
    key,
    instanceId,
    recentEvents: new RecentIds(),
    gate: hooks.gate,
    // Its own Redis connection, made in the background: a start without Redis is not delayed.
    rateLimiter: createRateLimiter(config, log),
    nip11: hooks.nip11,
    moderation,
  };

  // Events stored or relayed by other replicas reach this replica's subscribers.
  await bus.subscribe(EVENTS_CHANNEL, (msg) => {
    const m = decodeEventMessage(msg);
    if (!m || m.sender === ctx.instanceId) return;
    try {
      const ev = JSON.parse(m.eventJson) as NostrEvent;
      // At most once per subscription: an id this process already delivered (a bus entry seen
      // twice, or an event relayed by two replicas) is not delivered again.
      if (!ctx.recentEvents.add(ev.id)) return;
      metrics.delivered.inc(deliver(ctx.index, ev, m.eventJson));
    } catch (err) {
      log.warn({ err: (err as Error).message }, 'bus: bad event message');
    }
  });

  const ipCounter = new IpCounter(config.MAX_CONNECTIONS_PER_IP);
  const connections = new Set<Connection>();
  let nextId = 1;
  let shuttingDown = false;
  const app = uWS.App();

  app.ws<Connection>('/*', {
    compression: uWS.DISABLED,
    // uWS drops the connection on a frame above this: up to twice the limit (at least 64 KiB) a
    // message gets a NOTICE from ingest (the limit is in bytes) and the connection stays usable.
    maxPayloadLength: Math.max(config.MAX_MESSAGE_LENGTH * 2, 1 << 16),
    maxBackpressure: config.MAX_BACKPRESSURE,
    closeOnBackpressureLimit: 1,
    idleTimeout: 120,
    sendPingsAutomatically: true,
    upgrade: (res, req, context) => {
      const forwarded = config.TRUST_PROXY ? req.getHeader('x-forwarded-for').split(',')[0].trim() || req.getHeader('x-real-ip') : '';
      const ip = forwarded || decoder.decode(res.getRemoteAddressAsText());
      if (shuttingDown) {
        res.writeStatus('503 Service Unavailable').end('shutting down');
        return;
      }
      if (moderation.isBlockedAddress(ip)) {
        metrics.messages.inc({ type: 'connection-refused' });
        res.writeStatus('403 Forbidden').end('blocked: this address is blocked on this relay');
        return;
      }
      if (!ipCounter.tryOpen(ip)) {
        metrics.messages.inc({ type: 'connection-refused' });
        res.writeStatus('429 Too Many Requests').end(`too many connections from this address (max ${config.MAX_CONNECTIONS_PER_IP})`);
        return;
      }
      const conn: Connection = {
        id: nextId++,
        ip,
        closed: false,
        ws: null,
        challenge: randomBytes(16).toString('hex'),
        url: upgradeRequestUrl(
          {
            host: req.getHeader('host'),
            path: req.getUrl(),
            forwardedProto: req.getHeader('x-forwarded-proto'),
            forwardedHost: req.getHeader('x-forwarded-host'),
          },
          config.TRUST_PROXY,
        ),
        authed: new Set(),
        subs: new Map(),
        bucket: new TokenBucket(config.MAX_MESSAGES_PER_SECOND, config.MAX_MESSAGES_PER_SECOND * 2),
        overLimit: 0,
        queries: 0,
      };
      res.upgrade(
        conn,
        req.getHeader('sec-websocket-key'),
        req.getHeader('sec-websocket-protocol'),
        req.getHeader('sec-websocket-extensions'),
        context,
      );
    },
    open: (ws) => {
      const conn = ws.getUserData();
      conn.ws = ws;
      connections.add(conn);
      metrics.connections.inc();
      send(conn, encodeAuth(conn.challenge));
    },
    message: (ws, message) => {
      // The ArrayBuffer is only valid during this call: ingest measures (bytes) and decodes it at once.
      ingest(ctx, ws.getUserData(), message);
    },
    close: (ws) => {
      const conn = ws.getUserData();
      conn.closed = true;
      conn.ws = null;
      for (const sub of [...conn.subs.values()]) closeSub(ctx, sub);
      connections.delete(conn);
      ipCounter.close(conn.ip);
      metrics.connections.dec();
    },
  });

  // db.isReady(): one probe in flight at most, false after 2 s (a silent database), cached 1 s.
  const ready = async () => !shuttingDown && (await db.isReady());
  httpRoutes(app, ctx, { ready });

  const listenSocket = await new Promise<us_listen_socket>((resolve, reject) => {
    app.listen(config.HOST, config.PORT, (s) => (s ? resolve(s) : reject(new Error(`cannot listen on ${config.HOST}:${config.PORT}`))));
  });
  const port = uWS.us_socket_local_port(listenSocket);
  if (!config.RELAY_URL) ctx.relayUrl = `ws://localhost:${port}`;

  const purgeOnce = async (now: number): Promise<void> => {
    const [expired, ...byHooks] = await Promise.all([purgeExpired(db.kysely, now), ...hooks.purge.map((p) => p(now))]);
    const other = byHooks.reduce((a, b) => a + b, 0);
    if (expired > 0 || other > 0) log.info({ purged: expired, purgedByHooks: other }, 'expired events purged');
  };
  const purge = setInterval(() => {
    purgeOnce(Math.floor(Date.now() / 1000)).catch((err) => log.warn({ err: (err as Error).message }, 'purge failed'));
  }, config.PURGE_INTERVAL_SECONDS * 1000);
  purge.unref();

  log.info({ url: ctx.relayUrl, port, db: db.kind, bus: bus.kind, verifier: verifier.backend, self: key.pubkey }, 'relay listening');

  return {
    port,
    url: ctx.relayUrl,
    ctx,
    purge: purgeOnce,
    async close() {
      shuttingDown = true;
      clearInterval(purge);
      uWS.us_listen_socket_close(listenSocket);
      await ctx.writer.drain();
      // Let the last OKs leave the per-connection outbox before the sockets close.
      await new Promise((r) => setImmediate(r));
      await new Promise((r) => setImmediate(r));
      for (const conn of [...connections]) conn.ws?.end(1001, 'relay shutting down');
      await verifier.close();
      for (const hook of hooks.onClose) await hook();
      await ctx.rateLimiter?.close();
      moderation.close();
      if (!opts.bus) await bus.close();
      if (!opts.db) await db.close();
    },
  };
}
