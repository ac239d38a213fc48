import { ACCOUNTS_CHANNEL, type Bus } from '@paidrelay/bus';
import type { Config } from '@paidrelay/config';
import { debitForEvent, holdEvent, listAccounts, type AccountRow, type Database } from '@paidrelay/db';
import type { NostrEvent } from '@paidrelay/nostr';
import { gate, heldEventPrice, type Account, type Pricing } from '@paidrelay/pricing';
import type { Logger } from 'pino';
import type { PaymentGate } from './gate.ts';

const now = () => Math.floor(Date.now() / 1000);
const REFRESH_MS = 30_000;

/**
 * Accounts as this replica knows them: loaded at start, kept fresh by the bus (a grant on
 * any admission replica reaches here within a second), and re-read periodically as a backstop.
 */
export class AccountCache {
  private accounts = new Map<string, Account>();
  private updatedAt = 0;
  private timer?: NodeJS.Timeout;

  constructor(
    private readonly db: Database,
    private readonly log: Logger,
  ) {}

  async start(bus: Bus): Promise<void> {
    await bus.subscribe(ACCOUNTS_CHANNEL, (msg) => {
      try {
        this.put(JSON.parse(msg) as AccountRow);
      } catch (err) {
        this.log.warn({ err: (err as Error).message }, 'accounts: bad bus message');
      }
    });
    await this.refresh();
    this.timer = setInterval(() => void this.refresh(), REFRESH_MS);
    this.timer.unref();
  }

  private async refresh(): Promise<void> {
    try {
      const since = this.updatedAt;
      this.updatedAt = now() - 5;
      for (const row of await listAccounts(this.db.kysely, since > 0 ? { sinceUpdatedAt: since } : undefined)) this.put(row);
    } catch (err) {
      this.log.warn({ err: (err as Error).message }, 'accounts: refresh failed, keeping the cache');
    }
  }

  put(row: AccountRow): void {
    this.accounts.set(row.pubkey, { admitted: row.admitted, admittedUntil: row.admittedUntil, balanceMsat: row.balanceMsat });
  }

  get(pubkey: string): Account | undefined {
    return this.accounts.get(pubkey);
  }

  debited(pubkey: string, amountMsat: number): void {
    const a = this.accounts.get(pubkey);
    if (a) a.balanceMsat = Math.max(0, a.balanceMsat - amountMsat);
  }

  close(): void {
    clearInterval(this.timer);
  }
}

/** The payment gate of a paid relay: pricing from the shared config, accounts from the cache. */
export async function createPaymentGate(
  config: Config,
  pricing: Pricing,
  db: Database,
  bus: Bus,
  log: Logger,
): Promise<PaymentGate> {
  const cache = new AccountCache(db, log);
  await cache.start(bus);
  return {
    check(ev: NostrEvent, json: string) {
      return gate(pricing, ev, Buffer.byteLength(json), cache.get(ev.pubkey), now());
    },
    async hold(ev: NostrEvent, json: string) {
      try {
        await holdEvent(
          db.kysely,
          { id: ev.id, pubkey: ev.pubkey, kind: ev.kind, raw: json, amountMsat: heldEventPrice(pricing, ev.kind, Buffer.byteLength(json)) },
          {
            now: now(),
            ttlSeconds: config.HELD_EVENT_TTL_SECONDS,
            maxPerPubkey: config.HELD_EVENTS_PER_PUBKEY,
            maxBytes: config.HELD_EVENT_MAX_BYTES,
          },
        );
      } catch (err) {
        // Holding is a convenience for the payer; the refusal stands either way.
        log.warn({ err: (err as Error).message }, 'could not hold a refused event');
      }
    },
    async debit(trx, pubkey, eventId, amountMsat, at) {
      const ok = await debitForEvent(trx, pubkey, eventId, amountMsat, at);
      if (ok) cache.debited(pubkey, amountMsat);
      return ok;
    },
    close: () => cache.close(),
  };
}
