import { encodeAuth, type NostrEvent } from '@paidrelay/nostr';
import type { LimitFunction } from 'p-limit';
import type { WebSocket } from './uws.ts';
import type { TokenBucket } from './limits.ts';
import type { ReadFilter } from './read-policy.ts';

/** A live REQ. Until its stored events have been sent, live matches wait in `backlog`. */
export type Subscription = {
  conn: Connection;
  id: string;
  /** As the read policies narrowed them. */
  filters: ReadFilter[];
  /** `deliver[i]`, when set, must also hold for a live event matched by `filters[i]` (read policies). */
  deliver?: (((ev: NostrEvent) => boolean) | undefined)[];
  backlog: { id: string; json: string }[] | null;
  /**
   * Ids sent in the stored part, remembered for a while after EOSE: an event stored by another
   * replica while the bus lagged (a Redis outage) can be both in the stored part and, later, in
   * the bus's catch-up; it is delivered once.
   */
  sentStored?: { ids: Set<string>; until: number };
};

/** Per-WebSocket state, kept as the uWS user data. */
export type Connection = {
  id: number;
  ip: string;
  closed: boolean;
  ws: WebSocket<Connection> | null;
  challenge: string;
  /** The relay URL as this client reached it (Host, or X-Forwarded-* behind a trusted proxy), for NIP-42. */
  url: string | undefined;
  authed: Set<string>;
  subs: Map<string, Subscription>;
  bucket: TokenBucket;
  /** Messages refused in a row by `bucket`: one NOTICE per run, and a connection that keeps on is closed. */
  overLimit: number;
  /** EVENTs refused in a row by the address's bucket (before parsing): a connection that keeps on is closed. */
  addressRefused: number;
  /** How many of those refusals get an OK (a person's pace always does; a flood's are dropped unanswered). */
  refusalAnswers: TokenBucket;
  /** Runs this connection's stored-event queries, a few at a time (query.ts). */
  querySlots: LimitFunction;
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

/**
 * Answers a refusal: after a reason starting `auth-required:` the client gets a fresh `AUTH`
 * with the connection's challenge (NIP-42 allows one at any moment), so a client that dropped
 * the first one, or connected before it wanted to authenticate, can act on the refusal.
 * The challenge is reused, not replaced: an AUTH already on its way stays valid.
 */
export function sendRefusal(conn: Connection, msg: string, why: string): void {
  send(conn, msg);
  if (why.startsWith('auth-required:')) send(conn, encodeAuth(conn.challenge));
}
