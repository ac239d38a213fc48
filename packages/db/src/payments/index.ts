/**
 * The money side of the database: accounts, invoices, the double-entry ledger, held events.
 *
 * Units: amounts are integer millisatoshis (JS numbers, safe integers, never negative in the
 * API); times are unix seconds. Pubkeys, event ids are lowercase hex in the API, bytea in the DB.
 *
 * Every function takes a `Kysely<Schema>` first. When it is a transaction (`db.isTransaction`)
 * the function joins it and the caller owns commit and rollback (validation happens before any
 * write, so a thrown validation error leaves the caller's transaction untouched); otherwise the
 * functions that write more than one row open their own transaction, retried a few times on
 * deadlock/serialization failures.
 *
 * One file per job: accounts, invoices, settlement, debit (publication prices), held events and
 * the ledger (its conventions are documented in ledger.ts). This is the public list.
 */
export { getAccount, listAccounts, isAdmitted, type AccountRow } from './accounts.ts';
export {
  createInvoice,
  getInvoice,
  getInvoiceByHash,
  listPendingInvoices,
  expireInvoices,
  setZapReceipt,
  newInvoiceId,
  type InvoiceRow,
  type NewInvoice,
} from './invoices.ts';
export { settleInvoice, PaymentError, type SettleOptions, type SettleResult } from './settlement.ts';
export { debitForEvent, debitEvents, affordableCharges, type DebitItem, type DebitOutcome } from './debit.ts';
export {
  holdEvent,
  holdEvents,
  getHeldEvent,
  listHeldEvents,
  deleteHeldEvents,
  purgeHeldEvents,
  trimHeldEvents,
  heldEventStats,
  type HeldEvent,
  type HoldResult,
  type HoldItem,
  type HoldOptions,
  type HeldStats,
} from './held-events.ts';
export {
  ledgerBalance,
  ledgerTotal,
  userAccount,
  LEDGER_WALLET,
  REVENUE_ADMISSION,
  REVENUE_SUBSCRIPTION,
  REVENUE_EVENT,
  REVENUE_PUBLICATION,
} from './ledger.ts';
