import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadConfig } from '../src/index.ts';

describe('loadConfig', () => {
  it('gives every setting its documented default', () => {
    const c = loadConfig({});
    expect(c).toMatchObject({ HOST: '0.0.0.0', PORT: 7777, DATA_DIR: './data', LOG_LEVEL: 'info', MAX_SUBSCRIPTIONS: 50 });
    expect(c.DATABASE_URL).toBeUndefined();
    expect(c.REDIS_URL).toBeUndefined();
  });

  it('reads the environment over an optional JSON file', () => {
    const dir = mkdtempSync(join(tmpdir(), 'cfg-'));
    const file = join(dir, 'relay.json');
    writeFileSync(file, JSON.stringify({ PORT: 9000, RELAY_NAME: 'from file', MAX_LIMIT: 10 }));
    const c = loadConfig({ CONFIG_FILE: file, PORT: '9100', AUTH_REQUIRED: 'true', DATABASE_URL: '' });
    expect(c.PORT).toBe(9100);
    expect(c.RELAY_NAME).toBe('from file');
    expect(c.MAX_LIMIT).toBe(10);
    expect(c.AUTH_REQUIRED).toBe(true);
    expect(c.DATABASE_URL).toBeUndefined();
  });

  it('refuses invalid values, naming each one', () => {
    expect(() => loadConfig({ PORT: 'eighty', LOG_LEVEL: 'loud', RELAY_SECRET_KEY: 'abc' })).toThrow(
      /PORT[\s\S]*LOG_LEVEL[\s\S]*RELAY_SECRET_KEY|PORT[\s\S]*RELAY_SECRET_KEY[\s\S]*LOG_LEVEL|LOG_LEVEL[\s\S]*PORT/,
    );
    expect(() => loadConfig({ PORT: '70000' })).toThrow(/PORT/);
    expect(() => loadConfig({ MAX_SUBSCRIPTIONS: '0' })).toThrow(/MAX_SUBSCRIPTIONS/);
  });

  it('parses kind lists and per-kind prices, listing a bad one with the others', () => {
    const c = loadConfig({ PRIVATE_KINDS: ' 4, 1059 ', WAIVED_KINDS: '', PRICE_PUBLICATION_KINDS: '7:10, 30023:1000' });
    expect(c.PRIVATE_KINDS).toEqual([4, 1059]);
    expect(c.WAIVED_KINDS).toEqual([]);
    expect([...c.PRICE_PUBLICATION_KINDS]).toEqual([
      [7, 10],
      [30023, 1000],
    ]);
    let message = '';
    try {
      loadConfig({ PORT: 'eighty', PRICE_PUBLICATION_KINDS: '1=5', WAIVED_KINDS: '70000', MEMBERS_ONLY_KINDS: 'one' });
    } catch (err) {
      message = (err as Error).message;
    }
    for (const bit of [
      'PORT',
      'PRICE_PUBLICATION_KINDS',
      '"1=5" is not <kind>:<msat>',
      'WAIVED_KINDS',
      '"70000" is not a kind',
      'MEMBERS_ONLY_KINDS',
    ]) {
      expect(message).toContain(bit);
    }
  });
});

describe('README', () => {
  it('lists every setting with its default', async () => {
    const { readFileSync } = await import('node:fs');
    const { configSchema } = await import('../src/index.ts');
    const readme = readFileSync(new URL('../../../README.md', import.meta.url), 'utf8');
    const defaults = loadConfig({});
    for (const key of Object.keys(configSchema.shape)) {
      const row = readme.split('\n').find((l) => l.startsWith(`| \`${key}\` |`));
      expect(row, `README row for ${key}`).toBeDefined();
      const value = (defaults as Record<string, unknown>)[key];
      if (typeof value === 'number' || typeof value === 'boolean') expect(row).toContain(`\`${value}\``);
    }
  });
});
