import type { Filter } from '@paidrelay/nostr';
import type { WebSocket } from './uws.ts';
import type { TokenBucket } from './limits.ts';

/** A live REQ. Until its stored events have been sent, live matches wait in `backlog`. */
export type Subscription = {
  conn: Connection;
  id: string;
  filters: Filter[];
  backlog: { id: string; json: string }[] | null;
};

/** Per-WebSocket state, kept as the uWS user data. */
export type Connection = {
  id: number;
  ip: string;
  closed: boolean;
  ws: WebSocket<Connection> | null;
  challenge: string;
  authed: Set<string>;
  subs: Map<string, Subscription>;
  bucket: TokenBucket;
  queries: number;
};

/** Sends a text frame unless the socket has gone; uWS throws on a closed socket. */
export function send(conn: Connection, msg: string): void {
  if (conn.closed || !conn.ws) return;
  conn.ws.send(msg, false, false);
}
