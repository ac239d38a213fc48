export { databaseOptions, openDatabase, type Database, type DatabaseSettings, type OpenDatabaseOptions } from './connect.ts';
export { storeEvents, purgeExpired, MESSAGE_DUPLICATE, MESSAGE_DELETED, MESSAGE_STALE } from './events-write.ts';
export { queryEvents, countEvents, getEventById, type KindRestriction, type QueryFilter } from './events-query.ts';
export {
  adminTransaction,
  spendAuthorization,
  addModeration,
  removeModeration,
  listModeration,
  setRelaySetting,
  relaySettings,
  recordAudit,
  listAudit,
  deleteEventsById,
  reportedEvents,
  LEDGER_ADMIN_GRANTS,
  revenueByBucket,
  ledgerSummary,
  storedEventCount,
  listInvoicesAdmin,
  invoiceWithLedger,
  listMembers,
  adminGrant,
  listAuditPage,
  type RevenuePoint,
  type AdminInvoice,
  type InvoiceFilter,
  type LedgerEntry,
  type Member,
  type GrantAccount,
  type AdminGrant,
  type ModerationList,
  type ModerationEntry,
  type AuditEntry,
  type ReportedEvent,
} from './admin.ts';
export {
  getPriceSettings,
  seedPriceSettings,
  updatePriceSettings,
  listPriceChanges,
  priceSettingsOf,
  type PriceSettings,
  type PriceSettingsChange,
  type SpamSettings,
  type PriceChange,
  type StoredPrices,
} from './settings.ts';
export { migrations, migrationProvider } from './migrations/index.ts';
export { PGliteDialect, type PGliteDialectConfig } from './pglite-dialect.ts';
export type { Schema, EventsTable, EventTagsTable, DeletionsTable } from './schema.ts';
export type { NostrEvent, Filter, StoreItem, StoreOutcome, KindClass } from './types.ts';
export * from './payments/index.ts';
export type {
  AccountsTable,
  InvoicesTable,
  LedgerTable,
  HeldEventsTable,
  ModerationTable,
  RelaySettingsTable,
  AdminAuditTable,
  AdminAuthUsedTable,
  InvoiceProduct,
  InvoiceStatus,
} from './schema.ts';
export { atomically, isConnectionError, isRetryable } from './transaction.ts';
