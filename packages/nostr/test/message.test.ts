import { describe, expect, it } from 'vitest';
import {
  encodeAuth,
  encodeClosed,
  encodeCount,
  encodeEose,
  encodeEvent,
  encodeNotice,
  encodeOk,
  eventToJson,
  parseClientMessage,
} from '../src/index.ts';
import { fake, HEX64_A, HEX64_B, LIMITS, signed } from './helpers.ts';

const parse = (x: unknown) => parseClientMessage(typeof x === 'string' ? x : JSON.stringify(x), LIMITS);

describe('parseClientMessage: framing', () => {
  it('non-JSON, non-arrays and empty arrays are NOTICE', () => {
    expect(parse('')).toEqual({ type: 'NOTICE', reason: 'invalid: message is not valid JSON' });
    expect(parse('["EVENT",')).toEqual({ type: 'NOTICE', reason: 'invalid: message is not valid JSON' });
    expect(parse('{"a":1}')).toEqual({ type: 'NOTICE', reason: 'invalid: message must be a non-empty JSON array' });
    expect(parse('"EVENT"')).toEqual({ type: 'NOTICE', reason: 'invalid: message must be a non-empty JSON array' });
    expect(parse('null')).toEqual({ type: 'NOTICE', reason: 'invalid: message must be a non-empty JSON array' });
    expect(parse('[]')).toEqual({ type: 'NOTICE', reason: 'invalid: message must be a non-empty JSON array' });
  });

  it('unknown or non-string verbs are NOTICE', () => {
    expect(parse(['PING'])).toEqual({ type: 'NOTICE', reason: 'unsupported: unknown message type "PING"' });
    expect(parse(['event', {}])).toEqual({ type: 'NOTICE', reason: 'unsupported: unknown message type "event"' });
    expect(parse(['X'.repeat(100)])).toEqual({ type: 'NOTICE', reason: `unsupported: unknown message type "${'X'.repeat(32)}"` });
    expect(parse([1, 2])).toEqual({ type: 'NOTICE', reason: 'invalid: message type must be a string' });
    expect(parse([null])).toEqual({ type: 'NOTICE', reason: 'invalid: message type must be a string' });
  });

  it('survives non-string input at runtime', () => {
    expect(parseClientMessage(undefined as unknown as string, LIMITS)).toEqual({ type: 'NOTICE', reason: 'invalid: message must be text' });
    expect(parseClientMessage({} as unknown as string, LIMITS).type).toBe('NOTICE');
  });

  it('survives deeply nested input', () => {
    const deep = '['.repeat(100_000) + ']'.repeat(100_000);
    expect(parseClientMessage(deep, LIMITS).type).toBe('NOTICE');
    const deepReq = `["REQ","s",${'{"a":'.repeat(50_000)}1${'}'.repeat(50_000)}]`;
    expect(parseClientMessage(deepReq, LIMITS).type).toMatch(/^(NOTICE|SUB_INVALID)$/);
  });
});

describe('parseClientMessage: EVENT / AUTH', () => {
  const ev = signed({ content: 'hi 😀', tags: [['t', 'x']] });

  it('parses a valid EVENT', () => {
    expect(parse(['EVENT', ev])).toEqual({ type: 'EVENT', event: ev });
  });

  it('parses a valid AUTH', () => {
    const auth = signed({
      kind: 22242,
      tags: [
        ['relay', 'wss://r'],
        ['challenge', 'c'],
      ],
      content: '',
    });
    expect(parse(['AUTH', auth])).toEqual({ type: 'AUTH', event: auth });
  });

  it('malformed event with a readable id gives EVENT_INVALID with id', () => {
    expect(parse(['EVENT', { ...ev, kind: -1 }])).toEqual({
      type: 'EVENT_INVALID',
      id: ev.id,
      reason: 'invalid: event kind must be an integer between 0 and 65535',
    });
    expect(parse(['EVENT', { ...ev, sig: 'x' }])).toEqual({
      type: 'EVENT_INVALID',
      id: ev.id,
      reason: 'invalid: event sig must be 128 lowercase hex characters',
    });
    expect(parse(['EVENT', ev, 'extra'])).toEqual({
      type: 'EVENT_INVALID',
      id: ev.id,
      reason: 'invalid: EVENT message must be ["EVENT", <event>]',
    });
  });

  it('malformed event without an id gives EVENT_INVALID without id', () => {
    expect(parse(['EVENT'])).toEqual({ type: 'EVENT_INVALID', reason: 'invalid: EVENT message must be ["EVENT", <event>]' });
    expect(parse(['EVENT', 'x'])).toEqual({ type: 'EVENT_INVALID', reason: 'invalid: event must be a JSON object' });
    expect(parse(['EVENT', { ...ev, id: 'nope' }])).toEqual({
      type: 'EVENT_INVALID',
      reason: 'invalid: event id must be 64 lowercase hex characters',
    });
    expect(parse(['EVENT', 'sub', ev])).toEqual({ type: 'EVENT_INVALID', reason: 'invalid: EVENT message must be ["EVENT", <event>]' });
  });

  it('AUTH failures are AUTH_INVALID', () => {
    expect(parse(['AUTH', 'challenge-string'])).toEqual({ type: 'AUTH_INVALID', reason: 'invalid: event must be a JSON object' });
    expect(parse(['AUTH'])).toEqual({ type: 'AUTH_INVALID', reason: 'invalid: AUTH message must be ["AUTH", <event>]' });
    expect(parse(['AUTH', { ...ev, content: 1 }])).toEqual({
      type: 'AUTH_INVALID',
      id: ev.id,
      reason: 'invalid: event content must be a string',
    });
  });

  it('shape limits apply to EVENT', () => {
    expect(parse(['EVENT', fake({ content: 'x'.repeat(1001) })])).toEqual({
      type: 'EVENT_INVALID',
      id: HEX64_A,
      reason: 'invalid: content is longer than 1000 characters',
    });
  });
});

describe('parseClientMessage: REQ / COUNT / CLOSE', () => {
  it.each(['REQ', 'COUNT'] as const)('%s with filters', (verb) => {
    expect(parse([verb, 'sub1', { kinds: [1], limit: 9999 }, { authors: [HEX64_B], '#t': ['x'] }])).toEqual({
      type: verb,
      subId: 'sub1',
      filters: [
        { kinds: [1], limit: 500 },
        { authors: [HEX64_B], '#t': ['x'], limit: 100 },
      ],
    });
  });

  it.each(['REQ', 'COUNT'] as const)('%s filter problems are SUB_INVALID', (verb) => {
    expect(parse([verb, 's'])).toEqual({ type: 'SUB_INVALID', verb, subId: 's', reason: `invalid: ${verb} needs at least one filter` });
    expect(parse([verb, 's', {}, {}, {}, {}, {}, {}])).toEqual({
      type: 'SUB_INVALID',
      verb,
      subId: 's',
      reason: 'invalid: too many filters (max 5)',
    });
    expect(parse([verb, 's', { search: 'x' }])).toEqual({
      type: 'SUB_INVALID',
      verb,
      subId: 's',
      reason: 'unsupported: filter contains unknown elements',
    });
    expect(parse([verb, 's', {}, { ids: ['abc'] }])).toEqual({
      type: 'SUB_INVALID',
      verb,
      subId: 's',
      reason: 'invalid: filter "ids" values must be 64-character lowercase hex',
    });
    expect(parse([verb, 's', 'notafilter'])).toEqual({
      type: 'SUB_INVALID',
      verb,
      subId: 's',
      reason: 'invalid: filter must be a JSON object',
    });
  });

  it.each(['REQ', 'COUNT', 'CLOSE'])('%s with a bad subscription id is NOTICE', (verb) => {
    expect(parse([verb])).toEqual({ type: 'NOTICE', reason: 'invalid: subscription id must be a non-empty string' });
    expect(parse([verb, '', {}])).toEqual({ type: 'NOTICE', reason: 'invalid: subscription id must be a non-empty string' });
    expect(parse([verb, 5, {}])).toEqual({ type: 'NOTICE', reason: 'invalid: subscription id must be a non-empty string' });
    expect(parse([verb, 's'.repeat(65), {}])).toEqual({ type: 'NOTICE', reason: 'invalid: subscription id longer than 64 characters' });
  });

  it('subscription id length counts characters (64 is the max)', () => {
    expect(parse(['REQ', 's'.repeat(64), {}])).toMatchObject({ type: 'REQ', subId: 's'.repeat(64) });
    expect(parse(['REQ', '😀'.repeat(64), {}])).toMatchObject({ type: 'REQ', subId: '😀'.repeat(64) });
  });

  it('CLOSE', () => {
    expect(parse(['CLOSE', 'sub1'])).toEqual({ type: 'CLOSE', subId: 'sub1' });
    expect(parse(['CLOSE', 'sub1', 'x'])).toEqual({
      type: 'NOTICE',
      reason: 'invalid: CLOSE message must be ["CLOSE", <subscription id>]',
    });
  });
});

describe('encoders', () => {
  const tricky = 'a"b\\c\n\u0000😀\u2028\ud800';

  it('OK', () => {
    expect(encodeOk(HEX64_A, true, '')).toBe(`["OK","${HEX64_A}",true,""]`);
    expect(JSON.parse(encodeOk(HEX64_A, false, `invalid: ${tricky}`))).toEqual(['OK', HEX64_A, false, `invalid: ${tricky}`]);
  });

  it('EVENT embeds the stored JSON verbatim', () => {
    const ev = signed({ content: tricky });
    const json = eventToJson(ev);
    const frame = encodeEvent(tricky, json);
    expect(frame).toBe(`["EVENT",${JSON.stringify(tricky)},${json}]`);
    expect(JSON.parse(frame)).toEqual(['EVENT', tricky, ev]);
  });

  it('EOSE / CLOSED / NOTICE / AUTH', () => {
    expect(encodeEose('s')).toBe('["EOSE","s"]');
    expect(JSON.parse(encodeEose(tricky))).toEqual(['EOSE', tricky]);
    expect(encodeClosed('s', 'error: x')).toBe('["CLOSED","s","error: x"]');
    expect(JSON.parse(encodeClosed(tricky, tricky))).toEqual(['CLOSED', tricky, tricky]);
    expect(encodeNotice('hi')).toBe('["NOTICE","hi"]');
    expect(JSON.parse(encodeNotice(tricky))).toEqual(['NOTICE', tricky]);
    expect(encodeAuth('chal')).toBe('["AUTH","chal"]');
    expect(JSON.parse(encodeAuth(tricky))).toEqual(['AUTH', tricky]);
  });

  it('COUNT', () => {
    expect(encodeCount('s', 5)).toBe('["COUNT","s",{"count":5}]');
    expect(JSON.parse(encodeCount(tricky, 0))).toEqual(['COUNT', tricky, { count: 0 }]);
    expect(JSON.parse(encodeCount('s', 93412452, true))).toEqual(['COUNT', 's', { count: 93412452, approximate: true }]);
    expect(JSON.parse(encodeCount('s', Number.NaN))).toEqual(['COUNT', 's', { count: 0 }]);
  });

  it('encoded frames parse back to the same strings, lone surrogates included', () => {
    const lone = '\udc00x\ud83d';
    expect(JSON.parse(encodeNotice(lone))[1]).toBe(lone);
  });
});
