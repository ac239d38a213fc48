/**
 * Queries of NIP-86 relay management (migration 0004_admin): the moderation lists, the relay's
 * NIP-11 texts, the audit trail and the one-use NIP-98 authorizations. A management call runs
 * in one transaction (`adminTransaction`): its authorization is spent, its change made and its
 * audit row written together, or none of them.
 */
import { sql, type Kysely, type Transaction } from 'kysely';
import { bufHex, hexBuf } from './hex.ts';
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
    ON CONFLICT (list, value) DO UPDATE SET reason = excluded.reason, created_at = excluded.created_at, created_by = excluded.created_by`.execute(
    db,
  );
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
  await sql`INSERT INTO admin_audit (at, pubkey, method, params) VALUES (${e.at}, ${e.pubkey}, ${e.method}, ${JSON.stringify(e.params)}::jsonb)`.execute(
    db,
  );
}

/** The newest audit rows first. */
export async function listAudit(db: Db, limit = 100): Promise<AuditEntry[]> {
  return listAuditPage(db, { limit });
}

/** Removes stored events (and their tags) by id; returns how many were stored. */
export async function deleteEventsById(db: Db, ids: readonly string[]): Promise<number> {
  if (ids.length === 0) return 0;
  const bufs = ids.map(hexBuf);
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

// ---------------------------------------------------------------------------------------------
// Admin data (the dashboard's NIP-86 extension methods: stats, listinvoices, getinvoice,
// listmembers, grantadmission, extendadmission, grantcredit, listauditlog)

/** The ledger account admin grants are booked against: NEGATIVE, the value admins gave away (as `wallet` is for money received). */
export const LEDGER_ADMIN_GRANTS = 'grant:admin';

export type RevenuePoint = { at: number; account: string; amountMsat: number };

/**
 * Money booked to `revenue:*` accounts per bucket (`bucketSeconds`, aligned on the epoch) in
 * [from, to), by account. `source` 'paid': only the rows of paid invoices and publication
 * debits (money received); 'grants': only the rows of admin grants (txid `grant:...`).
 */
export async function revenueByBucket(
  db: Db,
  o: { from: number; to: number; bucketSeconds: number; source: 'paid' | 'grants' },
): Promise<RevenuePoint[]> {
  const grants = o.source === 'grants';
  const { rows } = await sql<{ at: number; account: string; s: number }>`
    SELECT (created_at / ${o.bucketSeconds}) * ${o.bucketSeconds} AS at, account, sum(amount_msat)::int8 AS s
    FROM ledger
    WHERE account >= 'revenue:' AND account < 'revenue;' AND created_at >= ${o.from} AND created_at < ${o.to}
      AND ${grants ? sql`txid LIKE 'grant:%'` : sql`txid NOT LIKE 'grant:%'`}
    GROUP BY 1, 2 ORDER BY 1, 2`.execute(db);
  return rows.map((r) => ({ at: Number(r.at), account: r.account, amountMsat: Number(r.s) }));
}

/** Per-account sums of the whole ledger (small: a handful of non-user accounts), and the user balances summed. */
export async function ledgerSummary(db: Db): Promise<{ accounts: Record<string, number>; userBalancesMsat: number; totalMsat: number }> {
  const { rows } = await sql<{ account: string; s: number }>`
    SELECT CASE WHEN account LIKE 'user:%' THEN 'user:*' ELSE account END AS account, sum(amount_msat)::int8 AS s
    FROM ledger GROUP BY 1 ORDER BY 1`.execute(db);
  const accounts: Record<string, number> = {};
  let total = 0;
  for (const r of rows) {
    accounts[r.account] = Number(r.s);
    total += Number(r.s);
  }
  const users = accounts['user:*'] ?? 0;
  delete accounts['user:*'];
  return { accounts, userBalancesMsat: users, totalMsat: total };
}

/** Stored events: exact below 100 000 rows, the planner's estimate above (count(*) of a big table is slow). */
export async function storedEventCount(db: Db): Promise<{ count: number; estimated: boolean }> {
  const est = await sql<{ n: number }>`SELECT reltuples::int8 AS n FROM pg_class WHERE relname = 'events' AND relkind = 'r'`.execute(db);
  const n = Number(est.rows[0]?.n ?? -1);
  if (n > 100_000) return { count: n, estimated: true };
  const { rows } = await sql<{ n: number }>`SELECT count(*)::int8 AS n FROM events`.execute(db);
  return { count: Number(rows[0]?.n ?? 0), estimated: false };
}

export type AdminInvoice = {
  id: string;
  pubkey: string;
  product: string;
  amountMsat: number;
  status: string;
  createdAt: number;
  expiresAt: number;
  paidAt: number | null;
  eventId: string | null;
  bolt11: string;
  paymentHash: string;
  description: string | null;
};
export type InvoiceFilter = {
  status?: string;
  product?: string;
  pubkey?: string;
  /** created_at >= from, < to (unix seconds). */
  from?: number;
  to?: number;
  limit: number;
  offset: number;
};

type InvoiceDbRow = {
  id: string;
  pubkey: Uint8Array;
  product: string;
  amount_msat: number;
  status: string;
  created_at: number;
  expires_at: number;
  paid_at: number | null;
  event_id: Uint8Array | null;
  bolt11: string;
  payment_hash: string;
  description: string | null;
};
const toAdminInvoice = (r: InvoiceDbRow): AdminInvoice => ({
  id: r.id,
  pubkey: bufHex(r.pubkey),
  product: r.product,
  amountMsat: Number(r.amount_msat),
  status: r.status,
  createdAt: Number(r.created_at),
  expiresAt: Number(r.expires_at),
  paidAt: r.paid_at === null ? null : Number(r.paid_at),
  eventId: r.event_id === null ? null : bufHex(r.event_id),
  bolt11: r.bolt11,
  paymentHash: r.payment_hash,
  description: r.description,
});

/** Invoices, newest first, filtered; with the number that match (for paging). */
export async function listInvoicesAdmin(db: Db, f: InvoiceFilter): Promise<{ invoices: AdminInvoice[]; total: number }> {
  const where = [sql`true`];
  if (f.status) where.push(sql`status = ${f.status}`);
  if (f.product) where.push(sql`product = ${f.product}`);
  if (f.pubkey) where.push(sql`pubkey = ${hexBuf(f.pubkey)}`);
  if (f.from !== undefined) where.push(sql`created_at >= ${f.from}`);
  if (f.to !== undefined) where.push(sql`created_at < ${f.to}`);
  const cond = sql.join(where, sql` AND `);
  const [{ rows }, count] = await Promise.all([
    sql<InvoiceDbRow>`
      SELECT id, pubkey, product, amount_msat, status, created_at, expires_at, paid_at, event_id, bolt11, payment_hash, description
      FROM invoices WHERE ${cond} ORDER BY created_at DESC, id DESC LIMIT ${f.limit} OFFSET ${f.offset}`.execute(db),
    sql<{ n: number }>`SELECT count(*)::int8 AS n FROM invoices WHERE ${cond}`.execute(db),
  ]);
  return { invoices: rows.map(toAdminInvoice), total: Number(count.rows[0]?.n ?? 0) };
}

export type LedgerEntry = {
  id: number;
  txid: string;
  account: string;
  amountMsat: number;
  invoiceId: string | null;
  eventId: string | null;
  memo: string;
  createdAt: number;
};

/** One invoice and every ledger row that carries its id (its settlement), or undefined. */
export async function invoiceWithLedger(db: Db, id: string): Promise<{ invoice: AdminInvoice; ledger: LedgerEntry[] } | undefined> {
  const inv = await sql<InvoiceDbRow>`
    SELECT id, pubkey, product, amount_msat, status, created_at, expires_at, paid_at, event_id, bolt11, payment_hash, description
    FROM invoices WHERE id = ${id}`.execute(db);
  if (inv.rows.length === 0) return undefined;
  const { rows } = await sql<{
    id: number;
    txid: string;
    account: string;
    amount_msat: number;
    invoice_id: string | null;
    event_id: Uint8Array | null;
    memo: string;
    created_at: number;
  }>`
    SELECT id, txid, account, amount_msat, invoice_id, event_id, memo, created_at FROM ledger WHERE invoice_id = ${id} ORDER BY id`.execute(
    db,
  );
  return {
    invoice: toAdminInvoice(inv.rows[0]),
    ledger: rows.map((r) => ({
      id: Number(r.id),
      txid: r.txid,
      account: r.account,
      amountMsat: Number(r.amount_msat),
      invoiceId: r.invoice_id,
      eventId: r.event_id === null ? null : bufHex(r.event_id),
      memo: r.memo,
      createdAt: Number(r.created_at),
    })),
  };
}

export type Member = {
  pubkey: string;
  admitted: boolean;
  admittedUntil: number | null;
  balanceMsat: number;
  createdAt: number;
  updatedAt: number;
  /** created_at of the member's newest stored event (the event's own date), or null. */
  lastEventAt: number | null;
};

/**
 * Accounts (everyone who ever paid or was granted something), most recently changed first.
 * `range`: pubkeys between these two 32-byte bounds (a hex or npub prefix search).
 * `admittedAt`: only those admitted at that time.
 */
export async function listMembers(
  db: Db,
  o: { range?: [Buffer, Buffer]; admittedAt?: number; limit: number; offset: number },
): Promise<{ members: Member[]; total: number }> {
  const where = [sql`true`];
  if (o.range) where.push(sql`a.pubkey >= ${o.range[0]} AND a.pubkey <= ${o.range[1]}`);
  if (o.admittedAt !== undefined) where.push(sql`a.admitted AND (a.admitted_until IS NULL OR a.admitted_until > ${o.admittedAt})`);
  const cond = sql.join(where, sql` AND `);
  const [{ rows }, count] = await Promise.all([
    sql<{
      pubkey: Uint8Array;
      admitted: boolean;
      admitted_until: number | null;
      balance_msat: number;
      created_at: number;
      updated_at: number;
      last: number | null;
    }>`
      SELECT a.pubkey, a.admitted, a.admitted_until, a.balance_msat, a.created_at, a.updated_at,
        (SELECT max(e.created_at) FROM events e WHERE e.pubkey = a.pubkey) AS last
      FROM accounts a WHERE ${cond} ORDER BY a.updated_at DESC, a.pubkey LIMIT ${o.limit} OFFSET ${o.offset}`.execute(db),
    sql<{ n: number }>`SELECT count(*)::int8 AS n FROM accounts a WHERE ${cond}`.execute(db),
  ]);
  return {
    members: rows.map((r) => ({
      pubkey: bufHex(r.pubkey),
      admitted: r.admitted,
      admittedUntil: r.admitted_until === null ? null : Number(r.admitted_until),
      balanceMsat: Number(r.balance_msat),
      createdAt: Number(r.created_at),
      updatedAt: Number(r.updated_at),
      lastEventAt: r.last === null ? null : Number(r.last),
    })),
    total: Number(count.rows[0]?.n ?? 0),
  };
}

export type GrantAccount = { pubkey: string; admitted: boolean; admittedUntil: number | null; balanceMsat: number };
export type AdminGrant = { kind: 'admission' } | { kind: 'extend'; seconds: number } | { kind: 'credit'; amountMsat: number };

/**
 * An admin's grant, in the caller's transaction: the account is changed (admitted forever,
 * admission extended by `seconds` from max(now, its end), or `amountMsat` credited) and one
 * balanced ledger transaction (txid `grant:<random>`, memo naming the admin) is written:
 * (`grant:admin`, -value) against (`user:<hex>`, +credit) or (`revenue:admission` /
 * `revenue:subscription`, +value). `valueMsat` is what an admission or an extension is worth
 * at the relay's prices; 0 writes no ledger rows for it (the audit log still has the call).
 */
export async function adminGrant(
  trx: Transaction<Schema>,
  g: AdminGrant & { pubkey: string; admin: string; reason: string; valueMsat: number; now: number; txid: string },
): Promise<{ account: GrantAccount; ledger: { txid: string; rows: number } }> {
  const pk = hexBuf(g.pubkey);
  await sql`
    INSERT INTO accounts (pubkey, admitted, admitted_until, balance_msat, created_at, updated_at)
    VALUES (${pk}, false, NULL, 0, ${g.now}, ${g.now}) ON CONFLICT (pubkey) DO NOTHING`.execute(trx);
  const { rows: locked } = await sql<{ admitted: boolean; admitted_until: number | null; balance_msat: number }>`
    SELECT admitted, admitted_until, balance_msat FROM accounts WHERE pubkey = ${pk} FOR UPDATE`.execute(trx);
  const acc = locked[0];
  let admitted = acc.admitted;
  let until = acc.admitted_until === null ? null : Number(acc.admitted_until);
  let credit = 0;
  const entries: { account: string; amount: number }[] = [];
  if (g.kind === 'admission') {
    admitted = true;
    until = null;
    entries.push({ account: 'revenue:admission', amount: g.valueMsat });
  } else if (g.kind === 'extend') {
    // Admitted forever stays so; otherwise the end moves on from now or from its current end.
    if (!(acc.admitted && acc.admitted_until === null)) until = Math.max(g.now, until ?? 0) + g.seconds;
    admitted = true;
    entries.push({ account: 'revenue:subscription', amount: g.valueMsat });
  } else {
    credit = g.amountMsat;
    entries.push({ account: `user:${g.pubkey}`, amount: credit });
  }
  const { rows } = await sql<{ admitted: boolean; admitted_until: number | null; balance_msat: number }>`
    UPDATE accounts SET admitted = ${admitted}, admitted_until = ${until}, balance_msat = balance_msat + ${credit}, updated_at = ${g.now}
    WHERE pubkey = ${pk} RETURNING admitted, admitted_until, balance_msat`.execute(trx);
  const value = entries.reduce((s, e) => s + e.amount, 0);
  let written = 0;
  if (value > 0) {
    const memo = `admin ${g.admin}: ${g.kind === 'admission' ? 'grantadmission' : g.kind === 'extend' ? `extendadmission ${g.seconds}s` : 'grantcredit'} for ${g.pubkey}${g.reason ? ` (${g.reason.slice(0, 200)})` : ''}`;
    for (const e of [{ account: LEDGER_ADMIN_GRANTS, amount: -value }, ...entries]) {
      await sql`INSERT INTO ledger (txid, account, amount_msat, invoice_id, event_id, memo, created_at)
        VALUES (${g.txid}, ${e.account}, ${e.amount}, NULL, NULL, ${memo}, ${g.now})`.execute(trx);
      written++;
    }
  }
  const r = rows[0];
  return {
    account: {
      pubkey: g.pubkey,
      admitted: r.admitted,
      admittedUntil: r.admitted_until === null ? null : Number(r.admitted_until),
      balanceMsat: Number(r.balance_msat),
    },
    ledger: { txid: g.txid, rows: written },
  };
}

/** Audit rows, newest first: `limit` of them with id < `before` (paging), optionally of one method. */
export async function listAuditPage(db: Db, o: { limit: number; before?: number; method?: string }): Promise<AuditEntry[]> {
  const where = [sql`true`];
  if (o.before !== undefined) where.push(sql`id < ${o.before}`);
  if (o.method) where.push(sql`method = ${o.method}`);
  const { rows } = await sql<{ id: number; at: number; pubkey: string; method: string; params: unknown }>`
    SELECT id, at, pubkey, method, params FROM admin_audit WHERE ${sql.join(where, sql` AND `)} ORDER BY id DESC LIMIT ${o.limit}`.execute(
    db,
  );
  return rows.map((r) => ({
    id: Number(r.id),
    at: Number(r.at),
    pubkey: r.pubkey,
    method: r.method,
    params: typeof r.params === 'string' ? (JSON.parse(r.params) as unknown) : r.params,
  }));
}
