import type { Kysely, Transaction } from 'kysely';
import type { Schema } from './schema.ts';

/** Transactions and what a failed statement means for its caller; pg and PGlite errors alike. */

/** A deadlock or a serialization failure: the same transaction may succeed if run again. */
export function isRetryable(err: unknown): boolean {
  const code = (err as { code?: unknown } | null)?.code;
  return code === '40P01' || code === '40001';
}

const CONNECTION_MESSAGES = [
  'Connection terminated', // ...unexpectedly, ...due to connection timeout
  'Query read timeout',
  'timeout exceeded when trying to connect',
  'not queryable', // Client has encountered a connection error and is not queryable
];

/**
 * The database cannot be reached (as opposed to one statement failing): a socket error, pg's
 * own client-side timeouts, or a server-side connection class (08xxx, shutting down, too many
 * connections). Not a statement timeout (57014): that is one slow statement.
 */
export function isConnectionError(err: unknown): boolean {
  const e = err as { code?: unknown; message?: unknown } | null;
  const code = typeof e?.code === 'string' ? e.code : '';
  if (/^E[A-Z]+$/.test(code)) return true; // ECONNREFUSED, ECONNRESET, ETIMEDOUT, EPIPE, ...
  if (code.startsWith('08') || ['57P01', '57P02', '57P03', '53300'].includes(code)) return true;
  const message = typeof e?.message === 'string' ? e.message : '';
  return CONNECTION_MESSAGES.some((m) => message.includes(m));
}

/**
 * Runs `fn` in the caller's transaction (the caller then owns commit, rollback and retries), or
 * in a new one, run again (up to four times in all) on a deadlock or serialization failure and
 * on the error codes in `alsoRetry`. The one retry loop of the database layer.
 */
export async function atomically<T>(db: Kysely<Schema>, fn: (trx: Kysely<Schema>) => Promise<T>, alsoRetry: string[] = []): Promise<T> {
  if (db.isTransaction) return fn(db);
  for (let attempt = 1; ; attempt++) {
    try {
      return await db.transaction().execute((trx: Transaction<Schema>) => fn(trx));
    } catch (err) {
      const code = (err as { code?: unknown } | null)?.code;
      if (attempt >= 4 || !(isRetryable(err) || (typeof code === 'string' && alsoRetry.includes(code)))) throw err;
    }
  }
}
