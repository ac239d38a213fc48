import { createHash } from 'node:crypto';
import type { RedisClientType } from 'redis';
import type { Logger } from 'pino';
import { destroyClient, newRedisClient } from './redis-client.ts';

/** A Lua script run by its SHA-1, sent whole once when Redis does not know it yet. */
export type Script = { source: string; sha: string };

export function script(source: string): Script {
  return { source, sha: createHash('sha1').update(source).digest('hex') };
}

export type RedisScriptsOptions = {
  /** Bound on one reply (default 50 ms). */
  timeoutMs?: number;
  connectTimeoutMs?: number;
  /** How long after a reply that did not come in time the store is left alone (default 1 s). */
  stallBackoffMs?: number;
  /** Who uses it, for the log ("rate limits", "volume counters"). */
  what: string;
};

class Timeout extends Error {
  constructor(
    message: string,
    /** The timer itself fired late by more than half the bound: this process was busy or starved of CPU. */
    readonly loopLate: boolean,
  ) {
    super(message);
  }
}

/**
 * Quick Lua scripts on their own Redis connection (never the bus's: a slow stream read must not
 * delay them). It connects in the background and never blocks its creator; every run fails at
 * once while disconnected (no offline queue) and is bounded by `timeoutMs`. After a reply that did
 * not come in time it says it is not usable for `stallBackoffMs` (callers decide locally
 * meanwhile, without waiting), and after three in a row the connection is dropped and made again
 * (a half-open connection). "In a row" means three silences one after another: commands that
 * were in flight together and missed together are one; any reply, even one that came after its
 * bound, shows the connection is alive (Redis is slow, a new connection would not be faster) and
 * starts the count again; and a miss whose timer fired late (this process's event loop was busy or
 * waiting for a CPU, so Redis had no fair bound) does not count at all.
 */
export class RedisScripts {
  private client: RedisClientType | null = null;
  private closed = false;
  private stalledUntil = 0;
  private stalls = 0;
  /** performance.now() of the last miss counted in `stalls`. */
  private lastMissAt = Number.NEGATIVE_INFINITY;
  private warned = false;
  private readonly timeoutMs: number;
  private readonly connectTimeoutMs: number;
  private readonly stallBackoffMs: number;
  private readonly what: string;

  constructor(
    private readonly url: string,
    private readonly log: Logger,
    opts: RedisScriptsOptions,
  ) {
    this.timeoutMs = opts.timeoutMs ?? 50;
    this.connectTimeoutMs = opts.connectTimeoutMs ?? 1_000;
    this.stallBackoffMs = opts.stallBackoffMs ?? 1_000;
    this.what = opts.what;
    this.open();
  }

  private open(): void {
    const c = newRedisClient(this.url, this.connectTimeoutMs);
    c.on('error', (err: Error) => {
      if (this.client !== c || this.warned) return;
      this.warned = true;
      this.log.warn({ err }, `${this.what}: Redis unreachable, each replica decides on its own meanwhile`);
    });
    c.on('ready', () => {
      if (this.client !== c) return;
      if (this.warned) this.log.info(`${this.what}: Redis reachable again, shared between replicas`);
      this.warned = false;
      this.stalls = 0;
    });
    this.client = c;
    c.connect().catch((err: unknown) => {
      if (this.closed || this.client !== c) return;
      this.log.warn({ err }, `${this.what}: Redis connect failed, making a new connection`);
      setTimeout(() => this.client === c && this.reset(), 1_000).unref?.();
    });
  }

  private reset(): void {
    const c = this.client;
    this.client = null;
    destroyClient(c, this.log, this.what);
    if (!this.closed) this.open();
  }

  usable(): boolean {
    return !this.closed && !!this.client?.isReady && Date.now() >= this.stalledUntil;
  }

  async run(s: Script, keys: string[], args: string[]): Promise<unknown> {
    const c = this.client;
    if (!c?.isReady || this.closed) throw new Error(`${this.what}: Redis not connected`);
    let timer: NodeJS.Timeout | undefined;
    const sentAt = performance.now();
    const bound = new Promise<never>((_, reject) => {
      // Through setImmediate: when the event loop was busy past the bound, a reply that arrived
      // meanwhile is read (poll phase) before the timer's verdict, so a busy replica does not
      // mistake its own stall for Redis's.
      timer = setTimeout(() => {
        const loopLate = performance.now() - sentAt - this.timeoutMs > this.timeoutMs / 2;
        setImmediate(() => reject(new Timeout(`${this.what}: no reply from Redis within ${this.timeoutMs} ms`, loopLate)));
      }, this.timeoutMs);
    });
    const run = async (): Promise<unknown> => {
      try {
        return await c.evalSha(s.sha, { keys, arguments: args });
      } catch (err) {
        if (!String((err as Error).message).includes('NOSCRIPT')) throw err;
        return c.eval(s.source, { keys, arguments: args });
      }
    };
    const command = run();
    // A reply, in time or late, shows the connection answers: the count of silences starts again.
    command.then(
      () => {
        if (this.client === c) this.stalls = 0;
      },
      () => {},
    );
    try {
      return await Promise.race([command, bound]);
    } catch (err) {
      if (err instanceof Timeout && this.client === c && !this.closed) this.missed(sentAt, err.loopLate);
      throw err;
    } finally {
      clearTimeout(timer);
    }
  }

  /** A command sent at `sentAt` had no reply within the bound. */
  private missed(sentAt: number, loopLate: boolean): void {
    // Callers decide locally for a while either way (nothing waits on a slow Redis) ...
    this.stalledUntil = Date.now() + this.stallBackoffMs;
    // ... but only a silence Redis had a fair bound for, after the last one counted, adds up to
    // a reconnect: not our own late timer, not the other commands that were in flight with it.
    if (loopLate || sentAt < this.lastMissAt) return;
    this.lastMissAt = performance.now();
    if (++this.stalls >= 3) {
      this.log.warn(`${this.what}: Redis stopped answering, reconnecting`);
      this.stalls = 0;
      this.reset();
    }
  }

  async close(): Promise<void> {
    this.closed = true;
    const c = this.client;
    this.client = null;
    destroyClient(c, this.log, this.what);
  }
}
