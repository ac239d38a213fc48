import { mkdtempSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadRelayKey } from '../src/relay-key.ts';

describe('loadRelayKey', () => {
  it('creates the key once in the data folder (owner-only, nothing else left there) and reads it back', () => {
    const dir = mkdtempSync(join(tmpdir(), 'relay-key-'));
    const first = loadRelayKey(undefined, dir);
    expect(readdirSync(dir)).toEqual(['relay.key']);
    expect(statSync(join(dir, 'relay.key')).mode & 0o777).toBe(0o600);
    expect(readFileSync(join(dir, 'relay.key'), 'utf8')).toMatch(/^[0-9a-f]{64}\n$/);
    expect(loadRelayKey(undefined, dir).pubkey).toBe(first.pubkey);
  });

  it('refuses a key file that holds no key, naming the file', () => {
    const dir = mkdtempSync(join(tmpdir(), 'relay-key-'));
    writeFileSync(join(dir, 'relay.key'), 'abc\n');
    expect(() => loadRelayKey(undefined, dir)).toThrow(/relay\.key does not hold a secret key/);
  });
});
