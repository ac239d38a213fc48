import { describe, expect, it } from 'vitest';
import { checkAuthEvent, relayUrlMatches, upgradeRequestUrl } from '../src/index.ts';
import { fake } from './helpers.ts';

describe('NIP-42: the relay URL as the client reached it', () => {
  it('is ws://<Host><path> without a trusted proxy, whatever X-Forwarded-* says', () => {
    expect(upgradeRequestUrl({ host: '127.0.0.1:7777', path: '/' }, false)).toBe('ws://127.0.0.1:7777/');
    expect(upgradeRequestUrl({ host: 'Relay.Example.com', path: '/nostr' }, false)).toBe('ws://Relay.Example.com/nostr');
    expect(upgradeRequestUrl({ host: '[::1]:7777' }, false)).toBe('ws://[::1]:7777/');
    expect(upgradeRequestUrl({ host: '127.0.0.1:7777', forwardedProto: 'https', forwardedHost: 'evil.example.com' }, false)).toBe(
      'ws://127.0.0.1:7777/',
    );
  });

  it('behind a trusted proxy takes the first X-Forwarded-Proto (http→ws, https→wss) and X-Forwarded-Host', () => {
    const h = { host: '10.0.0.5:7777', path: '/' };
    expect(upgradeRequestUrl({ ...h, forwardedProto: 'https', forwardedHost: 'relay.example.com' }, true)).toBe('wss://relay.example.com/');
    expect(upgradeRequestUrl({ ...h, forwardedProto: 'HTTPS, http', forwardedHost: 'relay.example.com, inner' }, true)).toBe(
      'wss://relay.example.com/',
    );
    expect(upgradeRequestUrl({ ...h, forwardedProto: 'http' }, true)).toBe('ws://10.0.0.5:7777/');
    expect(upgradeRequestUrl({ ...h, forwardedProto: 'wss' }, true)).toBe('wss://10.0.0.5:7777/');
    expect(upgradeRequestUrl(h, true)).toBe('ws://10.0.0.5:7777/');
    // the scheme decides the default port: wss://relay.example.com:443 is wss://relay.example.com
    const url = upgradeRequestUrl({ ...h, forwardedProto: 'https', forwardedHost: 'relay.example.com:443' }, true)!;
    expect(relayUrlMatches('wss://relay.example.com', url)).toBe(true);
    expect(relayUrlMatches('wss://relay.example.com:443/', url)).toBe(true);
    expect(relayUrlMatches('wss://relay.example.com:444', url)).toBe(false);
  });

  it('refuses a Host that is not host[:port]', () => {
    for (const host of ['', ' ', 'evil.com/path', 'user@evil.com', 'a b', 'evil.com:port', 'evil.com:123456']) {
      expect(upgradeRequestUrl({ host }, false), host).toBeUndefined();
    }
    expect(upgradeRequestUrl({ host: 'ok:1', forwardedHost: 'x/y' }, true)).toBeUndefined();
  });

  it('checkAuthEvent accepts a relay tag naming any one of the URLs given', () => {
    const opts = { challenge: 'c', now: 1_000_000, maxSkewSeconds: 600 };
    const auth = (relay: string) =>
      fake({
        kind: 22242,
        created_at: 1_000_000,
        tags: [
          ['relay', relay],
          ['challenge', 'c'],
        ],
      });
    const urls = ['ws://localhost:7777', 'ws://127.0.0.1:7777/'];
    expect(checkAuthEvent(auth('ws://127.0.0.1:7777'), { ...opts, relayUrl: urls })).toBeNull();
    expect(checkAuthEvent(auth('ws://LOCALHOST:7777/'), { ...opts, relayUrl: urls })).toBeNull();
    expect(checkAuthEvent(auth('ws://127.0.0.2:7777'), { ...opts, relayUrl: urls })).toBe(
      'invalid: auth event relay tag does not match this relay',
    );
    expect(checkAuthEvent(auth('ws://127.0.0.1:7777'), { ...opts, relayUrl: [] })).toBe(
      'invalid: auth event relay tag does not match this relay',
    );
  });
});
