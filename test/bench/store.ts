import { spawn, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { closeSync, copyFileSync, existsSync, mkdirSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openDatabase, storeEvents } from '@paidrelay/db';
import { computeEventId, eventToJson } from '@paidrelay/nostr';
import { getPublicKey } from 'nostr-tools/pure';
import pg from 'pg';
import { RelayClient, type NostrEvent } from './client.ts';
import { threadParent } from './sign.ts';

/**
 * Stores of a chosen size for the read benchmark (`pnpm bench:reads`): a deterministic set of
 * events, loaded into Postgres through the db package's `storeEvents` in big batches (exactly
 * the rows the relay writes) and into strfry through `strfry import`. Both are kept between runs
 * (a database and a folder named after the store), so a 1,000,000-event store is built once.
 *
 * Author `a`'s `j`-th event is event `i = j * authors + a` (authors take turns, so every author
 * spans the whole time range). Kinds by j % 10: 0-6 kind 1, 7-8 kind 7, 9 kind 6. Tags: `e` to
 * the thread's first event as in the ingest bench (threads of 10), `p` to the next author, `t`
 * one of `TOPICS` topics by i. created_at: `BASE + i` (distinct), or with `ties` = k only k
 * distinct values (event i at `BASE + floor(i * k / events)`): most events then share their
 * created_at with many others, as in imports and bot floods.
 *
 * The events are not signed (the signature is filler): the read path never checks signatures,
 * and signing a million events would take the bench longer than loading them. Ids are real.
 */

export type StoreSpec = { events: number; authors: number; ties: number };

export const TOPICS = 20;
const BASE = 1_760_000_000;
/** Bump when the generated events change, so cached stores are rebuilt. */
const VERSION = 1;
const FILLER = ' The quick brown fox jumps over the lazy dog; a typical short note is about this long, give or take.';

export function storeName(spec: StoreSpec): string {
  return `paidrelay_store_${spec.events}_${spec.authors}_${spec.ties ? `ties${spec.ties}` : 'distinct'}_v${VERSION}`;
}

export function kindOf(j: number): number {
  const r = j % 10;
  return r < 7 ? 1 : r < 9 ? 7 : 6;
}

/** How many events author `a` has. */
export function eventsOf(spec: StoreSpec, a: number): number {
  return a >= spec.events ? 0 : Math.floor((spec.events - 1 - a) / spec.authors) + 1;
}

export type Store = {
  spec: StoreSpec;
  pubkeys: string[];
  /** Event i's id is bytes [32 i, 32 i + 32). */
  ids: Buffer;
  id(i: number): string;
};

type BatchSink = (events: NostrEvent[]) => Promise<void>;

/**
 * Builds every event in order, in batches of `batchSize`, handing each batch to `sink` (at most
 * `inFlight` batches pending at once); returns the store's ids and keys.
 */
export async function generateStore(spec: StoreSpec, sink?: BatchSink, batchSize = 2000, inFlight = 2): Promise<Store> {
  const pubkeys = Array.from({ length: spec.authors }, (_, a) =>
    getPublicKey(createHash('sha256').update(`paidrelay bench store ${a}`).digest()),
  );
  const ids = Buffer.alloc(spec.events * 32);
  const id = (i: number) => ids.toString('hex', i * 32, i * 32 + 32);
  const pending: Promise<void>[] = [];
  let batch: NostrEvent[] = [];
  for (let i = 0; i < spec.events; i++) {
    const a = i % spec.authors;
    const j = Math.floor(i / spec.authors);
    const tags = [
      ['t', `topic-${i % TOPICS}`],
      ['p', pubkeys[(a + 1) % spec.authors]],
    ];
    const parent = threadParent(j);
    if (parent !== undefined) tags.push(['e', id(parent * spec.authors + a)]);
    const ev = {
      pubkey: pubkeys[a],
      created_at: BASE + (spec.ties ? Math.floor((i * spec.ties) / spec.events) : i),
      kind: kindOf(j),
      tags,
      content: `store ${i}.${FILLER}`,
    };
    const evId = computeEventId(ev);
    ids.write(evId, i * 32, 'hex');
    batch.push({ id: evId, ...ev, sig: evId + evId });
    if (batch.length === batchSize || i === spec.events - 1) {
      if (sink) {
        pending.push(sink(batch));
        if (pending.length >= inFlight) await pending.shift();
      }
      batch = [];
    }
  }
  await Promise.all(pending);
  return { spec, pubkeys, ids, id };
}

// ---------- Postgres ----------

const COMPLETE = 'paidrelay bench store: complete';

async function adminClient(baseUrl: string): Promise<pg.Client> {
  const c = new pg.Client({ connectionString: baseUrl, connectionTimeoutMillis: 10_000 });
  await c.connect();
  return c;
}

export function databaseUrl(baseUrl: string, name: string): string {
  const u = new URL(baseUrl);
  u.pathname = `/${name}`;
  return u.toString();
}

/** Whether the store's database exists and was loaded to the end. */
export async function postgresStoreReady(baseUrl: string, name: string): Promise<boolean> {
  const c = await adminClient(baseUrl);
  try {
    const { rows } = await c.query(`SELECT shobj_description(oid, 'pg_database') AS note FROM pg_database WHERE datname = $1`, [name]);
    return rows[0]?.note === COMPLETE;
  } finally {
    await c.end();
  }
}

/** A fresh database `name` (dropped first if a partial one is there); loads the batches as they come. */
export async function postgresLoader(
  baseUrl: string,
  name: string,
  dataDir: string,
): Promise<{ sink: BatchSink; finish(): Promise<void> }> {
  const admin = await adminClient(baseUrl);
  try {
    await admin.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
    await admin.query(`CREATE DATABASE ${name}`);
  } finally {
    await admin.end();
  }
  const db = await openDatabase({
    databaseUrl: databaseUrl(baseUrl, name),
    dataDir,
    poolSize: 4,
    statementTimeoutMs: 0,
    queryTimeoutMs: 0,
  });
  await db.migrate();
  const now = Math.floor(Date.now() / 1000);
  return {
    sink: async (events) => {
      await storeEvents(
        db.kysely,
        events.map((event) => ({ event, raw: eventToJson(event) })),
        now,
      );
    },
    async finish() {
      await db.close();
      // What autovacuum does in a while (statistics, visibility map); the test cluster may run without it.
      const store = await adminClient(databaseUrl(baseUrl, name));
      try {
        await store.query('VACUUM ANALYZE events, event_tags, deletions');
      } finally {
        await store.end();
      }
      const c = await adminClient(baseUrl);
      try {
        await c.query(`COMMENT ON DATABASE ${name} IS '${COMPLETE}'`);
      } finally {
        await c.end();
      }
    },
  };
}

export async function dropPostgresStore(baseUrl: string, name: string): Promise<void> {
  const c = await adminClient(baseUrl);
  try {
    await c.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
  } finally {
    await c.end();
  }
}

// ---------- strfry ----------

/** strfry (a peer in benchmarks only, never a dependency): `dir` holds its binary and strfry.conf. */
export type Strfry = { bin: string; conf: string };

export function strfryAt(dir: string): Strfry {
  const s = { bin: join(dir, 'strfry'), conf: join(dir, 'strfry.conf') };
  for (const f of [s.bin, s.conf]) if (!existsSync(f)) throw new Error(`--strfry: ${f} not found`);
  return s;
}

export function strfryDir(name: string): string {
  return join(tmpdir(), 'paidrelay-bench-stores', name);
}

const strfryComplete = (dir: string) => join(dir, 'complete');

export function strfryStoreReady(dir: string): boolean {
  return existsSync(strfryComplete(dir));
}

/** A config copy in `dir` with `port` (and the database folder `dir/strfry-db`). */
function strfryConfig(s: Strfry, dir: string, port: number): string {
  const conf = join(dir, 'strfry.conf');
  copyFileSync(s.conf, conf);
  const text = readFileSync(conf, 'utf8')
    .replace(/^(\s*port\s*=\s*)\d+/m, `$1${port}`)
    .replace(/^(\s*db\s*=\s*)".*"/m, '$1"./strfry-db/"');
  writeFileSync(conf, text);
  return conf;
}

/** `strfry import --no-verify` into a fresh `dir`, fed the batches as they come. */
export function strfryLoader(s: Strfry, dir: string): { sink: BatchSink; finish(): Promise<void> } {
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(join(dir, 'strfry-db'), { recursive: true });
  const conf = strfryConfig(s, dir, 0);
  const child = spawn(s.bin, [`--config=${conf}`, 'import', '--no-verify'], { cwd: dir, stdio: ['pipe', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr!.on('data', (d: Buffer) => (stderr = (stderr + d.toString()).slice(-2000)));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  return {
    sink: async (events) => {
      const text = events.map((e) => eventToJson(e)).join('\n') + '\n';
      if (!child.stdin!.write(text)) await new Promise((r) => child.stdin!.once('drain', r));
    },
    async finish() {
      child.stdin!.end();
      const code = await exited;
      if (code !== 0) throw new Error(`strfry import exited with ${code}: ${stderr}`);
      writeFileSync(strfryComplete(dir), '');
    },
  };
}

export type StrfryRelay = { url: string; pid: number; child: ChildProcess; stop(): Promise<void> };

/** Runs `strfry relay` on the store in `dir`, on `port`, until stop(). */
export async function startStrfry(s: Strfry, dir: string, port: number): Promise<StrfryRelay> {
  const conf = strfryConfig(s, dir, port);
  const logFd = openSync(join(dir, 'relay.log'), 'w');
  const child = spawn(s.bin, [`--config=${conf}`, 'relay'], { cwd: dir, stdio: ['ignore', logFd, logFd] });
  closeSync(logFd);
  process.once('exit', () => child.kill('SIGKILL'));
  const url = `ws://127.0.0.1:${port}`;
  const deadline = Date.now() + 30_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`strfry exited at start (code ${child.exitCode}), see ${join(dir, 'relay.log')}`);
    try {
      (await RelayClient.connect(url, 2000)).close();
      break;
    } catch (err) {
      if (Date.now() > deadline) throw new Error(`strfry not answering at ${url}: ${(err as Error).message}`);
      await new Promise((r) => setTimeout(r, 200));
    }
  }
  return {
    url,
    pid: child.pid!,
    child,
    async stop() {
      if (child.exitCode !== null) return;
      const gone = new Promise((r) => child.once('exit', r));
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
      await gone;
      clearTimeout(timer);
    },
  };
}
