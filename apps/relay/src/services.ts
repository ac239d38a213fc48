import { randomBytes } from 'node:crypto';
import { createBus, decodeEventMessage, EVENTS_CHANNEL, RecentIds, type Bus } from '@paidrelay/bus';
import { loadRelayKey, type Config } from '@paidrelay/config';
import { databaseOptions, openDatabase, queryEvents, type Database, type QueryFilter } from '@paidrelay/db';
import { nowSeconds, parsePubkeyList, type NostrEvent, type ParseLimits } from '@paidrelay/nostr';
import type { Logger } from 'pino';
import type { RelayOptions } from './app.ts';
import type { RelayContext } from './context.ts';
import { deliver, SubscriptionIndex } from './fanout.ts';
import { resolveHooks } from './hooks.ts';
import { createMetrics, type Metrics } from './metrics.ts';
import { Moderation } from './moderation.ts';
import { defaultPolicies } from './policy.ts';
import { createRateLimiter } from './rate-limit.ts';
import { defaultReadPolicies } from './read-policy.ts';
import { RecentCache } from './recent-cache.ts';
import { GroupCommitWriter, type WriteOutcome } from './store.ts';
import { VerifyPool } from './verify.ts';

export type Services = {
  ctx: RelayContext;
  hooks: Awaited<ReturnType<typeof resolveHooks>>;
  /** Closes what this relay made (not a database or bus it was given), in reverse order of making. */
  close(): Promise<void>;
};

/**
 * First stage of a start: storage, bus, moderation, the hooks, verifier, writer and rate
 * limiter, joined into the context every stage shares. Nothing listens yet.
 */
export async function buildServices(config: Config, log: Logger, opts: RelayOptions): Promise<Services> {
  const metrics = createMetrics();
  const key = loadRelayKey(config.RELAY_SECRET_KEY, config.DATA_DIR, config.NODE_ENV === 'production');
  const instanceId = randomBytes(8).toString('hex');
  const db = opts.db ?? (await openDatabase(databaseOptions(config, log)));
  if (!opts.db) await db.migrate();
  // Bounded: a replica starts without Redis and joins the bus when it comes.
  const bus = opts.bus ?? (await createBus({ redisUrl: config.REDIS_URL, logger: log, redis: { prefix: config.REDIS_PREFIX } }));
  metrics.probes.busUp = () => bus.healthy();
  // NIP-86 moderation, loaded before anything consults it; its allow-list (the admins' joined
  // to ALLOWED_PUBKEYS) is what a payment gate hook takes as free.
  const moderation = new Moderation(db, bus, log, instanceId, new Set(parsePubkeyList('ALLOWED_PUBKEYS', config.ALLOWED_PUBKEYS)));
  await moderation.start();
  const recentCache = config.RECENT_CACHE_MB > 0 ? newRecentCache(config.RECENT_CACHE_MB, db, bus, metrics) : undefined;
  // What moderation removes (banned events) or shows again (unbanned pubkeys): every window goes.
  if (recentCache) moderation.onChange = () => recentCache.clear();
  // A message the bus may have missed (another replica's write, a moderation change): every window goes too.
  if (recentCache) bus.onLoss(() => recentCache.clear());
  // Made after the hooks (it takes the gate's charges); until then it has nothing in flight.
  let writer: GroupCommitWriter | undefined;
  const hooks = await resolveHooks(opts.hooks ?? [], {
    config,
    log,
    db,
    bus,
    key,
    metrics,
    instanceId,
    allowedPubkeys: () => moderation.allowedPubkeys,
    writerIdle: () => writer?.whenIdle() ?? Promise.resolve(),
  });
  const verifier = await VerifyPool.start(
    config.VERIFY_WORKERS,
    (err) => log.error({ err }, 'signature worker failed; replacing it'),
    (n) => metrics.verifyBatch.observe(n),
  );
  const limits: ParseLimits = {
    maxTags: config.MAX_EVENT_TAGS,
    maxContentLength: config.MAX_CONTENT_LENGTH,
    maxLimit: config.MAX_LIMIT,
    defaultLimit: config.DEFAULT_LIMIT,
    maxFilters: config.MAX_FILTERS,
    maxSubIdLength: config.MAX_SUBID_LENGTH,
  };
  writer = new (recentCache ? cachingWriter(recentCache) : GroupCommitWriter)(
    db,
    config.WRITE_BATCH_MAX,
    metrics,
    log,
    hooks.gate?.charges,
    db.kind === 'postgres' ? config.WRITE_CONCURRENCY : 1,
  );
  const ctx: RelayContext = {
    config,
    log,
    db,
    bus,
    writer,
    verifier,
    index: new SubscriptionIndex(),
    metrics,
    policies: [moderation.writePolicy, ...defaultPolicies(config), ...hooks.writePolicies],
    readPolicies: [moderation.readPolicy, ...defaultReadPolicies(config, hooks.membership), ...hooks.readPolicies],
    limits,
    relayUrl: config.RELAY_URL ?? `ws://localhost:${config.PORT}`,
    key,
    instanceId,
    recentCache,
    recentEvents: new RecentIds(),
    gate: hooks.gate,
    // Its own Redis connection, made in the background: a start without Redis is not delayed.
    rateLimiter: createRateLimiter(config, log),
    nip11: hooks.nip11,
    moderation,
    management: hooks.management,
  };
  await followOtherReplicas(ctx);
  return {
    ctx,
    hooks,
    async close() {
      await verifier.close();
      for (const hook of hooks.onClose) await hook();
      await ctx.rateLimiter?.close();
      moderation.close();
      recentCache?.close();
      if (!opts.bus) await bus.close();
      if (!opts.db) await db.close();
    },
  };
}

/** Events stored or relayed by other replicas reach this replica's subscribers. */
async function followOtherReplicas(ctx: RelayContext): Promise<void> {
  await ctx.bus.subscribe(EVENTS_CHANNEL, (msg) => {
    const m = decodeEventMessage(msg);
    if (!m || m.sender === ctx.instanceId) return;
    try {
      const ev = JSON.parse(m.eventJson) as NostrEvent;
      // Stored elsewhere (this replica's own writes reach the cache from its writer).
      ctx.recentCache?.stored(ev, m.eventJson);
      // At most once per subscription: an id this process already delivered (a bus entry seen
      // twice, or an event relayed by two replicas) is not delivered again.
      if (!ctx.recentEvents.add(ev.id)) return;
      ctx.metrics.delivered.inc(deliver(ctx.index, ev, m.eventJson));
    } catch (err) {
      ctx.log.warn({ err }, 'bus: bad event message');
    }
  });
}

/**
 * Windows are loaded on the primary: a replica that lags could miss an event whose bus message
 * this process has already applied, and the window would then lack it for good.
 */
function newRecentCache(mb: number, db: Database, bus: Bus, metrics: Metrics): RecentCache {
  return new RecentCache({
    maxBytes: mb * 1024 * 1024,
    load: (authors, limit) =>
      queryEvents(
        db.kysely,
        authors.map((a) => ({ authors: [a], limit })),
        nowSeconds(),
      ),
    // One filter per tag (each its own index scan with its own limit), in one query.
    loadTags: (tags, limit) =>
      queryEvents(
        db.kysely,
        tags.map((t) => tagFilter(t.name, t.value, limit)),
        nowSeconds(),
      ),
    healthy: () => bus.healthy(),
    count: (outcome, n = 1) => metrics.recentCache.inc({ outcome }, n),
  });
}

/** The store's filter for one tag value (`#x: [value]`). */
function tagFilter(name: string, value: string, limit: number): QueryFilter {
  const f: QueryFilter = { limit };
  f[`#${name}`] = [value];
  return f;
}

/** The writer, telling the cache of each event it stored before its caller (and so the client's OK) hears of it. */
function cachingWriter(cache: RecentCache): typeof GroupCommitWriter {
  return class extends GroupCommitWriter {
    override async write(event: NostrEvent, raw: string, charge?: number): Promise<WriteOutcome> {
      const outcome = await super.write(event, raw, charge);
      if (outcome.status === 'stored') cache.stored(event, raw);
      return outcome;
    }
  };
}
