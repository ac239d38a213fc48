import { createBus, type Bus } from '@paidrelay/bus';
import { loadRelayKey, type Config } from '@paidrelay/config';
import { databaseOptions, openDatabase, type Database } from '@paidrelay/db';
import { startAdmission, type Admission } from '@paidrelay/admission';
import { connectNwc, type LightningBackend } from '@paidrelay/lightning';
import type { DevLightningNetwork } from '@paidrelay/lightning/dev';
import { pricingFromConfig } from '@paidrelay/pricing';
import type { Relay } from '@paidrelay/relay';
import { startPaidRelay } from '@paidrelay/relay/paid';
import type { Logger } from 'pino';

export type Stack = {
  relay: Relay;
  admission: Admission;
  lightning: LightningBackend;
  /** The dev Lightning network, when no NWC_URL is configured. */
  dev?: DevLightningNetwork;
  db: Database;
  bus: Bus;
  close(): Promise<void>;
};

/**
 * `pnpm start`: the relay (with its payment gate, apps/relay/src/paid.ts) and the admission
 * service in one process, sharing one database and one bus: the laptop default (the embedded
 * database cannot be shared between processes). With no NWC_URL
 * the dev Lightning network runs its wallets over this very relay (their NIP-47 traffic, and
 * only theirs, passes the payment gate free); production refuses the dev network.
 */
export async function startAll(config: Config, log: Logger): Promise<Stack> {
  if (!config.NWC_URL && config.NODE_ENV === 'production') {
    throw new Error(
      "NWC_URL is required in production: set it to your wallet's Nostr Wallet Connect string (the dev Lightning network is for development only)",
    );
  }
  const db = await openDatabase(databaseOptions(config, log));
  await db.migrate();
  const bus = await createBus({ redisUrl: config.REDIS_URL, logger: log, redis: { prefix: config.REDIS_PREFIX } });
  const relayKey = loadRelayKey(config.RELAY_SECRET_KEY, config.DATA_DIR, config.NODE_ENV === 'production');
  // Loaded only without NWC_URL (never in production, refused above).
  const devNetwork = config.NWC_URL ? undefined : (await import('@paidrelay/lightning/dev')).DevLightningNetwork;
  // The dev network's wallets run over this relay: their NIP-47 traffic is free, nobody else's.
  const walletPubkeys = devNetwork ? await devNetwork.walletPubkeys(config.DATA_DIR) : [];
  const pricing = pricingFromConfig(config, { relayPubkey: relayKey.pubkey, walletPubkeys });
  const relay = await startPaidRelay(config, log, { db, bus, pricing });
  let dev: DevLightningNetwork | undefined;
  let lightning: LightningBackend;
  try {
    const walletLog = log.child({ component: 'lightning' });
    if (!devNetwork) {
      lightning = await connectNwc(config.NWC_URL!, { logger: walletLog });
    } else {
      dev = await devNetwork.start({ relayUrl: `ws://127.0.0.1:${relay.port}`, dataDir: config.DATA_DIR, logger: walletLog });
      lightning = await dev.connectRelayWallet({ logger: walletLog });
    }
  } catch (err) {
    await relay.close();
    throw err;
  }
  const admission = await startAdmission(config, log.child({ component: 'admission' }), {
    db,
    bus,
    lightning,
    pricing,
    relayKey: relay.ctx.key,
    relayUrl: relay.url,
  });
  return {
    relay,
    admission,
    lightning,
    dev,
    db,
    bus,
    async close() {
      await admission.close();
      await lightning.close();
      await dev?.close();
      await relay.close();
      await bus.close();
      await db.close();
    },
  };
}
