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
import { limitRead, type Verdict } from './rate-limit.ts';

// fatal: invalid UTF-8 (possible in a binary frame; uWS closes text frames that are not UTF-8)
// is refused with a NOTICE instead of being turned into U+FFFD and parsed.
const utf8 = new TextDecoder('utf-8', { fatal: true });
/** A frame that is an EVENT, told from its first characters (whitespace allowed, as JSON allows it). */
const EVENT_FRAME = /^\s*\[\s*"EVENT"\s*,/;
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
 * First stage: one client message in, dispatched by verb. Never throws. `data` is the frame as
 * uWS gives it (only valid during the call, so it is measured and decoded before anything
 * else); the size limit is in bytes of the frame, whatever the characters.
 */
export function ingest(ctx: RelayContext, conn: Connection, data: ArrayBuffer | string): void {
  if (!conn.bucket.take()) {
    ctx.metrics.messages.inc({ type: 'rate-limited' });
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
    ctx.metrics.messages.inc({ type: 'too-large' });
    send(conn, encodeNotice(reason('invalid', `message is larger than ${ctx.config.MAX_MESSAGE_LENGTH} bytes`)));
    return;
  }
  let text: string;
  try {
    text = typeof data === 'string' ? data : utf8.decode(data);
  } catch {
    ctx.metrics.messages.inc({ type: 'bad-utf8' });
    send(conn, encodeNotice(reason('invalid', 'message is not valid UTF-8 text')));
    return;
  }
  // The address's EVENT bucket before anything is parsed: a flood from one address costs this
  // thread a look at the frame's text and an answer per message, nothing more.
  const limiter = ctx.rateLimiter?.eventsPerIp && EVENT_FRAME.test(text) ? ctx.rateLimiter : undefined;
  const byAddress = limiter?.eventFromAddress(conn.ip);
  if (typeof byAddress === 'string') {
    refuseUnparsed(ctx, conn, text, byAddress);
    return;
  }
  if (limiter && byAddress === undefined) conn.addressRefused = 0;
  const msg = parseClientMessage(text, ctx.limits);
  ctx.metrics.messages.inc({ type: msg.type });
  switch (msg.type) {
    case 'EVENT':
      guard(ctx, handleEvent(ctx, conn, msg.event, byAddress), () =>
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
      ctx.metrics.events.inc({ result: 'refused', reason: 'invalid' });
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

/** Closed after what was queued for it (a NOTICE, OKs) has been written: refusing a flood costs too. */
function closeFlooding(ctx: RelayContext, conn: Connection, why: string): void {
  ctx.metrics.messages.inc({ type: 'flood-closed' });
  setImmediate(() => !conn.closed && conn.ws?.end(1008, why));
}

/**
 * An EVENT refused by its address's bucket, from the frame's text alone: OK false with the
 * frame's id (a NOTICE when it has none), within the connection's answers for such refusals;
 * past them, dropped unanswered. A connection that sends a burst's worth in a row without
 * heeding the `retry in` is closed.
 */
function refuseUnparsed(ctx: RelayContext, conn: Connection, text: string, why: string): void {
  const answer = conn.refusalAnswers.take();
  ctx.metrics.events.inc({ result: answer ? 'refused' : 'dropped', reason: 'rate-limited' });
  if (answer) {
    const id = RAW_ID.exec(text)?.[1];
    send(conn, id ? encodeOk(id, false, why) : encodeNotice(why));
  }
  countAddressRefusal(ctx, conn);
}

/** One more EVENT refused in a row by the address's bucket (decided at once or after waiting for Redis). */
function countAddressRefusal(ctx: RelayContext, conn: Connection): void {
  if (++conn.addressRefused === ctx.config.RATE_EVENTS_BURST_PER_IP + 1) {
    send(conn, encodeNotice(reason('rate-limited', 'too many EVENTs from this address, slow down')));
    closeFlooding(ctx, conn, 'rate-limited: too many EVENTs from this address');
  }
}

function refuse(ctx: RelayContext, conn: Connection, id: string, why: string): void {
  ctx.metrics.events.inc({ result: 'refused', reason: why.slice(0, why.indexOf(':')) });
  // auth-required: the client also gets a fresh AUTH challenge to act on (NIP-42).
  sendRefusal(conn, encodeOk(id, false, why), why);
}

/**
 * EVENT: the cheap checks first (the address's bucket, taken in `ingest`; the id; whether the gate
 * would refuse it), then the signature, the author's bucket, policies, gate, store (group
 * commit), OK, fan-out.
 */
async function handleEvent(ctx: RelayContext, conn: Connection, ev: NostrEvent, byAddress?: Promise<Verdict>): Promise<void> {
  if (byAddress) {
    const why = await byAddress;
    if (why) {
      refuse(ctx, conn, ev.id, why);
      return countAddressRefusal(ctx, conn);
    }
    conn.addressRefused = 0;
  }
  if (!hasValidId(ev)) return refuse(ctx, conn, ev.id, reason('invalid', 'event id does not match the event'));
  const json = eventToJson(ev);
  // A decision known at once is not awaited: each await is a turn of the microtask queue per event.
  const overBudget = overUnpaidBudget(ctx, conn, ev, json);
  const unpaid = overBudget instanceof Promise ? await overBudget : overBudget;
  if (unpaid) return refuse(ctx, conn, ev.id, unpaid);
  if (!(await ctx.verifier.verify(ev))) return refuse(ctx, conn, ev.id, reason('invalid', 'signature is invalid'));
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
    ctx.metrics.events.inc({ result: 'accepted', reason: 'ephemeral' });
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
    ctx.metrics.events.inc({ result: 'accepted', reason: '' });
    send(conn, encodeOk(ev.id, true, ''));
    publish(ctx, ev, json);
  } else if (outcome.status === 'unpaid') {
    // Another replica spent the balance since this one's cache looked: this event alone fails.
    const gate = ctx.gate!;
    if (kindClass(ev.kind) !== 'ephemeral') gate.hold(ev, json, networkKey(conn.ip));
    refuse(ctx, conn, ev.id, gate.unpaidReason(ev, json, outcome.balanceMsat));
  } else if (outcome.status === 'duplicate') {
    ctx.metrics.events.inc({ result: 'duplicate', reason: 'duplicate' });
    send(conn, encodeOk(ev.id, true, reason('duplicate', outcome.message)));
  } else {
    refuse(ctx, conn, ev.id, reason(outcome.status === 'deleted' ? 'blocked' : 'duplicate', outcome.message));
  }
}

/**
 * An event the gate would refuse (from its cache, before any signature work) is verified, and
 * then held, only within its address's budget of unpaid events: past it, the refusal is
 * `rate-limited:` and costs no verification, so a free flood costs the workers and the held-event
 * writes no more than that budget. A reservation the look made is given back at once: the gate
 * decides again once the signature is known, so a forged event reserves nothing.
 */
function overUnpaidBudget(ctx: RelayContext, conn: Connection, ev: NostrEvent, json: string): Verdict | Promise<Verdict> {
  if (!ctx.gate) return undefined;
  const look = ctx.gate.check(ev, json, conn.ip);
  if (look.action !== 'refuse') {
    look.settle?.(false);
    return undefined;
  }
  return ctx.rateLimiter?.unpaidFromAddress(conn.ip);
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
