import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sql } from 'kysely';
import pg from 'pg';
import { finalizeEvent, type EventTemplate } from 'nostr-tools/pure';
import { NIP47_KINDS, type NostrEvent } from '@paidrelay/nostr';
import { networkKey } from '../src/limits.ts';
import { backends, newKey, plain, RawClient, type TestRelay, startTestRelay, until } from './harness.ts';

const now = () => Math.floor(Date.now() / 1000);
const signWith = (sk: Uint8Array, t: Partial<EventTemplate>): NostrEvent =>
  plain(finalizeEvent({ kind: 1, created_at: now(), tags: [], content: '', ...t }, sk)) as NostrEvent;

/** A receipt of the shape NIP-57 appendix E gives, signed by `sk` (its zap request by another key). */
function zapReceipt(sk: Uint8Array, recipient: string, padding = 0): NostrEvent {
  const zapper = newKey();
  const request = signWith(zapper.sk, {
    kind: 9734,
    tags: [
      ['p', recipient],
      ['amount', '21000'],
      ['relays', 'ws://localhost'],
    ],
    content: '',
  });
  return signWith(sk, {
    kind: 9735,
    tags: [
      ['p', recipient],
      ['bolt11', 'lnbcrt210n1pjexample'],
      ['description', JSON.stringify(request)],
      ['padding', 'x'.repeat(padding)],
    ],
  });
}

async function heldBytes(relay: TestRelay, ip?: string): Promise<number> {
  let q = relay.ctx.db.kysely.selectFrom('held_events').select((eb) => eb.fn.coalesce(eb.fn.sum<number>('bytes'), eb.lit(0)).as('b'));
  if (ip !== undefined) q = q.where('ip', '=', ip);
  return Number((await q.executeTakeFirstOrThrow()).b);
}

async function metric(relay: TestRelay, name: string): Promise<number> {
  const body = await (await fetch(`http://127.0.0.1:${relay.port}/metrics`)).text();
  const line = body.split('\n').find((l) => l.startsWith(name + ' '));
  return Number(line?.split(' ')[1]);
}

describe.each(backends())('free paths of a paid relay are not free for everyone (%s)', (backend) => {
  let relay: TestRelay;
  const trustedZapServer = newKey();
  const wallet = newKey();

  beforeAll(async () => {
    relay = await startTestRelay(backend, {
      PRICE_ADMISSION_MSAT: '21000',
      ZAP_RECEIPT_PUBKEYS: trustedZapServer.pubkey,
      WALLET_PUBKEYS: wallet.pubkey,
      HELD_BYTES_PER_IP: String(40 * 1024),
      HELD_EVENTS_MAX_TOTAL_BYTES: String(64 * 1024),
    });
  });
  afterAll(async () => {
    await relay?.stop();
  });

  it('refuses zap receipts and wallet kinds from keys that never paid', async () => {
    const c = await RawClient.open(relay.url);
    const stranger = newKey();
    const receipt = zapReceipt(stranger.sk, stranger.pubkey, 50_000);
    c.send(['EVENT', receipt]);
    const ok = await c.ok(receipt.id);
    expect(ok[2]).toBe(false);
    expect(String(ok[3])).toMatch(/^blocked: payment required: /);
    for (const kind of NIP47_KINDS) {
      const ev = signWith(stranger.sk, { kind, tags: [['p', newKey().pubkey]], content: 'y'.repeat(20_000) });
      c.send(['EVENT', ev]);
      const r = await c.ok(ev.id);
      expect(r[2]).toBe(false);
      expect(String(r[3])).toMatch(/^blocked: payment required: /);
    }
    const stored = await relay.ctx.db.kysely
      .selectFrom('events')
      .select('kind')
      .where('kind', 'in', [9735, ...NIP47_KINDS])
      .execute();
    expect(stored).toEqual([]);
    c.close();
  });

  it("accepts well-formed receipts from the relay's key and trusted LNURL servers, capped in size", async () => {
    const c = await RawClient.open(relay.url);
    const recipient = newKey().pubkey;
    for (const sk of [relay.ctx.key.secretKey, trustedZapServer.sk]) {
      const r = zapReceipt(sk, recipient);
      c.send(['EVENT', r]);
      expect((await c.ok(r.id))[2]).toBe(true);
    }
    const big = zapReceipt(trustedZapServer.sk, recipient, 17_000);
    c.send(['EVENT', big]);
    expect((await c.ok(big.id))[2]).toBe(false);
    const malformed = signWith(trustedZapServer.sk, {
      kind: 9735,
      tags: [
        ['p', recipient],
        ['description', '{"kind":1}'],
      ],
    });
    c.send(['EVENT', malformed]);
    expect((await c.ok(malformed.id))[2]).toBe(false);
    c.close();
  });

  it("carries the configured wallet keys' NIP-47 traffic free", async () => {
    const c = await RawClient.open(relay.url);
    const info = signWith(wallet.sk, { kind: 13194, content: 'pay_invoice make_invoice' });
    const response = signWith(wallet.sk, { kind: 23195, tags: [['p', newKey().pubkey]], content: 'encrypted' });
    for (const ev of [info, response]) {
      c.send(['EVENT', ev]);
      expect((await c.ok(ev.id))[2]).toBe(true);
    }
    c.close();
  });

  it('bounds refused events held per address and in all, and counts them in /metrics', async () => {
    const c = await RawClient.open(relay.url);
    const note = 'n'.repeat(2000);
    // 60 fresh keys, one connection: 120 KB refused, far more than either bound.
    for (let i = 0; i < 60; i++) {
      const k = newKey();
      const ev = signWith(k.sk, { content: note });
      c.send(['EVENT', ev]);
      expect((await c.ok(ev.id))[2]).toBe(false);
    }
    await relay.purge(now()); // writes what is still queued
    const rows = await relay.ctx.db.kysely.selectFrom('held_events').select('ip').distinct().execute();
    expect(rows.length).toBe(1);
    const ip = rows[0].ip;
    expect(ip).toBe(networkKey('127.0.0.1'));
    expect(await heldBytes(relay, ip)).toBeLessThanOrEqual(40 * 1024);
    expect(await heldBytes(relay, ip)).toBeGreaterThan(30 * 1024);

    // Another address (written straight into the table, as another replica would) fills the
    // rest: the global trim keeps the newest 64 KiB, whoever sent them.
    await sql`INSERT INTO held_events (event_id, pubkey, kind, raw, amount_msat, created_at, expires_at, ip, bytes)
      SELECT decode(md5(g::text) || md5((g + 1000)::text), 'hex'), decode(md5('pk') || md5('pk2'), 'hex'), 1, repeat('o', 2000), 21000, ${now() - 60}, ${now() + 3600}, '192.0.2.9', 2000
      FROM generate_series(1, 30) g`.execute(relay.ctx.db.kysely);
    expect(await heldBytes(relay)).toBeGreaterThan(64 * 1024);
    await relay.purge(now());
    const total = await heldBytes(relay);
    expect(total).toBeLessThanOrEqual(64 * 1024);
    // The older rows (the other address's, a minute older) went first.
    expect(await heldBytes(relay, '192.0.2.9')).toBeLessThan(60_000);
    expect(await heldBytes(relay, ip)).toBeGreaterThan(30 * 1024);
    expect(await metric(relay, 'relay_held_events_bytes')).toBe(total);
    expect(await metric(relay, 'relay_held_events')).toBeGreaterThan(0);
    c.close();
  });

  it.runIf(backend === 'postgres')(
    'a purge during a trim already running trims again after it: rows written meanwhile are counted',
    async () => {
      const fill = (from: number, rows: number, ip: string, age: number) =>
        sql`INSERT INTO held_events (event_id, pubkey, kind, raw, amount_msat, created_at, expires_at, ip, bytes)
        SELECT decode(md5(g::text || ${ip}) || md5((g + 1000)::text || ${ip}), 'hex'), decode(md5('pk') || md5('pk3'), 'hex'), 1, repeat('o', 2000), 21000, ${now() - age}, ${now() + 3600}, ${ip}, 2000
        FROM generate_series(${from}::int4, ${from + rows - 1}::int4) g`.execute(relay.ctx.db.kysely);
      await fill(1, 40, '192.0.2.10', 120); // 80 KB, older than all else: the next trim deletes some of them
      // Another session holds the oldest, so the purge's trim waits on it with the table as it was.
      const blocker = new pg.Client({ connectionString: relay.databaseUrl });
      blocker.on('error', () => {});
      await blocker.connect();
      try {
        await blocker.query('BEGIN');
        await blocker.query(`SELECT 1 FROM held_events ORDER BY created_at, event_id LIMIT 1 FOR UPDATE`);
        const first = relay.purge(now());
        // Asked outside the blocker's transaction: within one, pg_stat_activity is read once.
        await until(async () => {
          const r =
            await sql`SELECT 1 FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock' AND query LIKE '%DELETE FROM held_events%'`.execute(
              relay.ctx.db.kysely,
            );
          return r.rows.length;
        });
        await fill(100, 30, '192.0.2.11', 100); // 60 KB more while that trim waits: it cannot see them
        const second = relay.purge(now());
        await blocker.query('ROLLBACK');
        await Promise.all([first, second]);
      } finally {
        await blocker.end();
      }
      expect(await heldBytes(relay)).toBeLessThanOrEqual(64 * 1024);
      expect(await metric(relay, 'relay_held_events_bytes')).toBe(await heldBytes(relay));
    },
  );
});

describe('networkKey', () => {
  it('keeps IPv4, unwraps IPv4-mapped IPv6, cuts IPv6 to its /64', () => {
    expect(networkKey('203.0.113.5')).toBe('203.0.113.5');
    expect(networkKey('::ffff:203.0.113.5')).toBe('203.0.113.5');
    expect(networkKey('0000:0000:0000:0000:0000:ffff:cb00:7105')).toBe('203.0.113.5');
    expect(networkKey('2001:db8:1:2:3:4:5:6')).toBe('2001:db8:1:2:0:0:0:0/64');
    expect(networkKey('2001:db8:1:2::9')).toBe(networkKey('2001:db8:1:2:ffff::1'));
    expect(networkKey('2001:db8:1:3::9')).not.toBe(networkKey('2001:db8:1:2::9'));
    expect(networkKey('2001:db8:1:2ff::9', 56)).toBe(networkKey('2001:db8:1:200::1', 56));
    expect(networkKey('::1')).toBe('0:0:0:0:0:0:0:0/64');
    expect(networkKey('unknown')).toBe('unknown');
  });
});
