import { checkEventShape, type EventLimits, type NostrEvent } from './event.ts';
import { checkFilter, type Filter, type FilterLimits } from './filter.ts';
import { exceedsCodePoints, isHex64 } from './hex.ts';

export type ParseLimits = EventLimits & FilterLimits & { maxFilters: number; maxSubIdLength: number };

export type ClientMessage =
  | { type: 'EVENT'; event: NostrEvent }
  | { type: 'EVENT_INVALID'; id?: string; reason: string }
  | { type: 'REQ'; subId: string; filters: Filter[] }
  | { type: 'COUNT'; subId: string; filters: Filter[] }
  | { type: 'SUB_INVALID'; verb: 'REQ' | 'COUNT'; subId: string; reason: string }
  | { type: 'CLOSE'; subId: string }
  | { type: 'AUTH'; event: NostrEvent }
  | { type: 'AUTH_INVALID'; id?: string; reason: string }
  | { type: 'NOTICE'; reason: string };

function notice(reason: string): ClientMessage {
  return { type: 'NOTICE', reason };
}

function peekId(x: unknown): string | undefined {
  if (typeof x !== 'object' || x === null) return undefined;
  const id = (x as { id?: unknown }).id;
  return isHex64(id) ? id : undefined;
}

function eventMessage(msg: unknown[], verb: 'EVENT' | 'AUTH', limits: ParseLimits): ClientMessage {
  const invalid = verb === 'EVENT' ? 'EVENT_INVALID' : 'AUTH_INVALID';
  if (msg.length !== 2) {
    const id = msg.length > 2 ? peekId(msg[1]) : undefined;
    const reason = `invalid: ${verb} message must be ["${verb}", <event>]`;
    return id === undefined ? { type: invalid, reason } : { type: invalid, id, reason };
  }
  const r = checkEventShape(msg[1], limits);
  if (r.ok) return { type: verb, event: r.event };
  return r.id === undefined ? { type: invalid, reason: r.reason } : { type: invalid, id: r.id, reason: r.reason };
}

/** Returns a reason when `x` cannot be used as a subscription id, undefined when it can. */
export function subIdProblem(x: unknown, maxLength: number): string | undefined {
  if (typeof x !== 'string' || x.length === 0) return 'invalid: subscription id must be a non-empty string';
  if (exceedsCodePoints(x, maxLength)) return `invalid: subscription id longer than ${maxLength} characters`;
  return undefined;
}

function subscriptionMessage(msg: unknown[], verb: 'REQ' | 'COUNT', limits: ParseLimits): ClientMessage {
  const subId = msg[1];
  const problem = subIdProblem(subId, limits.maxSubIdLength);
  // Without a usable id there is nothing to address a CLOSED to.
  if (problem !== undefined) return notice(problem);
  const sid = subId as string;
  const n = msg.length - 2;
  if (n < 1) return { type: 'SUB_INVALID', verb, subId: sid, reason: `invalid: ${verb} needs at least one filter` };
  if (n > limits.maxFilters) {
    return { type: 'SUB_INVALID', verb, subId: sid, reason: `invalid: too many filters (max ${limits.maxFilters})` };
  }
  const filters: Filter[] = new Array(n);
  for (let i = 0; i < n; i++) {
    const r = checkFilter(msg[i + 2], limits);
    if (!r.ok) return { type: 'SUB_INVALID', verb, subId: sid, reason: r.reason };
    filters[i] = r.filter;
  }
  return { type: verb, subId: sid, filters };
}

function parse(text: string, limits: ParseLimits): ClientMessage {
  if (typeof text !== 'string') return notice('invalid: message must be text');
  let msg: unknown;
  try {
    msg = JSON.parse(text);
  } catch {
    return notice('invalid: message is not valid JSON');
  }
  if (!Array.isArray(msg) || msg.length === 0) return notice('invalid: message must be a non-empty JSON array');
  const verb: unknown = msg[0];
  switch (verb) {
    case 'EVENT':
    case 'AUTH':
      return eventMessage(msg, verb, limits);
    case 'REQ':
    case 'COUNT':
      return subscriptionMessage(msg, verb, limits);
    case 'CLOSE': {
      const problem = subIdProblem(msg[1], limits.maxSubIdLength);
      if (problem !== undefined) return notice(problem);
      if (msg.length !== 2) return notice('invalid: CLOSE message must be ["CLOSE", <subscription id>]');
      return { type: 'CLOSE', subId: msg[1] as string };
    }
  }
  if (typeof verb !== 'string') return notice('invalid: message type must be a string');
  return notice(`unsupported: unknown message type ${JSON.stringify(verb.slice(0, 32))}`);
}

/** Never throws: any input maps to exactly one ClientMessage variant. */
export function parseClientMessage(text: string, limits: ParseLimits): ClientMessage {
  try {
    return parse(text, limits);
  } catch {
    // Belt and braces for engine-level failures (e.g. pathological nesting).
    return notice('error: could not process message');
  }
}

// Encoders build the frame by concatenation so stored event JSON is embedded without re-parsing.

export function encodeOk(id: string, ok: boolean, message: string): string {
  return `["OK",${JSON.stringify(id)},${ok ? 'true' : 'false'},${JSON.stringify(message)}]`;
}

export function encodeEvent(subId: string, eventJson: string): string {
  return `["EVENT",${JSON.stringify(subId)},${eventJson}]`;
}

export function encodeEose(subId: string): string {
  return `["EOSE",${JSON.stringify(subId)}]`;
}

export function encodeClosed(subId: string, message: string): string {
  return `["CLOSED",${JSON.stringify(subId)},${JSON.stringify(message)}]`;
}

export function encodeNotice(message: string): string {
  return `["NOTICE",${JSON.stringify(message)}]`;
}

/** NIP-45 result; `approximate` is only emitted when given. A non-finite count is sent as 0. */
export function encodeCount(subId: string, count: number, approximate?: boolean): string {
  const n = Number.isFinite(count) ? count : 0;
  const extra = approximate === undefined ? '' : `,"approximate":${approximate ? 'true' : 'false'}`;
  return `["COUNT",${JSON.stringify(subId)},{"count":${JSON.stringify(n)}${extra}}]`;
}

export function encodeAuth(challenge: string): string {
  return `["AUTH",${JSON.stringify(challenge)}]`;
}

export { eventToJson } from './event.ts';
