export { openDatabase, type Database, type OpenDatabaseOptions } from './connect.ts';
export {
  storeEvents,
  queryEvents,
  countEvents,
  purgeExpired,
  getEventById,
  MESSAGE_DUPLICATE,
  MESSAGE_DELETED,
  MESSAGE_STALE,
} from './events.ts';
export { migrations, migrationProvider } from './migrations/index.ts';
export { PGliteDialect, type PGliteDialectConfig } from './pglite-dialect.ts';
export type { Schema, EventsTable, EventTagsTable, DeletionsTable } from './schema.ts';
export type { NostrEvent, Filter, StoreItem, StoreOutcome, KindClass } from './types.ts';
export {
  getAccount,
  listAccounts,
  createInvoice,
  getInvoice,
  getInvoiceByHash,
  listPendingInvoices,
  expireInvoices,
  setZapReceipt,
  listZapsAwaitingReceipt,
  settleInvoice,
  debitForEvent,
  holdEvent,
  getHeldEvent,
  listHeldEvents,
  deleteHeldEvents,
  purgeHeldEvents,
  ledgerBalance,
  ledgerTotal,
  userAccount,
  isAdmitted,
  newInvoiceId,
  PaymentError,
  LEDGER_WALLET,
  REVENUE_ADMISSION,
  REVENUE_SUBSCRIPTION,
  REVENUE_EVENT,
  REVENUE_PUBLICATION,
  type AccountRow,
  type InvoiceRow,
  type NewInvoice,
  type HeldEvent,
  type HoldResult,
  type SettleOptions,
  type SettleResult,
} from './payments.ts';
export type {
  AccountsTable,
  InvoicesTable,
  LedgerTable,
  HeldEventsTable,
  InvoiceProduct,
  InvoiceStatus,
} from './schema.ts';
