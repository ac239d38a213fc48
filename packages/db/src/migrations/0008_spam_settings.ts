import { sql, type Kysely, type Migration } from 'kysely';

/**
 * Spam pricing at run time: its policy (allowances, trust, window, surge steps, cap, capacity)
 * is stored with the prices, so admins change it through NIP-86 like them and every replica
 * follows. NULL: not stored yet (a database from before this migration); the next start seeds it
 * from the environment, as the prices were on the first start.
 */
export const m0008_spam_settings: Migration = {
  async up(db: Kysely<any>): Promise<void> {
    await sql`ALTER TABLE price_settings ADD COLUMN spam_policy jsonb`.execute(db);
  },

  async down(db: Kysely<any>): Promise<void> {
    await sql`ALTER TABLE price_settings DROP COLUMN IF EXISTS spam_policy`.execute(db);
  },
};
