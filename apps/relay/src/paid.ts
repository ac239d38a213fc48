import type { Bus } from '@paidrelay/bus';
import { loadRelayKey, type Config } from '@paidrelay/config';
import type { Database } from '@paidrelay/db';
import { createPaymentGate, LivePrices, paymentInfo } from '@paidrelay/payment-gate';
import { payUrl, pricingFromConfig, type Pricing } from '@paidrelay/pricing';
import type { Logger } from 'pino';
import { Counter, Gauge } from 'prom-client';
import { startRelay, type Relay } from './app.ts';
import type { PaymentGate } from './gate.ts';
import type { HookSource, RelayCore, RelayHooks } from './hooks.ts';
import { paidManagementMethods } from './paid-management.ts';

export type PaidRelayOptions = {
  /** Share a database and a bus with other services of this process (they are not closed with the relay). */
  db?: Database;
  bus?: Bus;
  /** Pricing, when not the config's (the all-in-one waives its dev wallets' NIP-47 traffic); its prices seed the stored ones. */
  pricing?: Pricing;
  /** More hooks, after the payment gate's. */
  hooks?: HookSource[];
};

/**
 * The payment side as relay hooks: the gate, the membership check for members-only reads, the
 * NIP-11 payment fields, the held-event purge, the NIP-86 methods of prices and grants, and
 * close. Prices are the stored ones, live (an admin may change them at any time, so the gate
 * is there even while everything is free: it then accepts every write). The gate sees the
 * moderation's allow-list (ALLOWED_PUBKEYS and the admins') as its `allowed`.
 */
export function paymentHooks(config: Config, base: Pricing): (core: RelayCore) => Promise<RelayHooks> {
  return async (core) => {
    const prices = await LivePrices.start(core.db, core.bus, core.log, base, { allowed: core.allowedPubkeys });
    const pricing = prices.pricing;
    const registers = [core.metrics.registry];
    const heldEvents = new Gauge({ name: 'relay_held_events', help: 'Refused events held for payment (all replicas)', registers });
    const heldBytes = new Gauge({
      name: 'relay_held_events_bytes',
      help: 'Bytes of refused events held for payment (all replicas)',
      registers,
    });
    const heldDropped = new Counter({
      name: 'relay_held_events_dropped_total',
      help: 'Refused events not held because the hold queue was full',
      registers,
    });
    const impl = await createPaymentGate(config, pricing, core.db, core.bus, core.log, {
      onHeldStats: (held) => {
        heldEvents.set(held.events);
        heldBytes.set(held.bytes);
      },
      onHoldDropped: () => heldDropped.inc(),
      writerIdle: core.writerIdle,
    });
    // Read at scrape time from the gate's load monitor (load.ts; 0 with load pricing off).
    new Gauge({
      name: 'relay_load_level',
      help: 'Relay-wide load level: prices beyond allowances are multiplied by 2^level',
      registers,
      collect() {
        this.set(impl.load().level);
      },
    });
    new Gauge({
      name: 'relay_write_rate',
      help: 'Stored writes per second of every replica, as of the last load evaluation',
      registers,
      collect() {
        this.set(impl.load().writesPerSecond);
      },
    });
    new Gauge({
      name: 'relay_load_evaluations',
      help: 'Load level evaluations by this replica since it started (one a second while load pricing is on)',
      registers,
      collect() {
        this.set(impl.load().evaluations);
      },
    });
    // The core's view of a gate (gate.ts): the package's object has that shape, checked here.
    const gate: PaymentGate = impl;
    const membership = { isMember: impl.isMember, payUrl: (pubkey: string) => payUrl(pricing, pubkey), paymentsUrl: pricing.paymentsUrl };
    return {
      gate,
      ...(config.READ_ACCESS === 'members' ? { membership } : {}),
      nip11: [paymentInfo(pricing, () => prices.version)],
      purge: [impl.purge],
      management: paidManagementMethods(prices, impl),
      onClose: [impl.close, () => prices.close()],
    };
  };
}

/**
 * The relay deployable's wiring: the core with the payment gate's hooks, from the stored prices
 * (seeded from the config's, or `opts.pricing`'s). main.ts loads this module only when
 * something may be for sale (sells.ts).
 */
export async function startPaidRelay(config: Config, log: Logger, opts: PaidRelayOptions = {}): Promise<Relay> {
  const pricing =
    opts.pricing ??
    pricingFromConfig(config, {
      relayPubkey: loadRelayKey(config.RELAY_SECRET_KEY, config.DATA_DIR, config.NODE_ENV === 'production').pubkey,
    });
  return startRelay(config, log, { db: opts.db, bus: opts.bus, hooks: [paymentHooks(config, pricing), ...(opts.hooks ?? [])] });
}
