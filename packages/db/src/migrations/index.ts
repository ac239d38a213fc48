import type { Migration, MigrationProvider } from 'kysely';
import { m0001_events } from './0001_events.ts';
import { m0002_payments } from './0002_payments.ts';
import { m0003_held_limits } from './0003_held_limits.ts';
import { m0004_admin } from './0004_admin.ts';
import { m0005_settings } from './0005_settings.ts';
import { m0006_read_indexes } from './0006_read_indexes.ts';
import { m0007_paid_history } from './0007_paid_history.ts';
import { m0008_spam_settings } from './0008_spam_settings.ts';

/**
 * A migration that runs outside a transaction (`online`: CREATE INDEX CONCURRENTLY on a table
 * that keeps taking writes); it must be safe to run again after an interruption.
 */
export type OnlineMigration = Migration & { online?: true };

/**
 * Every migration of the shared schema, in order. Append new ones at the end with the next
 * number (`0002_accounts`, ...); never rename or edit one that has shipped.
 */
export const migrations: Record<string, OnlineMigration> = {
  '0001_events': m0001_events,
  '0002_payments': m0002_payments,
  '0003_held_limits': m0003_held_limits,
  '0004_admin': m0004_admin,
  '0005_settings': m0005_settings,
  '0006_read_indexes': m0006_read_indexes,
  '0007_paid_history': m0007_paid_history,
  '0008_spam_settings': m0008_spam_settings,
};

/** A static provider (no folder scan), so it works the same under tsx, vitest and bundlers. */
export const migrationProvider: MigrationProvider = {
  async getMigrations() {
    return migrations;
  },
};
