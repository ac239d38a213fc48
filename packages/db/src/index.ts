export { openDatabase, type Database, type OpenDatabaseOptions } from './connect.ts';
export {
  storeEvents,
  queryEvents,
  countEvents,
  purgeExpired,
  getEventById,
  kindClass,
  MESSAGE_DUPLICATE,
  MESSAGE_DELETED,
  MESSAGE_STALE,
} from './events.ts';
export { migrations, migrationProvider } from './migrations/index.ts';
export { PGliteDialect, type PGliteDialectConfig } from './pglite-dialect.ts';
export type { Schema, EventsTable, EventTagsTable, DeletionsTable } from './schema.ts';
export type { NostrEvent, Filter, StoreItem, StoreOutcome, KindClass } from './types.ts';
