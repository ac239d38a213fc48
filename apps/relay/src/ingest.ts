import {
  checkAuthEvent,
  encodeNotice,
  encodeOk,
  eventToJson,
  hasValidId,
  kindClass,
  parseClientMessage,
  reason,
  type NostrEvent,
} from '@paidrelay/nostr';
import { send, type Connection } from './connection.ts';
import { encodeEventMessage, EVENTS_CHANNEL } from '@paidrelay/bus';
import type { RelayContext } from './context.ts';
import { deliver } from './fanout.ts';
import { runPolicies } from './policy.ts';
import { closeSub, handleCount, handleReq } from './query.ts';

const now = () => Math.floor(Date.now() / 1000);

/** First stage: one client message in, dispatched by verb. Never throws. */
export function ingest(ctx: RelayContext, conn: Connection, text: string): void {
  if (!conn.bucket.take()) {
    ctx.metrics.messages.inc({ type: 'rate-limited' });
    send(conn, encodeNotice(reason('rate-limited', `slow down: at most ${ctx.config.MAX_MESSAGES_PER_SECOND} messages per second`)));
    return;
  }
  if (text.length > ctx.config.MAX_MESSAGE_LENGTH && Buffer.byteLength(text) > ctx.config.MAX_MESSAGE_LENGTH) {
    ctx.metrics.messages.inc({ type: 'too-large' });
    send(conn, encodeNotice(reason('invalid', `message is larger than ${ctx.config.MAX_MESSAGE_LENGTH} bytes`)));
    return;
  }
  const msg = parseClientMessage(text, ctx.limits);
  ctx.metrics.messages.inc({ type: msg.type });
  switch (msg.type) {
    case 'EVENT':
      void handleEvent(ctx, conn, msg.event);
      return;
    case 'REQ':
      void handleReq(ctx, conn, msg.subId, msg.filters);
      return;
    case 'COUNT':
      void handleCount(ctx, conn, msg.subId, msg.filters);
      return;
    case 'CLOSE': {
      const sub = conn.subs.get(msg.subId);
      if (sub) closeSub(ctx, sub);
      return;
    }
    case 'AUTH':
      void handleAuth(ctx, conn, msg.event);
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

function refuse(ctx: RelayContext, conn: Connection, id: string, why: string): void {
  ctx.metrics.events.inc({ result: 'refused', reason: why.slice(0, why.indexOf(':')) });
  send(conn, encodeOk(id, false, why));
}

/** EVENT: id, signature, policies, store (group commit), OK, fan-out. */
async function handleEvent(ctx: RelayContext, conn: Connection, ev: NostrEvent): Promise<void> {
  if (!hasValidId(ev)) return refuse(ctx, conn, ev.id, reason('invalid', 'event id does not match the event'));
  if (!(await ctx.verifier.verify(ev))) return refuse(ctx, conn, ev.id, reason('invalid', 'signature is invalid'));
  const why = runPolicies(ctx.policies, ev, { now: now(), authed: conn.authed, ip: conn.ip });
  if (why !== undefined) return refuse(ctx, conn, ev.id, why);

  const json = eventToJson(ev);
  let charge: number | undefined;
  if (ctx.gate) {
    const decision = ctx.gate.check(ev, json);
    if (decision.action === 'refuse') {
      // An ephemeral event is only worth something now: there is nothing to hold for later.
      if (kindClass(ev.kind) !== 'ephemeral') await ctx.gate.hold(ev, json, decision.amountMsat);
      return refuse(ctx, conn, ev.id, decision.reason);
    }
    if (decision.action === 'debit') charge = decision.amountMsat;
  }
  if (kindClass(ev.kind) === 'ephemeral' && charge === undefined) {
    ctx.metrics.events.inc({ result: 'accepted', reason: 'ephemeral' });
    send(conn, encodeOk(ev.id, true, ''));
    publish(ctx, ev, json);
    return;
  }
  let outcome;
  try {
    outcome = await ctx.writer.write(ev, json, charge);
  } catch {
    return refuse(ctx, conn, ev.id, reason('error', 'could not store the event, try again'));
  }
  if (outcome.status === 'stored') {
    ctx.metrics.events.inc({ result: 'accepted', reason: '' });
    send(conn, encodeOk(ev.id, true, ''));
    publish(ctx, ev, json);
  } else if (outcome.status === 'unpaid') {
    refuse(ctx, conn, ev.id, outcome.message);
  } else if (outcome.status === 'duplicate') {
    ctx.metrics.events.inc({ result: 'duplicate', reason: 'duplicate' });
    send(conn, encodeOk(ev.id, true, reason('duplicate', outcome.message)));
  } else {
    refuse(ctx, conn, ev.id, reason(outcome.status === 'deleted' ? 'blocked' : 'duplicate', outcome.message));
  }
}

/** Local subscribers now, other replicas through the bus. */
function publish(ctx: RelayContext, ev: NostrEvent, json: string): void {
  ctx.metrics.delivered.inc(deliver(ctx.index, ev, json));
  ctx.bus.publish(EVENTS_CHANNEL, encodeEventMessage(ctx.instanceId, json));
}

/** NIP-42: a connection may authenticate several pubkeys. */
async function handleAuth(ctx: RelayContext, conn: Connection, ev: NostrEvent): Promise<void> {
  if (!hasValidId(ev)) return void send(conn, encodeOk(ev.id, false, reason('invalid', 'event id does not match the event')));
  if (!(await ctx.verifier.verify(ev))) return void send(conn, encodeOk(ev.id, false, reason('invalid', 'signature is invalid')));
  const why = checkAuthEvent(ev, { challenge: conn.challenge, relayUrl: ctx.relayUrl, now: now(), maxSkewSeconds: 600 });
  if (why) return void send(conn, encodeOk(ev.id, false, why));
  conn.authed.add(ev.pubkey);
  send(conn, encodeOk(ev.id, true, ''));
}
