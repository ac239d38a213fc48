import type { Logger } from 'pino';
import { MemoryBus } from './memory.ts';
import { RedisBus, type RedisBusOptions } from './redis.ts';

/** Receives every message on a channel, with the id of the bus (process) that sent it. */
export type BusHandler = (message: string, origin: string) => void;

/**
 * What crosses replicas: new events for fan-out, grant changes. Publishing never throws
 * and never blocks the caller; a bus that cannot reach its backend keeps messages in a
 * bounded outbox and delivers them when it is back.
 */
export interface Bus {
  readonly id: string;
  readonly kind: 'redis' | 'memory';
  publish(channel: string, message: string): void;
  /**
   * Delivers each message published after the subscription is positioned at most once. Resolves
   * without waiting for an unreachable backend (bounded); reading starts when it is reachable.
   */
  subscribe(channel: string, handler: BusHandler): Promise<void>;
  /** True when the backend is reachable (always true in memory). */
  healthy(): boolean;
  /**
   * `listener` is called whenever this process may have missed a message on a channel it
   * subscribes to: a gap in a sender's numbering of that channel (its outbox overflowed, or the
   * stream was trimmed past it), a sender first heard in the middle of its numbering, a message
   * without one, or a reader that resumed after a failure and found the stream trimmed past
   * where it had read. What a cache built from the bus holds is then in doubt. Never called in
   * memory (one process loses nothing).
   */
  onLoss(listener: () => void): void;
  close(): Promise<void>;
}

/**
 * The bus's line in a `/readyz` answer. Reported, never a reason to be unready: a replica serves
 * its own clients without Redis (what is published waits in the outbox).
 */
export function busReadiness(bus: Bus): string {
  return `bus: ${bus.kind} ${bus.healthy() ? 'up' : 'down'}\n`;
}

/**
 * Never blocks on Redis: with Redis away it returns within a second (the bus connects in the
 * background, publishes wait in the outbox, subscriptions start reading when it comes).
 */
export async function createBus(opts: { redisUrl?: string; logger: Logger; redis?: RedisBusOptions }): Promise<Bus> {
  if (!opts.redisUrl) return new MemoryBus();
  const bus = new RedisBus(opts.redisUrl, opts.logger, opts.redis);
  await bus.start();
  return bus;
}
