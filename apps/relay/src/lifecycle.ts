import { purgeExpired } from '@paidrelay/db';
import type { RelayContext } from './context.ts';

/**
 * Readiness: not while closing, and only when the database answers (db.isReady(): one probe in
 * flight at most, false after 2 s of silence, cached 1 s).
 */
export function readiness(ctx: RelayContext, closing: () => boolean): () => Promise<boolean> {
  return async () => !closing() && (await ctx.db.isReady());
}

export type PurgeTimer = {
  /** One run of the timer's work now (expired events, then the purge hooks), as the timer does it. */
  once(now: number): Promise<void>;
  stop(): void;
};

/** Every PURGE_INTERVAL_SECONDS: expired events (NIP-40), then what each purge hook drops. */
export function startPurgeTimer(ctx: RelayContext, hooks: readonly ((now: number) => Promise<number>)[]): PurgeTimer {
  const once = async (now: number): Promise<void> => {
    const [expired, ...byHooks] = await Promise.all([purgeExpired(ctx.db.kysely, now), ...hooks.map((p) => p(now))]);
    const other = byHooks.reduce((a, b) => a + b, 0);
    if (expired > 0 || other > 0) ctx.log.info({ purged: expired, purgedByHooks: other }, 'expired events purged');
  };
  const timer = setInterval(() => {
    once(Math.floor(Date.now() / 1000)).catch((err) => ctx.log.warn({ err }, 'purge failed'));
  }, ctx.config.PURGE_INTERVAL_SECONDS * 1000);
  timer.unref();
  return { once, stop: () => clearInterval(timer) };
}
