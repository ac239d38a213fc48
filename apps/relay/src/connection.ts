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

const outbox = new Map<Connection, string[]>();
let flushScheduled = false;

/**
 * Sends a text frame to a client. Messages are queued per connection and written once per
 * event-loop turn, corked: the OKs of one group commit, or an event for 500 subscribers, cost
 * one write per connection instead of one per message. Order per connection is kept.
 * A socket that has gone is skipped (uWS throws on a closed socket).
 */
export function send(conn: Connection, msg: string): void {
  if (conn.closed) return;
  const queue = outbox.get(conn);
  if (queue) queue.push(msg);
  else outbox.set(conn, [msg]);
  if (!flushScheduled) {
    flushScheduled = true;
    setImmediate(flushOutbox);
  }
}

function flushOutbox(): void {
  flushScheduled = false;
  for (const [conn, msgs] of outbox) {
    if (conn.closed || !conn.ws) continue;
    const ws = conn.ws;
    ws.cork(() => {
      for (const m of msgs) ws.send(m, false, false);
    });
  }
  outbox.clear();
}
