import { randomBytes } from 'node:crypto';
import { encodeAuth, upgradeRequestUrl } from '@paidrelay/nostr';
import { send, type Connection } from './connection.ts';
import type { RelayContext } from './context.ts';
import { ingest, REFUSAL_ANSWERS_BURST, REFUSAL_ANSWERS_PER_SECOND } from './ingest.ts';
import { IpCounter, TokenBucket } from './limits.ts';
import { closeSub, newQuerySlots } from './query.ts';
import type { loadUws, TemplatedApp } from './uws.ts';

const decoder = new TextDecoder();

/** The relay's WebSockets: who may connect (upgrade), the open connections, and where messages go (ingest). */
export class Sockets {
  private readonly connections = new Set<Connection>();
  private readonly ipCounter: IpCounter;
  private nextId = 1;
  /** Set when the relay starts closing: upgrades are refused from then on. */
  shuttingDown = false;

  constructor(private readonly ctx: RelayContext) {
    this.ipCounter = new IpCounter(ctx.config.MAX_CONNECTIONS_PER_IP);
  }

  /** Registers the WebSocket route on `app`. */
  listenOn(app: TemplatedApp, uWS: ReturnType<typeof loadUws>): void {
    const { config, metrics } = this.ctx;
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
        const refusal = this.refuseUpgrade(ip);
        if (refusal) {
          res.writeStatus(refusal[0]).end(refusal[1]);
          return;
        }
        const conn: Connection = {
          id: this.nextId++,
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
          addressRefused: 0,
          refusalAnswers: new TokenBucket(REFUSAL_ANSWERS_PER_SECOND, REFUSAL_ANSWERS_BURST),
          querySlots: newQuerySlots(),
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
        this.connections.add(conn);
        metrics.connections.inc();
        send(conn, encodeAuth(conn.challenge));
      },
      message: (ws, message) => {
        // The ArrayBuffer is only valid during this call: ingest measures (bytes) and decodes it at once.
        ingest(this.ctx, ws.getUserData(), message);
      },
      close: (ws) => {
        const conn = ws.getUserData();
        conn.closed = true;
        conn.ws = null;
        for (const sub of [...conn.subs.values()]) closeSub(this.ctx, sub);
        this.connections.delete(conn);
        this.ipCounter.close(conn.ip);
        metrics.connections.dec();
      },
    });
  }

  /** Status and text of an upgrade refused, or undefined (the address's connection is then counted). */
  private refuseUpgrade(ip: string): [string, string] | undefined {
    const { config, metrics, moderation } = this.ctx;
    if (this.shuttingDown) return ['503 Service Unavailable', 'shutting down'];
    if (moderation.isBlockedAddress(ip)) {
      metrics.messages.inc({ type: 'connection-refused' });
      return ['403 Forbidden', 'blocked: this address is blocked on this relay'];
    }
    if (!this.ipCounter.tryOpen(ip)) {
      metrics.messages.inc({ type: 'connection-refused' });
      return ['429 Too Many Requests', `too many connections from this address (max ${config.MAX_CONNECTIONS_PER_IP})`];
    }
    return undefined;
  }

  /** Closes every open connection (1001), after the relay has stopped taking new ones. */
  endAll(): void {
    for (const conn of [...this.connections]) conn.ws?.end(1001, 'relay shutting down');
  }
}
