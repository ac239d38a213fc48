import { sql, type Kysely, type Migration } from 'kysely';

/**
 * NIP-86 relay management: the moderation lists (banned and allowed pubkeys, banned and
 * allowed events, allowed kinds, blocked addresses) in one table keyed by list name, the
 * relay's NIP-11 texts an admin changed, an audit row for every change, and the NIP-98
 * authorizations already used (one use each, by signature; rows expire after two minutes).
 */
export const m0004_admin: Migration = {
  async up(db: Kysely<any>): Promise<void> {
    const statements = [
      sql`CREATE TABLE moderation (
        list text NOT NULL CHECK (list IN ('banned_pubkey', 'allowed_pubkey', 'banned_event', 'allowed_event', 'allowed_kind', 'blocked_ip')),
        value text NOT NULL,
        reason text NOT NULL DEFAULT '',
        created_at bigint NOT NULL,
        created_by text NOT NULL,
        PRIMARY KEY (list, value)
      )`,
      sql`CREATE TABLE relay_settings (
        key text PRIMARY KEY,
        value text NOT NULL,
        updated_at bigint NOT NULL,
        updated_by text NOT NULL
      )`,
      sql`CREATE TABLE admin_audit (
        id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        at bigint NOT NULL,
        pubkey text NOT NULL,
        method text NOT NULL,
        params jsonb NOT NULL
      )`,
      sql`CREATE INDEX admin_audit_at_idx ON admin_audit (at DESC)`,
      sql`CREATE TABLE admin_auth_used (
        sig text PRIMARY KEY,
        expires_at bigint NOT NULL
      )`,
      sql`CREATE INDEX admin_auth_used_expires_at_idx ON admin_auth_used (expires_at)`,
    ];
    for (const s of statements) await s.execute(db);
  },

  async down(db: Kysely<any>): Promise<void> {
    await sql`DROP TABLE IF EXISTS admin_auth_used`.execute(db);
    await sql`DROP TABLE IF EXISTS admin_audit`.execute(db);
    await sql`DROP TABLE IF EXISTS relay_settings`.execute(db);
    await sql`DROP TABLE IF EXISTS moderation`.execute(db);
  },
};
