import type { Bus, RecentIds } from '@paidrelay/bus';
import type { Config } from '@paidrelay/config';
import type { Database } from '@paidrelay/db';
import type { ParseLimits } from '@paidrelay/nostr';
import type { Logger } from 'pino';
import type { SubscriptionIndex } from './fanout.ts';
import type { Metrics } from './metrics.ts';
import type { Moderation } from './moderation.ts';
import type { WritePolicy } from './policy.ts';
import type { ReadPolicy } from './read-policy.ts';
import type { RelayKey } from '@paidrelay/config';
import type { PaymentGate } from './gate.ts';
import type { Nip11Hook } from './hooks.ts';
import type { ManagementMethod } from './management.ts';
import type { RateLimiter } from './rate-limit.ts';
import type { RecentCache } from './recent-cache.ts';
import type { GroupCommitWriter } from './store.ts';
import type { VerifyPool } from './verify.ts';

/** Everything the stages share, built once at start. */
export type RelayContext = {
  config: Config;
  log: Logger;
  db: Database;
  bus: Bus;
  writer: GroupCommitWriter;
  verifier: VerifyPool;
  index: SubscriptionIndex;
  metrics: Metrics;
  policies: WritePolicy[];
  /** Run for every REQ and COUNT filter, in order (read-policy.ts). */
  readPolicies: ReadPolicy[];
  limits: ParseLimits;
  relayUrl: string;
  key: RelayKey;
  /** Sender id of this relay's messages on the events channel (its own are not delivered twice). */
  instanceId: string;
  /** The newest events of recently read authors, answering REQs by authors (recent-cache.ts); none when RECENT_CACHE_MB is 0. */
  recentCache?: RecentCache;
  /** Ids of events recently delivered to this process's subscribers (live), so none is delivered twice. */
  recentEvents: RecentIds;
  /** The write gate handed in as a hook (RelayHooks.gate); none on an open relay. */
  gate?: PaymentGate;
  /** Token buckets per pubkey and per address, shared between replicas (rate-limit.ts). */
  rateLimiter?: RateLimiter;
  /** Changes to the NIP-11 document handed in as hooks, applied in order on each render. */
  nip11: readonly Nip11Hook[];
  /** NIP-86 moderation state (bans, allow-lists, kinds, addresses, relay texts), kept current by the bus. */
  moderation: Moderation;
  /** NIP-86 methods handed in as hooks (RelayHooks.management), besides the core's own. */
  management?: Readonly<Record<string, ManagementMethod>>;
};
