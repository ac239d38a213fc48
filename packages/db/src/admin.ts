/**
 * Queries of NIP-86 relay management (migration 0004_admin): the moderation lists, the relay's
 * NIP-11 texts, the audit trail and the one-use NIP-98 authorizations. A management call runs
 * in one transaction (`adminTransaction`): its authorization is spent, its change made and its
 * audit row written together, or none of them.
 */
import { sql, type Kysely, type Transaction } from 'kysely';
import type { ModerationTable, Schema } from './schema.ts';

export type ModerationList = ModerationTable['list'];
export type ModerationEntry = { list: ModerationList; value: string; reason: string; createdAt: number; createdBy: string };
export type AuditEntry = { id: number; at: number; pubkey: string; method: string; params: unknown };
export type ReportedEvent = { id: string; reports: number; reasons: string[] };

type Db = Kysely<Schema> | Transaction<Schema>;

export async function adminTransaction<T>(db: Kysely<Schema>, fn: (trx: Transaction<Schema>) => Promise<T>): Promise<T> {
  return db.transaction().execute(fn);
}

/**
 * Spends a NIP-98 authorization (by its signature, see AdminAuthUsedTable): false when it was
 * already used. The primary key makes this hold across replicas; a concurrent use of the same
 * one waits for the first transaction and finds it when that commits. Rows that can no longer
 * matter are dropped first.
 */
export async function spendAuthorization(db: Db, sig: string, expiresAt: number, now: number): Promise<boolean> {
  await sql`DELETE FROM admin_auth_used WHERE expires_at < ${now}`.execute(db);
  const { rows } = await sql<{ sig: string }>`
    INSERT INTO admin_auth_used (sig, expires_at) VALUES (${sig}, ${expiresAt})
    ON CONFLICT (sig) DO NOTHING RETURNING sig`.execute(db);
  return rows.length === 1;
}

export async function addModeration(db: Db, e: Omit<ModerationEntry, 'createdAt'>, now: number): Promise<void> {
  await sql`
    INSERT INTO moderation (list, value, reason, created_at, created_by)
    VALUES (${e.list}, ${e.value}, ${e.reason}, ${now}, ${e.createdBy})
    ON CONFLICT (list, value) DO UPDATE SET reason = excluded.reason, created_at = excluded.created_at, created_by = excluded.created_by`.execute(db);
}

export async function removeModeration(db: Db, list: ModerationList, value: string): Promise<void> {
  await sql`DELETE FROM moderation WHERE list = ${list} AND value = ${value}`.execute(db);
}

/** Every moderation entry (the lists are small: each replica keeps them all in memory). */
export async function listModeration(db: Db, list?: ModerationList): Promise<ModerationEntry[]> {
  const where = list === undefined ? sql`` : sql` WHERE list = ${list}`;
  const { rows } = await sql<{ list: ModerationList; value: string; reason: string; created_at: number; created_by: string }>`
    SELECT list, value, reason, created_at, created_by FROM moderation${where} ORDER BY created_at, value`.execute(db);
  return rows.map((r) => ({ list: r.list, value: r.value, reason: r.reason, createdAt: Number(r.created_at), createdBy: r.created_by }));
}

export async function setRelaySetting(db: Db, key: string, value: string, by: string, now: number): Promise<void> {
  await sql`
    INSERT INTO relay_settings (key, value, updated_at, updated_by) VALUES (${key}, ${value}, ${now}, ${by})
    ON CONFLICT (key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at, updated_by = excluded.updated_by`.execute(db);
}

export async function relaySettings(db: Db): Promise<Record<string, string>> {
  const { rows } = await sql<{ key: string; value: string }>`SELECT key, value FROM relay_settings`.execute(db);
  return Object.fromEntries(rows.map((r) => [r.key, r.value]));
}

export async function recordAudit(db: Db, e: Omit<AuditEntry, 'id'>): Promise<void> {
  await sql`INSERT INTO admin_audit (at, pubkey, method, params) VALUES (${e.at}, ${e.pubkey}, ${e.method}, ${JSON.stringify(e.params)}::jsonb)`.execute(db);
}

/** The newest audit rows first. */
export async function listAudit(db: Db, limit = 100): Promise<AuditEntry[]> {
  const { rows } = await sql<{ id: number; at: number; pubkey: string; method: string; params: unknown }>`
    SELECT id, at, pubkey, method, params FROM admin_audit ORDER BY id DESC LIMIT ${limit}`.execute(db);
  return rows.map((r) => ({
    id: Number(r.id),
    at: Number(r.at),
    pubkey: r.pubkey,
    method: r.method,
    params: typeof r.params === 'string' ? (JSON.parse(r.params) as unknown) : r.params,
  }));
}

/** Removes stored events (and their tags) by id; returns how many were stored. */
export async function deleteEventsById(db: Db, ids: readonly string[]): Promise<number> {
  if (ids.length === 0) return 0;
  const bufs = ids.map((id) => Buffer.from(id, 'hex'));
  const { rows } = await sql<{ n: number }>`
    WITH d AS (DELETE FROM events WHERE id = ANY(${bufs}::bytea[]) RETURNING id),
         t AS (DELETE FROM event_tags WHERE event_id IN (SELECT id FROM d))
    SELECT count(*) AS n FROM d`.execute(db);
  return Number(rows[0]?.n ?? 0);
}

/**
 * Events reported with NIP-56 (kind 1984 `e` tags) that no admin has banned or allowed yet,
 * the most reported first: how many reports each has and their report types (the `e` tag's
 * third value) or, without one, the report's content. Reads at most `maxReports` newest reports.
 */
export async function reportedEvents(db: Db, maxReports = 5000): Promise<ReportedEvent[]> {
  const { rows } = await sql<{ value: string; raw: string }>`
    SELECT t.value, e.raw FROM event_tags t JOIN events e ON e.id = t.event_id
    WHERE t.kind = 1984 AND t.name = 'e'
      AND NOT EXISTS (SELECT 1 FROM moderation m WHERE m.list IN ('banned_event', 'allowed_event') AND m.value = t.value)
    ORDER BY t.created_at DESC LIMIT ${maxReports}`.execute(db);
  const byId = new Map<string, { reporters: Set<string>; reasons: Set<string> }>();
  for (const r of rows) {
    let ev: { pubkey: string; content: string; tags: string[][] };
    try {
      ev = JSON.parse(r.raw) as typeof ev;
    } catch {
      continue;
    }
    const entry = byId.get(r.value) ?? { reporters: new Set(), reasons: new Set() };
    byId.set(r.value, entry);
    entry.reporters.add(ev.pubkey);
    const tag = ev.tags.find((t) => t[0] === 'e' && t[1] === r.value);
    const why = tag?.[2] || ev.content.slice(0, 200);
    if (why) entry.reasons.add(why);
  }
  return [...byId.entries()]
    .map(([id, e]) => ({ id, reports: e.reporters.size, reasons: [...e.reasons] }))
    .sort((a, b) => b.reports - a.reports || (a.id < b.id ? -1 : 1));
}
