import { randomBytes } from 'node:crypto';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import WebSocket from 'ws';
import { ACCOUNTS_CHANNEL } from '@paidrelay/bus';
import { loadConfig, createLogger } from '@paidrelay/config';
import { createInvoice, getAccount, settleInvoice } from '@paidrelay/db';
import { finalizeEvent, generateSecretKey, getEventHash, getPublicKey, type EventTemplate } from 'nostr-tools/pure';
import { powDifficulty, type NostrEvent } from '@paidrelay/nostr';
import { Relay as NostrRelay, useWebSocketImplementation } from 'nostr-tools/relay';
import { startRelay, type Relay } from '../src/index.ts';
import { startPaidRelay, type PaidRelayOptions } from '../src/paid.ts';
import { sellsAnything } from '../src/sells.ts';

useWebSocketImplementation(WebSocket);

export type Backend = 'pglite' | 'postgres';

/**
 * The Redis keys of this test file's relays (bus, buckets, volume counters): shared by the
 * replicas a test starts, apart from every other test run on the same Redis.
 */
export const TEST_REDIS_PREFIX = `test:${process.pid}-${randomBytes(4).toString('hex')}:`;

/** PGlite always; real Postgres too when TEST_DATABASE_URL is set (CI sets it). */
export function backends(): Backend[] {
  if (process.env.CI && !process.env.TEST_DATABASE_URL) throw new Error('CI must set TEST_DATABASE_URL');
  return process.env.TEST_DATABASE_URL ? ['pglite', 'postgres'] : ['pglite'];
}

/** A fresh database on the test server, dropped by the returned function. */
export async function freshDatabase(): Promise<{ url: string; drop: () => Promise<void> }> {
  const base = process.env.TEST_DATABASE_URL!;
  const name = `paidrelay_test_${Date.now().toString(36)}_${Math.random().toString(36).slice(2, 8)}`;
  const admin = new pg.Client({ connectionString: base });
  await admin.connect();
  await admin.query(`CREATE DATABASE ${name}`);
  await admin.end();
  const url = new URL(base);
  url.pathname = '/' + name;
  return {
    url: url.toString(),
    drop: async () => {
      const c = new pg.Client({ connectionString: base });
      await c.connect();
      await c.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
      await c.end();
    },
  };
}

export type TestRelay = Relay & { stop: () => Promise<void>; databaseUrl?: string };

export async function startTestRelay(
  backend: Backend,
  env: Record<string, string> = {},
  opts: PaidRelayOptions & { databaseUrl?: string } = {},
): Promise<TestRelay> {
  let db: { url: string; drop: () => Promise<void> } | undefined;
  let databaseUrl = opts.databaseUrl;
  if (backend === 'postgres' && !databaseUrl) {
    db = await freshDatabase();
    databaseUrl = db.url;
  }
  const config = loadConfig({
    HOST: '127.0.0.1',
    PORT: '0',
    DATA_DIR: mkdtempSync(join(tmpdir(), 'paidrelay-test-')),
    LOG_LEVEL: process.env.TEST_LOG_LEVEL ?? 'silent',
    VERIFY_WORKERS: '1',
    REDIS_PREFIX: TEST_REDIS_PREFIX,
    // The relay core's tests run an open relay; payment tests set their prices.
    PRICE_ADMISSION_MSAT: '0',
    PRICE_EVENT_MSAT: '0',
    // Bursts from one loopback address are what these tests do; rate-limit.test.ts sets the buckets.
    RATE_EVENTS_PER_PUBKEY: '0',
    RATE_EVENTS_PER_IP: '0',
    RATE_UNPAID_EVENTS_PER_IP: '0',
    RATE_REQS_PER_IP: '0',
    ...(databaseUrl ? { DATABASE_URL: databaseUrl } : {}),
    ...env,
  });
  // As the relay deployable runs it (main.ts): the core alone for an open relay, with the
  // payment gate's hooks when the test sets prices (or members-only reads).
  const log = createLogger(config.LOG_LEVEL, 'relay-test');
  const relay = sellsAnything(config) || opts.pricing ? await startPaidRelay(config, log, opts) : await startRelay(config, log, opts);
  return Object.assign(relay, {
    databaseUrl,
    stop: async () => {
      await relay.close();
      await db?.drop();
    },
  });
}

/**
 * A settled purchase (`credit` or `admission`, `msat`) written the way a paid invoice writes
 * it, then told to the relay's account cache over the bus.
 */
export async function buy(
  relay: TestRelay,
  pubkey: string,
  product: 'credit' | 'admission',
  msat: number,
  opts: { announce?: boolean } = {},
): Promise<void> {
  const db = relay.ctx.db.kysely;
  const now = Math.floor(Date.now() / 1000);
  const paymentHash = randomBytes(32).toString('hex');
  await createInvoice(db, {
    paymentHash,
    bolt11: `lnbcrt${randomBytes(8).toString('hex')}`,
    pubkey,
    product,
    amountMsat: msat,
    createdAt: now,
    expiresAt: now + 600,
    eventId: null,
    zapRequest: null,
    description: null,
  });
  await settleInvoice(db, paymentHash, { now, subscriptionPeriodSeconds: 2_592_000 });
  // `announce: false`: as if the bus lost the grant's message.
  if (opts.announce === false) return;
  relay.ctx.bus.publish(ACCOUNTS_CHANNEL, JSON.stringify(await getAccount(db, pubkey)));
  await sleep(50);
}

export function newKey() {
  const sk = generateSecretKey();
  return { sk, pubkey: getPublicKey(sk) };
}

/** A signed event as a plain object (nostr-tools marks its own with a symbol). */
export function sign(sk: Uint8Array, t: Partial<EventTemplate> = {}): NostrEvent {
  return plain(finalizeEvent({ kind: 1, created_at: Math.floor(Date.now() / 1000), tags: [], content: 'hello', ...t }, sk));
}

export function plain<T>(x: T): T {
  return JSON.parse(JSON.stringify(x)) as T;
}

/** NIP-13: adds a nonce tag and searches until the id has `bits` leading zero bits; created_at is kept. */
export function mine(sk: Uint8Array, t: Partial<EventTemplate>, bits: number): NostrEvent {
  const base = { kind: 1, created_at: Math.floor(Date.now() / 1000), tags: [], content: 'pow', ...t };
  const pubkey = getPublicKey(sk);
  for (let nonce = 0; ; nonce++) {
    const tags = [...base.tags, ['nonce', String(nonce), String(bits)]];
    const id = getEventHash({ ...base, tags, pubkey });
    if (powDifficulty(id) >= bits) return sign(sk, { ...base, tags });
  }
}

export async function nostrClient(url: string) {
  return NostrRelay.connect(url);
}

/** A bare WebSocket client that records every message, for exact-wire tests. */
export class RawClient {
  messages: unknown[][] = [];
  private waiters: { pred: (m: unknown[]) => boolean; resolve: (m: unknown[]) => void }[] = [];
  closed = false;
  /** The close code, once closed. */
  closeCode?: number;

  private constructor(readonly ws: WebSocket) {
    ws.on('message', (data) => {
      const msg = JSON.parse(data.toString()) as unknown[];
      this.messages.push(msg);
      this.waiters = this.waiters.filter((w) => {
        if (w.pred(msg)) {
          w.resolve(msg);
          return false;
        }
        return true;
      });
    });
    ws.on('close', (code) => {
      this.closed = true;
      this.closeCode = code;
    });
  }

  /** `localAddress`: the source address (all of 127/8 is loopback: the relay sees distinct clients). */
  static open(url: string, headers: Record<string, string> = {}, localAddress?: string): Promise<RawClient> {
    return new Promise((resolve, reject) => {
      const ws = new WebSocket(url, { headers, localAddress });
      const c = new RawClient(ws);
      ws.once('open', () => resolve(c));
      ws.once('error', reject);
      ws.once('unexpected-response', (_req, res) => reject(new Error(`HTTP ${res.statusCode}`)));
    });
  }

  send(msg: unknown): void {
    this.ws.send(typeof msg === 'string' ? msg : JSON.stringify(msg));
  }

  /** The first message (already received or future) that satisfies pred. */
  next(pred: (m: unknown[]) => boolean, timeoutMs = 5000): Promise<unknown[]> {
    const have = this.messages.find(pred);
    if (have) {
      this.messages.splice(this.messages.indexOf(have), 1);
      return Promise.resolve(have);
    }
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => reject(new Error('timed out waiting for a message')), timeoutMs);
      this.waiters.push({
        pred,
        resolve: (m) => {
          clearTimeout(t);
          this.messages.splice(this.messages.indexOf(m), 1);
          resolve(m);
        },
      });
    });
  }

  ok(id: string, timeoutMs?: number) {
    return this.next((m) => m[0] === 'OK' && m[1] === id, timeoutMs);
  }

  notice() {
    return this.next((m) => m[0] === 'NOTICE');
  }

  /** Sends a REQ and collects its stored events until EOSE (or CLOSED). */
  async req(subId: string, ...filters: object[]): Promise<{ events: Record<string, unknown>[]; end: unknown[] }> {
    this.send(['REQ', subId, ...filters]);
    const end = await this.next((m) => (m[0] === 'EOSE' || m[0] === 'CLOSED') && m[1] === subId);
    const events = this.messages.filter((m) => m[0] === 'EVENT' && m[1] === subId).map((m) => m[2] as Record<string, unknown>);
    this.messages = this.messages.filter((m) => !(m[0] === 'EVENT' && m[1] === subId));
    return { events, end };
  }

  close(): void {
    this.ws.close();
  }
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Polls until `fn` returns something truthy (and returns it), or fails after `ms`. */
export async function until<T>(fn: () => T | Promise<T>, ms = 10_000): Promise<Exclude<T, false | undefined | null | 0 | ''>> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (v) return v as Exclude<T, false | undefined | null | 0 | ''>;
    if (Date.now() > end) throw new Error('condition not met in time');
    await sleep(25);
  }
}
