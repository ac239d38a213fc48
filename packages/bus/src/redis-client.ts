import { createClient, type RedisClientType } from 'redis';
import type { Logger } from 'pino';

/**
 * A Redis connection as the bus and the shared rate limits use it: commands fail at once while
 * it is down (no offline queue, so nothing waits on Redis unbounded), TCP keep-alive, and
 * reconnects forever with a capped, jittered backoff (100 ms doubling to 2 s).
 */
export function newRedisClient(url: string, connectTimeoutMs: number): RedisClientType {
  return createClient({
    url,
    disableOfflineQueue: true,
    socket: {
      connectTimeout: connectTimeoutMs,
      keepAlive: true,
      reconnectStrategy: (retries: number) => Math.min(100 * 2 ** retries, 2_000) + Math.floor(Math.random() * 100),
    },
  }) as RedisClientType;
}

/** Drops a connection whatever its state; one already closed throws, which is logged at debug level. */
export function destroyClient(c: RedisClientType | null, log: Logger, what: string): void {
  if (!c) return;
  try {
    c.destroy();
  } catch (err) {
    log.debug({ err, what }, 'redis: destroy failed (already closed)');
  }
}
