import { sql, type Kysely, type Migration } from 'kysely';

/**
 * Bounds on held events beyond the per-pubkey one: fresh keys cost nothing, so the relay also
 * caps the bytes held per client address and in all. Each row records the address it came
 * from (a network key: the IPv4 address or the IPv6 /64) and its size in bytes.
 */
export const m0003_held_limits: Migration = {
  async up(db: Kysely<any>): Promise<void> {
    const statements = [
      sql`ALTER TABLE held_events ADD COLUMN ip text NOT NULL DEFAULT ''`,
      sql`ALTER TABLE held_events ADD COLUMN bytes integer NOT NULL DEFAULT 0 CHECK (bytes >= 0)`,
      sql`UPDATE held_events SET bytes = octet_length(raw)`,
      sql`CREATE INDEX held_events_ip_created_at_idx ON held_events (ip, created_at)`,
      sql`CREATE INDEX held_events_created_at_idx ON held_events (created_at)`,
    ];
    for (const s of statements) await s.execute(db);
  },

  async down(db: Kysely<any>): Promise<void> {
    await sql`DROP INDEX IF EXISTS held_events_created_at_idx`.execute(db);
    await sql`DROP INDEX IF EXISTS held_events_ip_created_at_idx`.execute(db);
    await sql`ALTER TABLE held_events DROP COLUMN IF EXISTS bytes`.execute(db);
    await sql`ALTER TABLE held_events DROP COLUMN IF EXISTS ip`.execute(db);
  },
};
