import { getEventHash, serializeEvent as ntSerialize, verifyEvent } from 'nostr-tools';
import { describe, expect, it } from 'vitest';
import {
  addressOf,
  checkEventShape,
  computeEventId,
  dTag,
  eventToJson,
  hasValidId,
  serializeEvent,
  type NostrEvent,
} from '../src/index.ts';
import { fake, HEX128, HEX64_A, HEX64_B, LIMITS, PK, signed } from './helpers.ts';

// Published examples from NIP-13 and NIP-70. The NIP-13 one is a real mined event; the NIP-70 one
// is illustrative only (its id does not hash from its fields, nostr-tools agrees), so it must fail.
const NIP13_EXAMPLE: NostrEvent = {
  id: '000006d8c378af1779d2feebc7603a125d99eca0ccf1085959b307f64e5dd358',
  pubkey: 'a48380f4cfcc1ad5378294fcac36439770f9c878dd880ffa94bb74ea54a6f243',
  created_at: 1651794653,
  kind: 1,
  tags: [['nonce', '776797', '20']],
  content: "It's just me mining my own business",
  sig: '284622fc0a3f4f1303455d5175f7ba962a3300d136085b9566801bc2e0699de0c7e31e44c81fb40ad9049173742e904713c3594a1da0fc5d2382a25c11aba977',
};
const NIP70_EXAMPLE: NostrEvent = {
  id: 'cb8feca582979d91fe90455867b34dbf4d65e4b86e86b3c68c368ca9f9eef6f2',
  pubkey: '79be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798',
  created_at: 1707409439,
  kind: 1,
  tags: [['-']],
  content: 'hello members of the secret group',
  sig: 'fa163f5cfb75d77d9b6269011872ee22b34fb48d23251e9879bb1e4ccbdd8aaaf4b6dc5f5084a65ef42c52fbcde8f3178bac3ba207de827ec513a6aa39fa684c',
};

describe('serializeEvent / computeEventId', () => {
  it('produces the exact NIP-01 array text', () => {
    expect(serializeEvent({ pubkey: HEX64_B, created_at: 5, kind: 1, tags: [['e', 'x', '']], content: 'a"b\\c\nd' })).toBe(
      `[0,"${HEX64_B}",5,1,[["e","x",""]],"a\\"b\\\\c\\nd"]`,
    );
  });

  it('uses the NIP-01 short escapes and \\u00XX for other control characters', () => {
    const s = serializeEvent({ pubkey: HEX64_B, created_at: 0, kind: 0, tags: [], content: '\n"\\\r\t\b\f\u0000\u001f\u007f' });
    expect(s).toBe(`[0,"${HEX64_B}",0,0,[],"\\n\\"\\\\\\r\\t\\b\\f\\u0000\\u001f\u007f"]`);
  });

  it('matches the published NIP-13 example id', () => {
    expect(computeEventId(NIP13_EXAMPLE)).toBe(NIP13_EXAMPLE.id);
    expect(hasValidId(NIP13_EXAMPLE)).toBe(true);
  });

  it('rejects the illustrative NIP-70 example whose id does not hash', () => {
    expect(computeEventId(NIP70_EXAMPLE)).toBe('f017727ad7c6b4c872639506b75ad7c8f85e0896f71610fb491625e1c0b8b2e6');
    expect(computeEventId(NIP70_EXAMPLE)).toBe(getEventHash(NIP70_EXAMPLE));
    expect(hasValidId(NIP70_EXAMPLE)).toBe(false);
  });

  const contents: [string, string][] = [
    ['empty', ''],
    ['ascii', 'hello world'],
    ['unicode BMP', 'héllo wörld — 日本語 ✓'],
    ['astral / emoji', '😀👩‍👩‍👧‍👦 𝄞 🇺🇸'],
    ['escapes', 'quote " backslash \\ slash / newline \n cr \r tab \t bs \b ff \f'],
    ['C0 controls', Array.from({ length: 32 }, (_, i) => String.fromCharCode(i)).join('')],
    ['DEL and C1', '\u007f\u0080\u009f'],
    ['line/paragraph separators', '\u2028\u2029'],
    ['lone surrogates', 'a\ud800b\udc00c\udbff'],
    ['json-looking', '{"a":[1,2,3]}'],
    ['nul inside', 'a\u0000b'],
  ];
  it.each(contents)('agrees with nostr-tools for %s content', (_name, content) => {
    const ev = signed({
      content,
      tags: [
        ['t', content],
        ['p', PK, content],
      ],
    });
    expect(serializeEvent(ev)).toBe(ntSerialize(ev));
    expect(computeEventId(ev)).toBe(getEventHash(ev));
    expect(computeEventId(ev)).toBe(ev.id);
    expect(hasValidId(ev)).toBe(true);
    expect(verifyEvent({ ...ev })).toBe(true);
  });

  it('agrees with nostr-tools across kinds, big timestamps and many tags', () => {
    for (const kind of [0, 1, 3, 5, 10002, 22242, 30023, 65535]) {
      const ev = signed({ kind, created_at: 2 ** 40, tags: [['d', 'x'], ['a', `30023:${PK}:x`], ['-'], ['e', HEX64_A]] });
      expect(computeEventId(ev)).toBe(getEventHash(ev));
    }
  });

  it('hasValidId detects any tampering', () => {
    const ev = signed({ content: 'original' });
    expect(hasValidId({ ...ev, content: 'changed' })).toBe(false);
    expect(hasValidId({ ...ev, created_at: ev.created_at + 1 })).toBe(false);
    expect(hasValidId({ ...ev, kind: 2 })).toBe(false);
    expect(hasValidId({ ...ev, tags: [['t', 'x']] })).toBe(false);
    expect(hasValidId({ ...ev, pubkey: HEX64_B })).toBe(false);
    expect(hasValidId({ ...ev, id: HEX64_A })).toBe(false);
    // sig is not part of the id
    expect(hasValidId({ ...ev, sig: HEX128 })).toBe(true);
  });
});

describe('checkEventShape', () => {
  it('accepts a well-formed event and returns it unchanged', () => {
    const ev = signed({
      tags: [
        ['e', HEX64_A],
        ['t', ''],
      ],
    });
    const r = checkEventShape(ev, LIMITS);
    expect(r).toEqual({ ok: true, event: ev });
    if (r.ok) expect(r.event).toBe(ev);
  });

  it('accepts boundary values', () => {
    expect(checkEventShape(fake({ created_at: 0, kind: 0 }), LIMITS).ok).toBe(true);
    expect(checkEventShape(fake({ created_at: Number.MAX_SAFE_INTEGER, kind: 65535 }), LIMITS).ok).toBe(true);
    expect(checkEventShape(fake({ tags: Array.from({ length: 100 }, () => ['t']) }), LIMITS).ok).toBe(true);
    expect(checkEventShape(fake({ content: 'x'.repeat(1000) }), LIMITS).ok).toBe(true);
    // 1000 astral code points are 2000 UTF-16 units but still within a 1000 code point limit.
    expect(checkEventShape(fake({ content: '😀'.repeat(1000) }), LIMITS).ok).toBe(true);
    expect(checkEventShape(fake({ tags: [['t', '😀'.repeat(200)]] }), LIMITS).ok).toBe(true);
  });

  it('rejects non-objects without an id', () => {
    for (const x of [null, undefined, 1, 'str', true, [], [fake()]]) {
      expect(checkEventShape(x, LIMITS)).toEqual({ ok: false, reason: 'invalid: event must be a JSON object' });
    }
  });

  it('rejects a bad id and does not echo it', () => {
    for (const id of [undefined, 1, '', 'A'.repeat(64), 'a'.repeat(63), 'a'.repeat(65), 'g'.repeat(64), ` ${'a'.repeat(63)}`]) {
      const r = checkEventShape({ ...fake(), id }, LIMITS);
      expect(r).toEqual({ ok: false, reason: 'invalid: event id must be 64 lowercase hex characters' });
    }
  });

  const cases: [string, Record<string, unknown>, string][] = [
    ['missing pubkey', { pubkey: undefined }, 'invalid: event pubkey must be 64 lowercase hex characters'],
    ['uppercase pubkey', { pubkey: 'B'.repeat(64) }, 'invalid: event pubkey must be 64 lowercase hex characters'],
    ['short pubkey', { pubkey: 'b'.repeat(62) }, 'invalid: event pubkey must be 64 lowercase hex characters'],
    ['string created_at', { created_at: '1000' }, 'invalid: event created_at must be a non-negative integer'],
    ['negative created_at', { created_at: -1 }, 'invalid: event created_at must be a non-negative integer'],
    ['fractional created_at', { created_at: 1.5 }, 'invalid: event created_at must be a non-negative integer'],
    ['unsafe created_at', { created_at: 2 ** 53 }, 'invalid: event created_at must be a non-negative integer'],
    ['null kind', { kind: null }, 'invalid: event kind must be an integer between 0 and 65535'],
    ['negative kind', { kind: -1 }, 'invalid: event kind must be an integer between 0 and 65535'],
    ['kind too big', { kind: 65536 }, 'invalid: event kind must be an integer between 0 and 65535'],
    ['fractional kind', { kind: 1.1 }, 'invalid: event kind must be an integer between 0 and 65535'],
    ['tags object', { tags: {} }, 'invalid: event tags must be an array'],
    ['tags missing', { tags: undefined }, 'invalid: event tags must be an array'],
    ['too many tags', { tags: Array.from({ length: 101 }, () => ['t']) }, 'invalid: too many tags (max 100)'],
    ['empty tag', { tags: [['t', 'x'], []] }, 'invalid: tag 1 must be a non-empty array of strings'],
    ['tag not array', { tags: ['t'] }, 'invalid: tag 0 must be a non-empty array of strings'],
    ['number in tag', { tags: [['t', 1]] }, 'invalid: tag 0 must be a non-empty array of strings'],
    ['null in tag', { tags: [['t', null]] }, 'invalid: tag 0 must be a non-empty array of strings'],
    ['tag value too long', { tags: [['t', 'x'.repeat(201)]] }, 'invalid: tag 0 has a value longer than 200 characters'],
    ['content not string', { content: 5 }, 'invalid: event content must be a string'],
    ['content too long', { content: 'x'.repeat(1001) }, 'invalid: content is longer than 1000 characters'],
    ['content too long (astral)', { content: '😀'.repeat(1001) }, 'invalid: content is longer than 1000 characters'],
    ['missing sig', { sig: undefined }, 'invalid: event sig must be 128 lowercase hex characters'],
    ['short sig', { sig: 'c'.repeat(64) }, 'invalid: event sig must be 128 lowercase hex characters'],
    ['uppercase sig', { sig: 'C'.repeat(128) }, 'invalid: event sig must be 128 lowercase hex characters'],
    ['extra field', { extra: 1 }, 'invalid: unexpected event field "extra"'],
  ];
  it.each(cases)('rejects %s with an invalid: reason and the id', (_name, over, reason) => {
    const x: Record<string, unknown> = { ...fake(), ...over };
    for (const k of Object.keys(x)) if (x[k] === undefined) delete x[k];
    expect(checkEventShape(x, LIMITS)).toEqual({ ok: false, reason, id: HEX64_A });
  });

  it('rejects an own __proto__ key coming from JSON.parse', () => {
    const x = JSON.parse(
      `{"id":"${HEX64_A}","pubkey":"${HEX64_B}","created_at":1,"kind":1,"tags":[],"content":"","sig":"${HEX128}","__proto__":{}}`,
    );
    expect(checkEventShape(x, LIMITS)).toEqual({ ok: false, reason: 'invalid: unexpected event field "__proto__"', id: HEX64_A });
  });

  it('does not require maxTagValueLength', () => {
    const { maxTagValueLength: _, ...rest } = LIMITS;
    expect(checkEventShape(fake({ tags: [['t', 'x'.repeat(5000)]] }), rest).ok).toBe(true);
  });
});

describe('dTag / addressOf', () => {
  it('dTag returns the first d value or empty string', () => {
    expect(dTag(fake())).toBe('');
    expect(dTag(fake({ tags: [['d']] }))).toBe('');
    expect(
      dTag(
        fake({
          tags: [
            ['e', HEX64_A],
            ['d', 'first'],
            ['d', 'second'],
          ],
        }),
      ),
    ).toBe('first');
    expect(dTag(fake({ tags: [['D', 'upper']] }))).toBe('');
  });

  it('addressOf by kind class', () => {
    expect(addressOf(fake({ kind: 30023, tags: [['d', 'slug']] }))).toBe(`30023:${HEX64_B}:slug`);
    expect(addressOf(fake({ kind: 39999 }))).toBe(`39999:${HEX64_B}:`);
    expect(addressOf(fake({ kind: 0, tags: [['d', 'ignored']] }))).toBe(`0:${HEX64_B}:`);
    expect(addressOf(fake({ kind: 3 }))).toBe(`3:${HEX64_B}:`);
    expect(addressOf(fake({ kind: 10002 }))).toBe(`10002:${HEX64_B}:`);
    expect(addressOf(fake({ kind: 1 }))).toBeUndefined();
    expect(addressOf(fake({ kind: 20000 }))).toBeUndefined();
    expect(addressOf(fake({ kind: 40000 }))).toBeUndefined();
  });
});

describe('eventToJson', () => {
  it('uses canonical key order and round-trips', () => {
    const ev = signed({ content: 'x"\n😀', tags: [['t', 'a']] });
    const shuffled = {
      sig: ev.sig,
      content: ev.content,
      tags: ev.tags,
      kind: ev.kind,
      created_at: ev.created_at,
      pubkey: ev.pubkey,
      id: ev.id,
    };
    const json = eventToJson(shuffled);
    expect(Object.keys(JSON.parse(json))).toEqual(['id', 'pubkey', 'created_at', 'kind', 'tags', 'content', 'sig']);
    expect(JSON.parse(json)).toEqual(ev);
    expect(json).toBe(
      `{"id":"${ev.id}","pubkey":"${ev.pubkey}","created_at":${ev.created_at},"kind":1,"tags":[["t","a"]],"content":"x\\"\\n😀","sig":"${ev.sig}"}`,
    );
  });
});
