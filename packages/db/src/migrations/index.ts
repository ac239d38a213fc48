import type { Migration, MigrationProvider } from 'kysely';
import { m0001_events } from './0001_events.ts';
import { m0002_payments } from './0002_payments.ts';
import { m0003_held_limits } from './0003_held_limits.ts';
import { m0004_admin } from './0004_admin.ts';

/**
 * Every migration of the shared schema, in order. Append new ones at the end with the next
 * number (`0002_accounts`, ...); never rename or edit one that has shipped.
 */
export const migrations: Record<string, Migration> = {
  '0001_events': m0001_events,
  '0002_payments': m0002_payments,
  '0003_held_limits': m0003_held_limits,
  '0004_admin': m0004_admin,
};

/** A static provider (no folder scan), so it works the same under tsx, vitest and bundlers. */
export const migrationProvider: MigrationProvider = {
  async getMigrations() {
    return migrations;
  },
};
