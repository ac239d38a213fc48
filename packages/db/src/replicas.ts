import { sql, type Kysely } from 'kysely';
import type { Schema } from './schema.ts';
import { isConnectionError } from './transaction.ts';

/**
 * Reads that may be served by Postgres streaming replicas (READ_DATABASE_URL): the relay's REQ
 * and COUNT. Replicas take turns; one that cannot be reached is left out and the read is run on
 * the primary instead (the caller sees no error), and it is probed every PROBE_MS until it
 * answers again. A standby may also cancel a query that conflicts with replay (40001): that
 * read too is run again on the primary. A replica lags its primary a little, so nothing that
 * must see its own writes reads here.
 */

/** How often a replica that failed is asked `select 1` again. */
export const PROBE_MS = 1000;

/** What a replica says when it cancels a query that conflicts with the WAL it replays. */
const RECOVERY_CONFLICT = '40001';

/** A server reads may go to: its connections, and those for generic plans (`read(fn, { generic: true })`). */
export type ReadTarget = { kysely: Kysely<Schema>; generic?: Kysely<Schema> };
export type Replica = ReadTarget & { name: string };

export type ReplicaEvents = {
  /** A replica failed (reads go to the others or the primary), or answers again. */
  onReplicaChange?: (name: string, healthy: boolean, err?: Error) => void;
};

export type ReadRouter = {
  /** `generic`: on the chosen server's connections for generic plans, where it has them. */
  read<T>(fn: (db: Kysely<Schema>) => Promise<T>, opts?: { generic?: boolean }): Promise<T>;
  /** Each replica and whether reads go to it now. */
  replicas(): { name: string; healthy: boolean }[];
  close(): Promise<void>;
};

/** A replica's URL without its password, to name it in logs. */
export function replicaName(url: string): string {
  try {
    const u = new URL(url);
    u.password = '';
    return u.toString();
  } catch {
    return 'replica';
  }
}

export function readRouter(primary: ReadTarget, replicas: Replica[], events: ReplicaEvents = {}): ReadRouter {
  const state = replicas.map((r) => ({ ...r, healthy: true, probe: undefined as NodeJS.Timeout | undefined }));
  let next = 0;
  let closed = false;

  const report = (name: string, healthy: boolean, err?: Error) => {
    try {
      events.onReplicaChange?.(name, healthy, err);
    } catch {
      // a failing logger must not fail the read
    }
  };

  const markDown = (r: (typeof state)[number], err: Error) => {
    if (!r.healthy || closed) return;
    r.healthy = false;
    report(r.name, false, err);
    const probe = async () => {
      r.probe = undefined;
      if (closed) return;
      try {
        await sql`select 1`.execute(r.kysely);
        r.healthy = true;
        report(r.name, true);
      } catch {
        if (!closed) r.probe = setTimeout(probe, PROBE_MS).unref();
      }
    };
    r.probe = setTimeout(probe, PROBE_MS).unref();
  };

  const pick = () => {
    for (let i = 0; i < state.length; i++) {
      const r = state[(next + i) % state.length];
      if (r.healthy) {
        next = (next + i + 1) % state.length;
        return r;
      }
    }
    return undefined;
  };

  return {
    async read(fn, opts) {
      const on = (t: ReadTarget) => (opts?.generic && t.generic) || t.kysely;
      const r = pick();
      if (!r) return fn(on(primary));
      try {
        return await fn(on(r));
      } catch (err) {
        const conflict = (err as { code?: unknown } | null)?.code === RECOVERY_CONFLICT;
        if (!conflict && !isConnectionError(err)) throw err;
        if (!conflict) markDown(r, err as Error);
        return fn(on(primary));
      }
    },
    replicas: () => state.map((r) => ({ name: r.name, healthy: r.healthy })),
    async close() {
      closed = true;
      for (const r of state) clearTimeout(r.probe);
      await Promise.all([primary.generic?.destroy(), ...state.flatMap((r) => [r.kysely.destroy(), r.generic?.destroy()])]);
    },
  };
}
