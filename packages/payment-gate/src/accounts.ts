import { ACCOUNTS_CHANNEL, type Bus } from '@paidrelay/bus';
import { listAccounts, type AccountRow, type Database } from '@paidrelay/db';
import { nowSeconds } from '@paidrelay/nostr';
import type { Account, History } from '@paidrelay/pricing';
import type { Logger } from 'pino';
import { z } from 'zod';

const REFRESH_MS = 30_000;

const msat = z.number().int().min(0).max(Number.MAX_SAFE_INTEGER);
const seconds = z.number().int().min(0).max(Number.MAX_SAFE_INTEGER);
/** An account row as the bus carries it (settlement's, or an admin grant's without paid history). */
const accountMessage = z.object({
  pubkey: z.string().regex(/^[0-9a-f]{64}$/),
  admitted: z.boolean(),
  admittedUntil: seconds.nullable(),
  balanceMsat: msat,
  createdAt: seconds.optional(),
  paidMsat: msat.optional(),
});

/** The account a bus message carries, or undefined when it is not one (it would be taken as true). */
export function accountOfMessage(
  msg: string,
): (Omit<AccountRow, 'paidMsat' | 'createdAt'> & { paidMsat?: number; createdAt?: number }) | undefined {
  try {
    const r = accountMessage.safeParse(JSON.parse(msg));
    return r.success ? r.data : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Accounts as this replica knows them: loaded at start, kept fresh by the bus (a grant on
 * any admission replica reaches here within a second), and re-read periodically as a backstop.
 */
export class AccountCache {
  private accounts = new Map<string, Account & { createdAt: number; paidMsat: number; version: number }>();
  /** msat taken by this replica's writes that passed the gate and are not committed yet. */
  private reserved = new Map<string, number>();
  private version = 0;
  private updatedAt = 0;
  private timer?: NodeJS.Timeout;
  private soon?: NodeJS.Timeout;

  constructor(
    private readonly db: Database,
    private readonly log: Logger,
  ) {}

  async start(bus: Bus): Promise<void> {
    await bus.subscribe(ACCOUNTS_CHANNEL, (msg) => {
      const row = accountOfMessage(msg);
      if (row) this.put(row);
      else this.log.warn({ message: msg.slice(0, 200) }, 'accounts: ignoring a bus message that is not an account');
    });
    // A grant the bus may have lost is read from the database now, not at the next periodic refresh.
    bus.onLoss(() => this.refreshSoon());
    await this.refresh();
    this.timer = setInterval(() => void this.refresh(), REFRESH_MS);
    this.timer.unref();
  }

  /** One refresh at a time, at most one a second (losses can come with every message of an older replica). */
  private refreshSoon(): void {
    if (this.soon !== undefined) return;
    this.soon = setTimeout(() => {
      void this.refresh().finally(() => {
        this.soon = setTimeout(() => (this.soon = undefined), 1_000);
        this.soon.unref();
      });
    }, 0);
    this.soon.unref();
  }

  private async refresh(): Promise<void> {
    try {
      const since = this.updatedAt;
      this.updatedAt = nowSeconds() - 5;
      for (const row of await listAccounts(this.db.kysely, since > 0 ? { sinceUpdatedAt: since } : undefined)) this.put(row);
    } catch (err) {
      this.log.warn({ err }, 'accounts: refresh failed, keeping the cache');
    }
  }

  /** A row from the database or the bus; one without paid history (an admin's grant) keeps the one known. */
  put(row: Omit<AccountRow, 'paidMsat' | 'createdAt'> & { paidMsat?: number; createdAt?: number }): void {
    const known = this.accounts.get(row.pubkey);
    this.accounts.set(row.pubkey, {
      admitted: row.admitted,
      admittedUntil: row.admittedUntil,
      balanceMsat: row.balanceMsat,
      createdAt: row.createdAt ?? known?.createdAt ?? nowSeconds(),
      paidMsat: row.paidMsat ?? known?.paidMsat ?? 0,
      version: ++this.version,
    });
  }

  get(pubkey: string): Account | undefined {
    return this.accounts.get(pubkey);
  }

  /** When the account was made (its age, for the spam pricing's trust), if there is one. */
  createdAt(pubkey: string): number | null {
    return this.accounts.get(pubkey)?.createdAt ?? null;
  }

  /** The key's history for the spam pricing's trust: its account's age and what it has paid in all. */
  history(pubkey: string): History {
    const a = this.accounts.get(pubkey);
    return { admittedSince: a?.createdAt ?? null, paidMsat: a?.paidMsat ?? 0 };
  }

  /** The account as the gate must see it: its balance less what in-flight writes have reserved. */
  available(pubkey: string): Account | undefined {
    const a = this.accounts.get(pubkey);
    const r = this.reserved.get(pubkey) ?? 0;
    return a && (r === 0 ? a : { ...a, balanceMsat: Math.max(0, a.balanceMsat - r) });
  }

  /**
   * Takes `amountMsat` from the available balance for one write (synchronous, so reservations
   * of one key are serialised). The returned function gives it back once the write is over,
   * lowering the cached balance only if the debit was committed and no fresher row has arrived
   * since (a fresher row already counts it). Nothing is changed inside a transaction: an
   * aborted one leaves the cache as it was.
   */
  reserve(pubkey: string, amountMsat: number): (committed: boolean) => void {
    this.reserved.set(pubkey, (this.reserved.get(pubkey) ?? 0) + amountMsat);
    const version = this.accounts.get(pubkey)?.version;
    let done = false;
    return (committed) => {
      if (done) return;
      done = true;
      const left = (this.reserved.get(pubkey) ?? 0) - amountMsat;
      if (left > 0) this.reserved.set(pubkey, left);
      else this.reserved.delete(pubkey);
      const a = this.accounts.get(pubkey);
      if (committed && a && a.version === version) a.balanceMsat = Math.max(0, a.balanceMsat - amountMsat);
    };
  }

  close(): void {
    clearInterval(this.timer);
    clearTimeout(this.soon);
  }
}
