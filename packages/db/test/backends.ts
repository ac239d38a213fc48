/**
 * The storage backends every storage test runs against: PGlite always, and real Postgres when
 * TEST_DATABASE_URL is set (a fresh database per run, dropped afterwards).
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { sql } from 'kysely';
import pg from 'pg';
import { finalizeEvent, generateSecretKey, getPublicKey } from 'nostr-tools';
import { openDatabase, type Database } from '../src/index.ts';
import type { NostrEvent, StoreItem } from '../src/types.ts';

export type Opened = { db: Database; url?: string; cleanup(): Promise<void> };
export type Backend = { name: 'pglite' | 'postgres'; open(): Promise<Opened> };

const PGLITE: Backend = {
  name: 'pglite',
  async open() {
    const dataDir = await mkdtemp(join(tmpdir(), 'paidrelay-db-test-'));
    const db = await openDatabase({ dataDir });
    return {
      db,
      async cleanup() {
        await db.close();
        await rm(dataDir, { recursive: true, force: true });
      },
    };
  },
};

/** Creates `paidrelay_test_<random>` next to the database of `adminUrl`; returns its URL and a dropper. */
export async function createTestDatabase(adminUrl: string): Promise<{ url: string; drop(): Promise<void> }> {
  const name = `paidrelay_test_${randomBytes(6).toString('hex')}`;
  const admin = new pg.Client({ connectionString: adminUrl });
  await admin.connect();
  try {
    await admin.query(`CREATE DATABASE ${name}`);
  } finally {
    await admin.end();
  }
  const u = new URL(adminUrl);
  u.pathname = `/${name}`;
  return {
    url: u.toString(),
    async drop() {
      const c = new pg.Client({ connectionString: adminUrl });
      await c.connect();
      try {
        await c.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
      } finally {
        await c.end();
      }
    },
  };
}

function postgresBackend(adminUrl: string): Backend {
  return {
    name: 'postgres',
    async open() {
      const { url, drop } = await createTestDatabase(adminUrl);
      const db = await openDatabase({ databaseUrl: url, dataDir: tmpdir(), poolSize: 8 });
      return {
        db,
        url,
        async cleanup() {
          await db.close();
          await drop();
        },
      };
    },
  };
}

export const TEST_DATABASE_URL = process.env.TEST_DATABASE_URL || undefined;

export const backends: Backend[] = TEST_DATABASE_URL ? [PGLITE, postgresBackend(TEST_DATABASE_URL)] : [PGLITE];

export async function truncateAll(db: Database): Promise<void> {
  await sql`TRUNCATE events, event_tags, deletions`.execute(db.kysely);
}

// ---------------------------------------------------------------------------------------------
// Event factories (real signed events)

export type Author = { sk: Uint8Array; pubkey: string };

export function author(): Author {
  const sk = generateSecretKey();
  return { sk, pubkey: getPublicKey(sk) };
}

let counter = 0;

export function mk(who: Author, opts: { kind?: number; created_at?: number; tags?: string[][]; content?: string } = {}): StoreItem {
  const event = finalizeEvent(
    {
      kind: opts.kind ?? 1,
      created_at: opts.created_at ?? 1_000,
      tags: opts.tags ?? [],
      content: opts.content ?? `note ${++counter}`,
    },
    who.sk,
  ) as NostrEvent;
  // Copy to a plain object (nostr-tools adds a verification symbol).
  const plain: NostrEvent = {
    id: event.id,
    pubkey: event.pubkey,
    created_at: event.created_at,
    kind: event.kind,
    tags: event.tags,
    content: event.content,
    sig: event.sig,
  };
  return { event: plain, raw: JSON.stringify(plain) };
}

/** Two events by `who` with the same kind and created_at, returned as [lowerId, higherId]. */
export function tiePair(who: Author, opts: { kind: number; created_at: number; tags?: string[][] }): [StoreItem, StoreItem] {
  const a = mk(who, opts);
  const b = mk(who, opts);
  return a.event.id < b.event.id ? [a, b] : [b, a];
}

export function ids(raws: string[]): string[] {
  return raws.map((r) => (JSON.parse(r) as NostrEvent).id);
}
