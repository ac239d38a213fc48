import { sql, type Kysely, type Migration } from 'kysely';

/**
 * Prices at run time: one row of the prices every replica enforces (seeded from the
 * environment by the first process to start, then changed by admins through NIP-86), and a
 * row for every change of it (who, when, the prices before and after).
 */
export const m0005_settings: Migration = {
  async up(db: Kysely<any>): Promise<void> {
    const msat = (name: string) => sql.raw(`${name} bigint NOT NULL CHECK (${name} >= 0)`);
    const statements = [
      sql`CREATE TABLE price_settings (
        id smallint PRIMARY KEY CHECK (id = 1),
        ${msat('admission_msat')},
        ${msat('subscription_msat')},
        subscription_period_seconds bigint NOT NULL CHECK (subscription_period_seconds >= 1),
        ${msat('publication_msat')},
        publication_kinds jsonb NOT NULL,
        ${msat('publication_per_kb_msat')},
        ${msat('event_msat')},
        updated_at bigint NOT NULL,
        updated_by text
      )`,
      sql`CREATE TABLE price_changes (
        id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        at bigint NOT NULL,
        pubkey text,
        old jsonb,
        new jsonb NOT NULL
      )`,
    ];
    for (const s of statements) await s.execute(db);
  },

  async down(db: Kysely<any>): Promise<void> {
    await sql`DROP TABLE IF EXISTS price_changes`.execute(db);
    await sql`DROP TABLE IF EXISTS price_settings`.execute(db);
  },
};
