import {
  checkAuthEvent,
  encodeClosed,
  encodeNotice,
  encodeOk,
  eventToJson,
  hasValidId,
  kindClass,
  nowSeconds,
  parseClientMessage,
  reason,
  type Filter,
  type NostrEvent,
} from '@paidrelay/nostr';
import type { WriteOutcome } from './store.ts';
import { send, sendRefusal, type Connection } from './connection.ts';
import { encodeEventMessage, EVENTS_CHANNEL } from '@paidrelay/bus';
import type { RelayContext } from './context.ts';
import { deliver } from './fanout.ts';
import { networkKey } from './limits.ts';
import { runPolicies } from './policy.ts';
import { closeSub, handleCount, handleReq } from './query.ts';
import { limitRead } from './rate-limit.ts';
import { isUtf8 } from 'node:buffer';
import { TurnQueue } from './turns.ts';

// Invalid UTF-8 (possible in a binary frame; uWS closes text frames that are not UTF-8) is
// refused with a NOTICE instead of being turned into U+FFFD and parsed: checked first (isUtf8),
// decoded only when the text is needed (a frame the address's bucket drops never is).
const utf8 = new TextDecoder('utf-8', { fatal: true });
/** A frame that is an EVENT, told from its first characters (whitespace allowed, as JSON allows it). */
const EVENT_FRAME = /^\s*\[\s*"EVENT"\s*,/;
/** `"EVENT"` in UTF-8. */
const EVENT_VERB = Buffer.from('"EVENT"');
/**
 * The event's id as the frame spells it, found without parsing: for the OK of a refusal decided
 * before parsing. Only a key can be followed by `:`, and a quote inside a JSON string is escaped,
 * so this is the `id` of an object in the frame (a valid event has no other).
 */
const RAW_ID = /"id"\s*:\s*"([0-9a-f]{64})"/;
/**
 * EVENTs refused by the address's bucket that get an answer, per connection: someone behind a
 * flooded address (a NAT, an exit node) writing at a person's pace is always told `rate-limited:`;
 * a flood past this burst gets no answer (a client waiting for its OKs stops; one that does not
 * is closed after a burst's worth in a row).
 */
export const REFUSAL_ANSWERS_PER_SECOND = 1;
export const REFUSAL_ANSWERS_BURST = 10;
/**
 * What one event-loop turn spends on client messages before the rest wait for the next turn
 * (turns.ts): Postgres's replies and other clients' frames are read in between.
 */
export const TURN_MS = 4;
/** Messages waiting for a turn, per connection (in frames of the largest size) and in all (bytes). */
export const WAITING_FRAMES_PER_CONNECTION = 16;
export const WAITING_BYTES = 64 * 1024 * 1024;

const turnQueues = new WeakMap<RelayContext, TurnQueue<Connection>>();

/** The relay's turn queue, made on its first message. */
function turnsOf(ctx: RelayContext): TurnQueue<Connection> {
  let turns = turnQueues.get(ctx);
  if (!turns) {
    turns = new TurnQueue<Connection>({
      turnMs: TURN_MS,
      maxBytesPerKey: WAITING_FRAMES_PER_CONNECTION * ctx.config.MAX_MESSAGE_LENGTH,
      maxBytes: WAITING_BYTES,
      run: (conn, text) => dispatch(ctx, conn, text),
      live: (conn) => !conn.closed,
      onError: (err) => ctx.log.error({ err }, 'message handler failed'),
    });
    turnQueues.set(ctx, turns);
  }
  return turns;
}

/**
 * First stage: one client message in, dispatched by verb. Never throws. `data` is the frame as
 * uWS gives it (only valid during the call: it is measured and checked first, and decoded only
 * when its text is needed, never for an EVENT the address's bucket drops); the size limit is in
 * bytes of the frame, whatever the characters.
 */
export function ingest(ctx: RelayContext, conn: Connection, data: ArrayBuffer | string): void {
  if (!conn.bucket.take()) {
    ctx.metrics.tallies.messages.inc('rate-limited');
    // One NOTICE per run of refused messages (a flood is not answered message by message), and
    // a connection that sends a further burst's worth without slowing down is closed: refusing
    // costs this thread too, and honest clients' writes wait behind it.
    if (conn.overLimit++ === 0) {
      send(conn, encodeNotice(reason('rate-limited', `slow down: at most ${ctx.config.MAX_MESSAGES_PER_SECOND} messages per second`)));
    } else if (conn.overLimit === ctx.config.MAX_MESSAGES_PER_SECOND * 2 + 1) {
      closeFlooding(ctx, conn, 'rate-limited: too many messages, slow down');
    }
    return;
  }
  conn.overLimit = 0;
  const bytes = typeof data === 'string' ? Buffer.byteLength(data, 'utf8') : data.byteLength;
  if (bytes > ctx.config.MAX_MESSAGE_LENGTH) {
    ctx.metrics.tallies.messages.inc('too-large');
    send(conn, encodeNotice(reason('invalid', `message is larger than ${ctx.config.MAX_MESSAGE_LENGTH} bytes`)));
    return;
  }
  if (typeof data !== 'string' && !isUtf8(data)) {
    ctx.metrics.tallies.messages.inc('bad-utf8');
    send(conn, encodeNotice(reason('invalid', 'message is not valid UTF-8 text')));
    return;
  }
  // The address's EVENT bucket before anything is parsed: a flood from one address costs this
  // thread a look at the frame's first bytes and, within its answers, an answer per message.
  const limiter = ctx.rateLimiter?.eventsPerIp && isEventFrame(data) ? ctx.rateLimiter : undefined;
  const byAddress = limiter?.eventFromAddress(conn.ip);
  if (byAddress === undefined) {
    if (limiter) conn.addressRefused = 0;
    offer(ctx, conn, textOf(data));
  } else if (typeof byAddress === 'string') {
    refuseUnparsed(ctx, conn, data, byAddress);
  } else {
    // A burst beyond this replica's share waits for Redis's answer, and is still decided before it
    // is parsed (the frame is only valid during this call: its text is kept for then). Such a
    // refusal is always answered: it is a client's burst, not a flood the relay already refuses.
    const text = textOf(data);
    const decided = byAddress.then((why) => {
      if (why !== undefined) return refuseUnparsed(ctx, conn, text, why, true);
      conn.addressRefused = 0;
      offer(ctx, conn, text);
    });
    guard(ctx, decided, () => send(conn, encodeNotice(reason('error', 'could not process the message, try again'))));
  }
}

/**
 * The frame handled now or in a later turn (turns.ts), in its connection's order; refused when the
 * waiting messages' bounds are full (an EVENT's refusal is answered as the address bucket's are).
 */
function offer(ctx: RelayContext, conn: Connection, text: string): void {
  if (turnsOf(ctx).offer(conn, text)) return;
  ctx.metrics.tallies.messages.inc('queue-full');
  const why = reason('rate-limited', 'too many messages waiting on this relay, slow down');
  if (EVENT_FRAME.test(text)) refuseUnparsed(ctx, conn, text, why, false, false);
  else send(conn, encodeNotice(why));
}

/** The frame parsed (valid UTF-8, past the address's bucket) and handled by its verb. */
function dispatch(ctx: RelayContext, conn: Connection, text: string): void {
  const msg = parseClientMessage(text, ctx.limits);
  ctx.metrics.tallies.messages.inc(msg.type);
  switch (msg.type) {
    case 'EVENT':
      guard(ctx, handleEvent(ctx, conn, msg.event), () =>
        send(conn, encodeOk(msg.event.id, false, reason('error', 'could not process the event, try again'))),
      );
      return;
    case 'REQ':
    case 'COUNT': {
      const nul = nulTagValue(msg.filters);
      if (nul !== undefined) {
        send(
          conn,
          encodeClosed(msg.subId, reason('unsupported', `filter "${nul}" has a value containing U+0000, which this relay does not index`)),
        );
        return;
      }
      // The per-address REQ/COUNT bucket first; a refused REQ also ends the subscription it would replace.
      limitRead(
        ctx,
        conn,
        msg.subId,
        () => {
          const run = msg.type === 'REQ' ? handleReq(ctx, conn, msg.subId, msg.filters) : handleCount(ctx, conn, msg.subId, msg.filters);
          guard(ctx, run, () => send(conn, encodeClosed(msg.subId, reason('error', 'could not process the request, try again'))));
        },
        () => {
          const old = msg.type === 'REQ' ? conn.subs.get(msg.subId) : undefined;
          if (old) closeSub(ctx, old);
        },
      );
      return;
    }
    case 'CLOSE':
      // In order behind a REQ whose rate-limit decision is still waiting for Redis.
      limitRead(ctx, conn, undefined, () => {
        const sub = conn.subs.get(msg.subId);
        if (sub) closeSub(ctx, sub);
      });
      return;
    case 'AUTH':
      guard(ctx, handleAuth(ctx, conn, msg.event), () =>
        send(conn, encodeOk(msg.event.id, false, reason('error', 'could not process the AUTH event, try again'))),
      );
      return;
    case 'EVENT_INVALID':
    case 'AUTH_INVALID':
      ctx.metrics.tallies.events.inc('refused', 'invalid');
      send(conn, msg.id ? encodeOk(msg.id, false, msg.reason) : encodeNotice(msg.reason));
      return;
    case 'SUB_INVALID':
      send(conn, `["CLOSED",${JSON.stringify(msg.subId)},${JSON.stringify(msg.reason)}]`);
      return;
    case 'NOTICE':
      send(conn, encodeNotice(msg.reason));
      return;
  }
}

/**
 * A handler's rejection must not escape: Node ends the process on an unhandled rejection. It is
 * logged and the client answered (OK false / CLOSED with `error:`).
 */
function guard(ctx: RelayContext, p: Promise<void>, answer: () => void): void {
  p.catch((err: unknown) => {
    ctx.log.error({ err }, 'message handler failed');
    try {
      answer();
    } catch {
      /* the connection has gone */
    }
  });
}

/** Tag values with NUL are never indexed (Postgres text cannot hold it): such a filter is refused up front. */
function nulTagValue(filters: Filter[]): string | undefined {
  for (const f of filters) {
    for (const key in f) {
      if (key.charCodeAt(0) !== 35) continue;
      const values = f[key as `#${string}`];
      if (values?.some((v) => v.includes('\u0000'))) return key;
    }
  }
  return undefined;
}

/** A frame's text; `data` is valid UTF-8 (checked in `ingest`). */
function textOf(data: ArrayBuffer | string): string {
  return typeof data === 'string' ? data : utf8.decode(data);
}

/**
 * The frame is an EVENT (EVENT_FRAME), told from its first bytes without decoding it. A frame whose
 * first characters are not all ASCII (a byte-order mark, a Unicode space) is decoded and its text
 * tested, so the answer is EVENT_FRAME's in every case.
 */
function isEventFrame(data: ArrayBuffer | string): boolean {
  if (typeof data === 'string') return EVENT_FRAME.test(data);
  return eventFrameInAscii(new Uint8Array(data)) ?? EVENT_FRAME.test(textOf(data));
}

/** EVENT_FRAME read on the bytes; undefined where a non-ASCII byte is in the way (the text decides). */
function eventFrameInAscii(bytes: Uint8Array): boolean | undefined {
  let i = asciiSpaces(bytes, 0);
  if (i < 0) return undefined;
  if (bytes[i] !== 0x5b) return false; // [
  i = asciiSpaces(bytes, i + 1);
  if (i < 0) return undefined;
  for (let k = 0; k < EVENT_VERB.length; k++) if (bytes[i + k] !== EVENT_VERB[k]) return false;
  i = asciiSpaces(bytes, i + EVENT_VERB.length);
  if (i < 0) return undefined;
  return bytes[i] === 0x2c; // ,
}

/** The index past the ASCII whitespace (what `\s` matches in ASCII) from `i`, or -1 at a non-ASCII byte. */
function asciiSpaces(bytes: Uint8Array, i: number): number {
  for (; i < bytes.length; i++) {
    const b = bytes[i];
    if (b >= 0x80) return -1;
    if (b !== 0x20 && (b < 0x09 || b > 0x0d)) return i;
  }
  return i;
}

/** Closed after what was queued for it (a NOTICE, OKs) has been written: refusing a flood costs too. */
function closeFlooding(ctx: RelayContext, conn: Connection, why: string): void {
  ctx.metrics.tallies.messages.inc('flood-closed');
  setImmediate(() => !conn.closed && conn.ws?.end(1008, why));
}

/**
 * An EVENT refused by its address's bucket, from the frame's text alone: OK false with the
 * frame's id (a NOTICE when it has none), within the connection's answers for such refusals
 * (or `always`); past them, dropped unanswered. A connection that sends a burst's worth in a row
 * without heeding the `retry in` is closed.
 */
function refuseUnparsed(
  ctx: RelayContext,
  conn: Connection,
  data: ArrayBuffer | string,
  why: string,
  always = false,
  byAddress = true,
): void {
  const answer = always || conn.refusalAnswers.take();
  ctx.metrics.tallies.events.inc(answer ? 'refused' : 'dropped', 'rate-limited');
  if (answer) {
    const id = RAW_ID.exec(textOf(data))?.[1];
    send(conn, id ? encodeOk(id, false, why) : encodeNotice(why));
  }
  if (byAddress) countAddressRefusal(ctx, conn);
}

/** One more EVENT refused in a row by the address's bucket. */
function countAddressRefusal(ctx: RelayContext, conn: Connection): void {
  if (++conn.addressRefused === ctx.config.RATE_EVENTS_BURST_PER_IP + 1) {
    send(conn, encodeNotice(reason('rate-limited', 'too many EVENTs from this address, slow down')));
    closeFlooding(ctx, conn, 'rate-limited: too many EVENTs from this address');
  }
}

function refuse(ctx: RelayContext, conn: Connection, id: string, why: string): void {
  ctx.metrics.tallies.events.inc('refused', why.slice(0, why.indexOf(':')));
  // auth-required: the client also gets a fresh AUTH challenge to act on (NIP-42).
  sendRefusal(conn, encodeOk(id, false, why), why);
}

/**
 * EVENT: the cheap checks first (the address's bucket, taken in `ingest` before parsing; whether
 * the gate would refuse it, and then the address's unpaid budget; the id), then the signature, the author's bucket, policies, gate,
 * store (group commit), OK, fan-out.
 */
async function handleEvent(ctx: RelayContext, conn: Connection, ev: NostrEvent): Promise<void> {
  const json = eventToJson(ev);
  const refusable = gateWouldRefuse(ctx, conn, ev, json);
  if (refusable) {
    // A decision known at once is not awaited: each await is a turn of the microtask queue per event.
    const overBudget = ctx.rateLimiter?.unpaidFromAddress(conn.ip);
    const unpaid = overBudget instanceof Promise ? await overBudget : overBudget;
    // Past the budget the id is not even hashed: the refusal names the id the event claims, as
    // the address bucket's does (the look above is signature-blind anyway, a right id proves nothing).
    if (unpaid) return refuse(ctx, conn, ev.id, unpaid);
  }
  if (!hasValidId(ev)) return refuse(ctx, conn, ev.id, reason('invalid', 'event id does not match the event'));
  // An event the gate would refuse waits for its signature check behind every other.
  if (!(await ctx.verifier.verify(ev, refusable))) return refuse(ctx, conn, ev.id, reason('invalid', 'signature is invalid'));
  // The author's bucket after the signature: nobody can spend another key's.
  const fromPubkey = ctx.rateLimiter?.eventFromPubkey(ev.pubkey);
  const byPubkey = fromPubkey instanceof Promise ? await fromPubkey : fromPubkey;
  if (byPubkey) return refuse(ctx, conn, ev.id, byPubkey);
  const why = runPolicies(ctx.policies, ev, { now: nowSeconds(), authed: conn.authed, ip: conn.ip });
  if (why !== undefined) return refuse(ctx, conn, ev.id, why);

  let charge: number | undefined;
  let settle: ((committed: boolean) => void) | undefined;
  if (ctx.gate) {
    const decision = ctx.gate.check(ev, json, conn.ip);
    if (decision.action === 'refuse') {
      // An ephemeral event is only worth something now: there is nothing to hold for later.
      if (kindClass(ev.kind) !== 'ephemeral') ctx.gate.hold(ev, json, networkKey(conn.ip), decision.eventMsat);
      return refuse(ctx, conn, ev.id, decision.reason);
    }
    if (decision.action === 'debit') ({ amountMsat: charge, settle } = decision);
    else settle = decision.settle;
  }
  if (kindClass(ev.kind) === 'ephemeral' && charge === undefined) {
    settle?.(true);
    ctx.metrics.tallies.events.inc('accepted', 'ephemeral');
    send(conn, encodeOk(ev.id, true, ''));
    publish(ctx, ev, json);
    return;
  }
  let outcome: WriteOutcome;
  try {
    outcome = await ctx.writer.write(ev, json, charge);
  } catch {
    settle?.(false);
    return refuse(ctx, conn, ev.id, reason('error', 'could not store the event, try again'));
  }
  settle?.(outcome.status === 'stored');
  if (outcome.status === 'stored') {
    ctx.metrics.tallies.events.inc('accepted', '');
    send(conn, encodeOk(ev.id, true, ''));
    publish(ctx, ev, json);
  } else if (outcome.status === 'unpaid') {
    // Another replica spent the balance since this one's cache looked: this event alone fails.
    const gate = ctx.gate!;
    if (kindClass(ev.kind) !== 'ephemeral') gate.hold(ev, json, networkKey(conn.ip));
    refuse(ctx, conn, ev.id, gate.unpaidReason(ev, json, outcome.balanceMsat));
  } else if (outcome.status === 'duplicate') {
    ctx.metrics.tallies.events.inc('duplicate', 'duplicate');
    send(conn, encodeOk(ev.id, true, reason('duplicate', outcome.message)));
  } else {
    refuse(ctx, conn, ev.id, reason(outcome.status === 'deleted' ? 'blocked' : 'duplicate', outcome.message));
  }
}

/**
 * Whether the gate would refuse the event, from its cache, before any signature work. Such an
 * event is verified (after every other waiting event), and then held, only within its address's
 * budget of unpaid events: past it, the refusal is `rate-limited:` and costs no verification, so a
 * free flood costs the workers and the held-event writes no more than that budget. A reservation
 * the look made is given back at once: the gate decides again once the signature is known, so a
 * forged event reserves nothing.
 */
function gateWouldRefuse(ctx: RelayContext, conn: Connection, ev: NostrEvent, json: string): boolean {
  if (!ctx.gate) return false;
  const look = ctx.gate.check(ev, json, conn.ip);
  if (look.action === 'refuse') return true;
  look.settle?.(false);
  return false;
}

/** Local subscribers now, other replicas through the bus. */
function publish(ctx: RelayContext, ev: NostrEvent, json: string): void {
  if (ctx.recentEvents.add(ev.id)) ctx.metrics.delivered.inc(deliver(ctx.index, ev, json));
  ctx.bus.publish(EVENTS_CHANNEL, encodeEventMessage(ctx.instanceId, json));
}

/** NIP-42: a connection may authenticate several pubkeys. */
async function handleAuth(ctx: RelayContext, conn: Connection, ev: NostrEvent): Promise<void> {
  if (!hasValidId(ev)) return void send(conn, encodeOk(ev.id, false, reason('invalid', 'event id does not match the event')));
  if (!(await ctx.verifier.verify(ev))) return void send(conn, encodeOk(ev.id, false, reason('invalid', 'signature is invalid')));
  // A configured RELAY_URL is the only name accepted; without one, also the URL the client
  // reached us by (its Host header, as khatru does), so ws://127.0.0.1:7777 works like localhost.
  const relayUrl = !ctx.config.RELAY_URL && conn.url ? [ctx.relayUrl, conn.url] : ctx.relayUrl;
  const why = checkAuthEvent(ev, { challenge: conn.challenge, relayUrl, now: nowSeconds(), maxSkewSeconds: 600 });
  if (why) return void send(conn, encodeOk(ev.id, false, why));
  conn.authed.add(ev.pubkey);
  send(conn, encodeOk(ev.id, true, ''));
}
