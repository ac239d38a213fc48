import { createBus } from '@paidrelay/bus';
import { createLogger, installProcessHandlers, loadConfig, stopOnSignals, loadRelayKey } from '@paidrelay/config';
import { databaseOptions, openDatabase } from '@paidrelay/db';
import { connectNwc } from '@paidrelay/lightning';
import { pricingFromConfig } from '@paidrelay/pricing';
import { startAdmission } from './app.ts';

/**
 * The admission service as its own deployable (Kubernetes): it shares Postgres and Redis with
 * the relay replicas. `pnpm start` (apps/all-in-one) is the laptop way to run everything.
 */
const config = loadConfig();
const log = createLogger(config.LOG_LEVEL, 'admission');
/** Set once everything has started; SIGTERM and a fatal error share it (each part closed once). */
let closing: Promise<void> | undefined;
let closeAll: (() => Promise<void>) | undefined;
const close = () => (closing ??= closeAll ? closeAll() : Promise.resolve());
// uncaughtException / unhandledRejection: logged with the stack, closed within 5 s, exit 1.
installProcessHandlers(log, close);
try {
  if (!config.DATABASE_URL) {
    throw new Error(
      'the admission service on its own needs DATABASE_URL (the embedded database belongs to one process: `pnpm start` runs the relay and the admission service together)',
    );
  }
  if (!config.NWC_URL && config.NODE_ENV === 'production') {
    throw new Error("NWC_URL is required in production: set it to your wallet's Nostr Wallet Connect string");
  }
  const db = await openDatabase(databaseOptions(config, log));
  await db.migrate();
  const bus = await createBus({ redisUrl: config.REDIS_URL, logger: log, redis: { prefix: config.REDIS_PREFIX } });
  const relayUrl = config.RELAY_URL ?? `ws://localhost:${config.PORT}`;
  const relayKey = loadRelayKey(config.RELAY_SECRET_KEY, config.DATA_DIR, config.NODE_ENV === 'production');
  // The dev Lightning network is loaded only here, without NWC_URL outside production: never in a production process.
  const dev = config.NWC_URL
    ? undefined
    : await (await import('@paidrelay/lightning/dev')).DevLightningNetwork.start({ relayUrl, dataDir: config.DATA_DIR, logger: log });
  const lightning = config.NWC_URL ? await connectNwc(config.NWC_URL, { logger: log }) : await dev!.connectRelayWallet({ logger: log });
  const admission = await startAdmission(config, log, {
    db,
    bus,
    lightning,
    pricing: pricingFromConfig(config, { relayPubkey: relayKey.pubkey }),
    relayKey,
    relayUrl,
  });
  if (dev) process.stdout.write(`\nDev payer wallet (NWC): ${dev.payerWalletNwc}\n\n`);
  closeAll = async () => {
    await admission.close();
    await lightning.close();
    await dev?.close();
    await bus.close();
    await db.close();
  };
  stopOnSignals(log, close);
} catch (err) {
  log.fatal({ err }, 'admission service failed to start');
  process.exit(1);
}
