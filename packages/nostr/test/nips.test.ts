import { describe, expect, it } from 'vitest';
import {
  checkAuthEvent,
  committedTarget,
  deletionTargets,
  expirationOf,
  isExpired,
  isProtected,
  normalizeRelayUrl,
  parseAddress,
  powDifficulty,
  relayUrlMatches,
} from '../src/index.ts';
import { fake, HEX64_A, HEX64_B } from './helpers.ts';

const HEX64_C = 'c'.repeat(64);

describe('NIP-09 deletionTargets', () => {
  it('collects e ids and own a addresses from a kind 5 event', () => {
    const ev = fake({
      kind: 5,
      pubkey: HEX64_B,
      tags: [
        ['e', HEX64_A],
        ['e', HEX64_C, 'wss://relay'],
        ['e', HEX64_A],
        ['e', 'A'.repeat(64)],
        ['e', 'abc'],
        ['e'],
        ['a', `30023:${HEX64_B}:my:slug`],
        ['a', `30023:${HEX64_B}:`],
        ['a', `10002:${HEX64_B}:`],
        ['a', `0:${HEX64_B}:`],
        ['a', `30023:${HEX64_B}:my:slug`],
        ['k', '1'],
        ['p', HEX64_A],
      ],
    });
    expect(deletionTargets(ev)).toEqual({
      ids: [HEX64_A, HEX64_C],
      addresses: [`30023:${HEX64_B}:my:slug`, `30023:${HEX64_B}:`, `10002:${HEX64_B}:`, `0:${HEX64_B}:`],
    });
  });

  it('drops addresses of other authors, regular kinds, and non-canonical spellings', () => {
    const ev = fake({
      kind: 5,
      pubkey: HEX64_B,
      tags: [
        ['a', `30023:${HEX64_A}:slug`],
        ['a', `1:${HEX64_B}:`],
        ['a', `10002:${HEX64_B}:d`],
        ['a', `030023:${HEX64_B}:slug`],
        ['a', `70000:${HEX64_B}:slug`],
        ['a', `30023:${'B'.repeat(64)}:slug`],
        ['a', `30023:${HEX64_B}`],
        ['a', `x:${HEX64_B}:`],
        ['a', ''],
      ],
    });
    expect(deletionTargets(ev)).toEqual({ ids: [], addresses: [] });
  });

  it('ignores non-deletion events', () => {
    expect(deletionTargets(fake({ kind: 1, tags: [['e', HEX64_A]] }))).toEqual({ ids: [], addresses: [] });
  });

  it('parseAddress', () => {
    expect(parseAddress(`30023:${HEX64_B}:a:b`)).toEqual({ kind: 30023, pubkey: HEX64_B, d: 'a:b' });
    expect(parseAddress(`0:${HEX64_B}:`)).toEqual({ kind: 0, pubkey: HEX64_B, d: '' });
    expect(parseAddress(`00:${HEX64_B}:`)).toBeUndefined();
    expect(parseAddress(`65536:${HEX64_B}:`)).toBeUndefined();
    expect(parseAddress(`:${HEX64_B}:`)).toBeUndefined();
    expect(parseAddress(`1:${HEX64_B}x`)).toBeUndefined();
  });
});

describe('NIP-13', () => {
  it('powDifficulty counts leading zero bits', () => {
    expect(powDifficulty('000000000e9d97a1ab09fc381030b346cdd7a142ad57e6df0b46dc9bef6c7e2d')).toBe(36);
    expect(powDifficulty('002f' + 'f'.repeat(60))).toBe(10);
    expect(powDifficulty('000006d8c378af1779d2feebc7603a125d99eca0ccf1085959b307f64e5dd358')).toBe(21);
    expect(powDifficulty('f'.repeat(64))).toBe(0);
    expect(powDifficulty('8' + '0'.repeat(63))).toBe(0);
    expect(powDifficulty('7' + '0'.repeat(63))).toBe(1);
    expect(powDifficulty('1' + '0'.repeat(63))).toBe(3);
    expect(powDifficulty('0'.repeat(64))).toBe(256);
    expect(powDifficulty('')).toBe(0);
  });

  it('committedTarget reads the nonce tag third element', () => {
    expect(committedTarget(fake({ tags: [['nonce', '776797', '20']] }))).toBe(20);
    expect(
      committedTarget(
        fake({
          tags: [
            ['t', 'x'],
            ['nonce', '1', '0'],
          ],
        }),
      ),
    ).toBe(0);
    expect(committedTarget(fake({ tags: [['nonce', '1']] }))).toBeUndefined();
    expect(committedTarget(fake({ tags: [['nonce', '1', 'twenty']] }))).toBeUndefined();
    expect(committedTarget(fake({ tags: [['nonce', '1', '-5']] }))).toBeUndefined();
    expect(committedTarget(fake({ tags: [['nonce', '1', '2.5']] }))).toBeUndefined();
    expect(committedTarget(fake({ tags: [['nonce', '1', ' 20']] }))).toBeUndefined();
    expect(committedTarget(fake({ tags: [['nonce', '1', '']] }))).toBeUndefined();
    expect(committedTarget(fake({ tags: [] }))).toBeUndefined();
  });
});

describe('NIP-40', () => {
  it('expirationOf reads the first expiration tag', () => {
    expect(expirationOf(fake({ tags: [['expiration', '1600000000']] }))).toBe(1600000000);
    expect(
      expirationOf(
        fake({
          tags: [
            ['expiration', '5'],
            ['expiration', '9'],
          ],
        }),
      ),
    ).toBe(5);
    expect(expirationOf(fake({ tags: [] }))).toBeUndefined();
    expect(expirationOf(fake({ tags: [['expiration']] }))).toBeUndefined();
    for (const bad of ['', 'abc', '-1', '1.5', '1e9', ' 1', '1 ', '0x10', '99999999999999999']) {
      expect(expirationOf(fake({ tags: [['expiration', bad]] })), bad).toBeUndefined();
    }
  });

  it('isExpired is inclusive of the expiration second', () => {
    const ev = fake({ tags: [['expiration', '100']] });
    expect(isExpired(ev, 99)).toBe(false);
    expect(isExpired(ev, 100)).toBe(true);
    expect(isExpired(ev, 101)).toBe(true);
    expect(isExpired(fake(), 1e12)).toBe(false);
  });
});

describe('NIP-70 isProtected', () => {
  it('requires a tag exactly ["-"]', () => {
    expect(isProtected(fake({ tags: [['-']] }))).toBe(true);
    expect(isProtected(fake({ tags: [['t', 'x'], ['-']] }))).toBe(true);
    expect(isProtected(fake({ tags: [['-', '']] }))).toBe(false);
    expect(isProtected(fake({ tags: [['t', '-']] }))).toBe(false);
    expect(isProtected(fake({ tags: [['--']] }))).toBe(false);
    expect(isProtected(fake({ tags: [] }))).toBe(false);
  });
});

describe('NIP-42 checkAuthEvent', () => {
  const opts = { challenge: 'chal-123', relayUrl: 'wss://relay.example.com', now: 1_000_000, maxSkewSeconds: 600 };
  const auth = (over: { kind?: number; created_at?: number; tags?: string[][] } = {}) =>
    fake({
      kind: 22242,
      created_at: 1_000_000,
      tags: [
        ['relay', 'wss://relay.example.com/'],
        ['challenge', 'chal-123'],
      ],
      ...over,
    });

  it('accepts a correct auth event', () => {
    expect(checkAuthEvent(auth(), opts)).toBeNull();
    expect(checkAuthEvent(auth({ created_at: 1_000_600 }), opts)).toBeNull();
    expect(checkAuthEvent(auth({ created_at: 999_400 }), opts)).toBeNull();
  });

  it('rejects wrong kind, skew, challenge and relay', () => {
    expect(checkAuthEvent(auth({ kind: 1 }), opts)).toBe('invalid: auth event must be kind 22242');
    expect(checkAuthEvent(auth({ created_at: 1_000_601 }), opts)).toBe('invalid: auth event created_at is too far from the current time');
    expect(checkAuthEvent(auth({ created_at: 999_399 }), opts)).toBe('invalid: auth event created_at is too far from the current time');
    expect(checkAuthEvent(auth({ tags: [['relay', 'wss://relay.example.com']] }), opts)).toBe('invalid: auth event has no challenge tag');
    expect(checkAuthEvent(auth({ tags: [['challenge'], ['relay', 'wss://relay.example.com']] }), opts)).toBe(
      'invalid: auth event has no challenge tag',
    );
    expect(
      checkAuthEvent(
        auth({
          tags: [
            ['challenge', 'other'],
            ['relay', 'wss://relay.example.com'],
          ],
        }),
        opts,
      ),
    ).toBe('invalid: auth event challenge does not match');
    expect(
      checkAuthEvent(
        auth({
          tags: [
            ['challenge', 'CHAL-123'],
            ['relay', 'wss://relay.example.com'],
          ],
        }),
        opts,
      ),
    ).toBe('invalid: auth event challenge does not match');
    expect(checkAuthEvent(auth({ tags: [['challenge', 'chal-123']] }), opts)).toBe('invalid: auth event has no relay tag');
    expect(
      checkAuthEvent(
        auth({
          tags: [
            ['challenge', 'chal-123'],
            ['relay', 'wss://evil.example.com'],
          ],
        }),
        opts,
      ),
    ).toBe('invalid: auth event relay tag does not match this relay');
    expect(checkAuthEvent(auth(), { ...opts, challenge: '' })).toBe('invalid: no challenge was issued');
  });

  it('relay URL normalization', () => {
    const yes: [string, string][] = [
      ['wss://relay.example.com', 'wss://relay.example.com/'],
      ['ws://relay.example.com', 'wss://relay.example.com'],
      ['wss://RELAY.Example.COM', 'wss://relay.example.com'],
      ['wss://relay.example.com:443', 'wss://relay.example.com'],
      ['ws://relay.example.com:80/', 'wss://relay.example.com'],
      ['wss://relay.example.com:7777', 'ws://relay.example.com:7777/'],
      ['wss://example.com/nostr/', 'wss://example.com/nostr'],
      ['wss://example.com/nostr', 'ws://EXAMPLE.com/nostr/'],
      ['relay.example.com', 'wss://relay.example.com'],
      ['  wss://relay.example.com  ', 'wss://relay.example.com'],
      ['wss://relay.example.com/?x=1', 'wss://relay.example.com'],
    ];
    for (const [a, b] of yes) expect(relayUrlMatches(a, b), `${a} ~ ${b}`).toBe(true);
    const no: [string, string][] = [
      ['wss://relay.example.com:7777', 'wss://relay.example.com'],
      ['wss://relay.example.com/other', 'wss://relay.example.com'],
      ['wss://example.com/Nostr', 'wss://example.com/nostr'],
      ['wss://sub.relay.example.com', 'wss://relay.example.com'],
      ['wss://relay.example.com.evil.com', 'wss://relay.example.com'],
      ['ftp://relay.example.com', 'wss://relay.example.com'],
      ['', 'wss://relay.example.com'],
      ['wss://', 'wss://relay.example.com'],
    ];
    for (const [a, b] of no) expect(relayUrlMatches(a, b), `${a} !~ ${b}`).toBe(false);
    expect(normalizeRelayUrl('wss://Relay.Example.com:443/path//')).toBe('relay.example.com/path');
    expect(normalizeRelayUrl('not a url at all')).toBeUndefined();
  });
});
