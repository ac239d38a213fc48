import { randomUUID } from 'node:crypto';
import type { RedisClientType } from 'redis';
import type { Logger } from 'pino';
import type { Bus, BusHandler } from './bus.ts';
import { destroyClient, newRedisClient } from './redis-client.ts';

const STREAM_PREFIX = 'bus:';
/** Per sender: the highest sequence number already appended (what makes a retried append a no-op). */
const SEQ_PREFIX = 'bus-seq:';
/** Entries kept per stream: how far a replica can fall behind (an outage) and still catch up. */
const STREAM_MAX_LEN = 100_000;
const OUTBOX_MAX = 50_000;
const BATCH_MAX = 500;
/** Senders remembered per channel by a reader for the duplicate guard (oldest forgotten first). */
const ORIGINS_MAX = 10_000;
const SEQ_TTL_SECONDS = 7 * 86_400;

export type RedisBusOptions = {
  /** Bound on waiting for one reply (XREAD adds its BLOCK time). Past it the connection is dropped and made again. */
  commandTimeoutMs?: number;
  /** Bound on one TCP connect + handshake. */
  connectTimeoutMs?: number;
  /** XREAD BLOCK. */
  blockMs?: number;
  /** How long start() and subscribe() wait for Redis before returning anyway (they return at once on a connection error). */
  startWaitMs?: number;
  /** Prefix of every key (REDIS_PREFIX; default `paidrelay:`). */
  prefix?: string;
};

/**
 * Appends a batch of one sender's messages, skipping those whose sequence number is not above
 * the sender's high-water mark: a batch whose reply was lost (connection cut after Redis ran it)
 * is retried from the outbox without being appended twice. Each entry also carries the sender's
 * number for that channel (`c`, 1, 2, 3, ... per channel), by which a reader sees a gap.
 * KEYS[1] the sender's seq key, KEYS[2..] the stream of each message;
 * ARGV[1] sender id, ARGV[2] max stream length, ARGV[3] seq key TTL, then (seq, channel seq,
 * message) triples.
 */
const APPEND_SCRIPT = `
local last = tonumber(redis.call('GET', KEYS[1]) or '0')
local top = last
for i = 2, #KEYS do
  local at = 4 + 3 * (i - 2)
  local seq = tonumber(ARGV[at])
  if seq > last then
    redis.call('XADD', KEYS[i], 'MAXLEN', '~', ARGV[2], '*', 'o', ARGV[1], 's', ARGV[at], 'c', ARGV[at + 1], 'm', ARGV[at + 2])
    if seq > top then top = seq end
  end
end
if top > last then redis.call('SET', KEYS[1], tostring(top), 'EX', ARGV[3]) end
return top
`;

const sleep = (ms: number) =>
  new Promise<void>((r) => {
    const t = setTimeout(r, ms);
    t.unref?.();
  });

class TimeoutError extends Error {}

/**
 * One connection to Redis that is always trying to be up: connects in the background (never
 * awaited by the bus), reconnects with a capped backoff, fails commands at once while down (no
 * offline queue), and bounds every reply: a connection that stops answering (half-open) is
 * destroyed and made again.
 */
class Link {
  private client: RedisClientType | null = null;
  private closed = false;
  private down = false;
  private outcome: (() => void)[] = [];
  private errorWaiters: (() => void)[] = [];

  constructor(
    private readonly url: string,
    private readonly role: string,
    private readonly log: Logger,
    private readonly connectTimeoutMs: number,
    private readonly onReady: () => void,
  ) {
    this.open();
  }

  private open(): void {
    const c = newRedisClient(this.url, this.connectTimeoutMs);
    c.on('error', (err: Error) => {
      if (this.client !== c) return;
      if (!this.down) this.log.warn({ err, role: this.role }, 'redis bus: connection error, retrying');
      this.down = true;
      this.settle(true);
    });
    c.on('ready', () => {
      if (this.client !== c) return;
      if (this.down) this.log.info({ role: this.role }, 'redis bus: connected');
      this.down = false;
      this.settle(false);
      this.onReady();
    });
    this.client = c;
    c.connect().catch((err: unknown) => {
      if (this.closed || this.client !== c) return void this.log.debug({ err, role: this.role }, 'redis bus: connect ended by close');
      // The reconnect strategy never gives up, so this is unexpected: start over with a new client.
      this.log.error({ err, role: this.role }, 'redis bus: connect failed, making a new connection');
      setTimeout(() => this.client === c && this.reset(), 1_000).unref?.();
    });
  }

  private settle(error: boolean): void {
    for (const r of this.outcome.splice(0)) r();
    if (error) for (const r of this.errorWaiters.splice(0)) r();
  }

  get ready(): boolean {
    return !this.closed && !!this.client?.isReady;
  }

  /** Resolves when the first connect attempt has an outcome (ready or an error), or after ms. */
  firstOutcome(ms: number): Promise<void> {
    if (this.ready || this.down) return Promise.resolve();
    return Promise.race([new Promise<void>((r) => this.outcome.push(r)), sleep(ms)]);
  }

  /** Resolves at the next connection error. */
  nextError(): Promise<void> {
    if (this.down) return Promise.resolve();
    return new Promise<void>((r) => this.errorWaiters.push(r));
  }

  /** Runs one command on the ready connection, with a bound on the reply. Throws at once when down. */
  async run<T>(fn: (c: RedisClientType) => Promise<T>, ms: number): Promise<T> {
    const c = this.client;
    if (!c?.isReady || this.closed) throw new Error('redis bus: not connected');
    let timer: NodeJS.Timeout | undefined;
    const bound = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new TimeoutError(`redis bus: no reply within ${ms} ms`)), ms);
    });
    try {
      return await Promise.race([fn(c), bound]);
    } catch (err) {
      if (err instanceof TimeoutError && this.client === c && !this.closed) {
        this.log.warn({ err, role: this.role }, 'redis bus: connection stopped answering, reconnecting');
        this.reset();
      }
      throw err;
    } finally {
      clearTimeout(timer);
    }
  }

  private reset(): void {
    const c = this.client;
    this.client = null;
    this.down = true;
    destroyClient(c, this.log, `bus ${this.role}`);
    if (!this.closed) this.open();
  }

  async close(graceMs: number): Promise<void> {
    this.closed = true;
    const c = this.client;
    this.client = null;
    this.settle(true);
    if (!c) return;
    if (graceMs > 0 && c.isReady) {
      await Promise.race([
        c.close().catch((err: unknown) => this.log.debug({ err, role: this.role }, 'redis bus: close failed')),
        sleep(graceMs),
      ]);
    }
    destroyClient(c, this.log, `bus ${this.role}`);
  }
}

/**
 * Redis Streams rather than pub/sub: a replica that loses Redis for a while resumes from
 * the last entry it read, so it catches up on what the other replicas published meanwhile.
 *
 * Nothing here waits on Redis without a bound: start() and subscribe() return when Redis answers,
 * fails, or after `startWaitMs`, and the connections keep trying in the background. Delivery is
 * at most once per subscription: each message carries its sender's sequence number, the append
 * is idempotent per sender (a retried batch is not appended twice), and a reader skips an entry
 * whose sequence number is not above the last one it delivered from that sender.
 *
 * Where a fresh subscriber starts: after the stream's last entry at the moment its connection
 * first reaches Redis (not at a time-based id: no clock comparison between the replica and Redis,
 * and no replay of entries older than the subscriber). Entries other replicas append while a
 * replica that started without Redis is still unconnected are therefore not delivered to it; its
 * clients read stored events from the database. From then on it resumes from its last entry.
 */
export class RedisBus implements Bus {
  readonly id = randomUUID();
  readonly kind = 'redis' as const;
  private writer: Link;
  private readers: { link: Link; positioned: boolean }[] = [];
  private outbox: { channel: string; message: string; seq: number; channelSeq: number }[] = [];
  private seq = 0;
  /** Per channel, the number of the last message published on it. */
  private channelSeqs = new Map<string, number>();
  private lossListeners: (() => void)[] = [];
  private flushing = false;
  private retry?: NodeJS.Timeout;
  private pinger: NodeJS.Timeout;
  private closed = false;
  private readonly commandTimeoutMs: number;
  private readonly connectTimeoutMs: number;
  private readonly blockMs: number;
  private readonly startWaitMs: number;
  private readonly prefix: string;

  constructor(
    private readonly url: string,
    private readonly log: Logger,
    opts: RedisBusOptions = {},
  ) {
    this.commandTimeoutMs = opts.commandTimeoutMs ?? 5_000;
    this.connectTimeoutMs = opts.connectTimeoutMs ?? 3_000;
    this.blockMs = opts.blockMs ?? 2_000;
    this.startWaitMs = opts.startWaitMs ?? 1_000;
    this.prefix = opts.prefix ?? 'paidrelay:';
    this.writer = new Link(url, 'writer', log, this.connectTimeoutMs, () => void this.flush());
    // An idle writer notices a connection that stopped answering too (healthy() stays true otherwise).
    this.pinger = setInterval(() => {
      if (!this.writer.ready || this.flushing) return;
      this.writer.run((c) => c.ping(), this.commandTimeoutMs).catch((err: unknown) => this.log.debug({ err }, 'redis bus: ping failed'));
    }, 5_000);
    this.pinger.unref?.();
  }

  /** Returns once the writer is connected or has failed its first attempt (bounded); never throws. */
  async start(): Promise<void> {
    await this.writer.firstOutcome(this.startWaitMs);
    if (!this.writer.ready) this.log.warn('redis bus: Redis is not reachable yet; publishing to the outbox and retrying');
  }

  onLoss(listener: () => void): void {
    this.lossListeners.push(listener);
  }

  private lost(key: string, why: string, level: 'warn' | 'debug' = 'warn'): void {
    this.log[level]({ key, why }, 'redis bus: a message may have been missed');
    for (const l of this.lossListeners) {
      try {
        l();
      } catch (err) {
        this.log.error({ err }, 'redis bus: loss listener failed');
      }
    }
  }

  /** The writer is connected and every reader is connected and reading. */
  healthy(): boolean {
    return this.writer.ready && this.readers.every((r) => r.positioned && r.link.ready);
  }

  publish(channel: string, message: string): void {
    if (this.closed) return;
    if (this.outbox.length >= OUTBOX_MAX) {
      this.outbox.shift();
      this.log.warn('redis bus: outbox full, dropping the oldest message');
    }
    const channelSeq = (this.channelSeqs.get(channel) ?? 0) + 1;
    this.channelSeqs.set(channel, channelSeq);
    this.outbox.push({ channel, message, seq: ++this.seq, channelSeq });
    void this.flush();
  }

  private async flush(): Promise<void> {
    if (this.flushing || !this.writer.ready) return;
    this.flushing = true;
    try {
      while (this.outbox.length > 0 && this.writer.ready) {
        const batch = this.outbox.slice(0, BATCH_MAX);
        const keys = [this.prefix + SEQ_PREFIX + this.id, ...batch.map((b) => this.prefix + STREAM_PREFIX + b.channel)];
        const args = [this.id, String(STREAM_MAX_LEN), String(SEQ_TTL_SECONDS)];
        for (const b of batch) args.push(String(b.seq), String(b.channelSeq), b.message);
        await this.writer.run((c) => c.eval(APPEND_SCRIPT, { keys, arguments: args }), this.commandTimeoutMs);
        // Remove by sequence number: the outbox may have dropped its oldest while we waited.
        const top = batch[batch.length - 1].seq;
        let n = 0;
        while (n < this.outbox.length && this.outbox[n].seq <= top) n++;
        this.outbox.splice(0, n);
      }
    } catch (err) {
      if (this.closed) this.log.debug({ err, pending: this.outbox.length }, 'redis bus: publish failed while closing');
      else this.log.warn({ err, pending: this.outbox.length }, 'redis bus: publish failed, kept in the outbox');
    } finally {
      this.flushing = false;
    }
    if (this.outbox.length > 0 && !this.closed && !this.retry) {
      this.retry = setTimeout(() => {
        this.retry = undefined;
        void this.flush();
      }, 200);
      this.retry.unref?.();
    }
  }

  /** Returns once the reader is positioned, or its connection failed, or after `startWaitMs`; reading goes on in the background. */
  async subscribe(channel: string, handler: BusHandler): Promise<void> {
    if (this.closed) return;
    const reader = { link: new Link(this.url, 'reader:' + channel, this.log, this.connectTimeoutMs, () => {}), positioned: false };
    this.readers.push(reader);
    let positioned!: () => void;
    const isPositioned = new Promise<void>((r) => (positioned = r));
    void this.read(reader.link, this.prefix + STREAM_PREFIX + channel, handler, () => {
      reader.positioned = true;
      positioned();
    });
    await Promise.race([isPositioned, reader.link.nextError(), sleep(this.startWaitMs)]);
  }

  /**
   * A sender numbers its messages on each channel 1, 2, 3, ...: anything but the next number
   * means messages in between never reached this reader (or, for a sender first heard here past
   * 1, may not have: it published before this reader was positioned, or its first ones were lost).
   */
  private checkNumbering(key: string, numbered: Map<string, number>, origin: string, c: string | undefined): void {
    const n = c === undefined ? Number.NaN : Number(c);
    const prev = numbered.get(origin);
    // An older sender (a rolling upgrade) numbers nothing: every message of it is a loss, warned of once.
    if (Number.isNaN(n)) this.lost(key, 'a message without a channel number', prev !== undefined && Number.isNaN(prev) ? 'debug' : 'warn');
    else if (prev === undefined ? n !== 1 : n !== prev + 1) {
      this.lost(
        key,
        prev === undefined ? 'a sender first heard past its first message' : "a gap in a sender's numbering",
        prev === undefined ? 'debug' : 'warn',
      );
    }
    numbered.delete(origin);
    numbered.set(origin, n);
    if (numbered.size > ORIGINS_MAX) numbered.delete(numbered.keys().next().value!);
  }

  private async read(reader: Link, key: string, handler: BusHandler, positioned: () => void): Promise<void> {
    let lastId: string | undefined;
    /** Per sender, the sequence number of the last message delivered: the duplicate guard. */
    const delivered = new Map<string, number>();
    /** Per sender, its number for this channel of the last message delivered: the gap guard. */
    const numbered = new Map<string, number>();
    let failing = false;
    /** The reader stopped reading after it was positioned: where it resumes must still be in the stream. */
    let resumed = false;
    while (!this.closed) {
      if (!reader.ready) {
        if (lastId !== undefined) resumed = true;
        await sleep(100);
        continue;
      }
      try {
        if (lastId === undefined) {
          const last = await reader.run((c) => c.xRevRange(key, '+', '-', { COUNT: 1 }), this.commandTimeoutMs);
          lastId = last?.[0]?.id ?? '0-0';
          positioned();
          continue;
        }
        if (resumed) {
          // Trimming takes the oldest entries first: if the last one read is still there, nothing after it has gone.
          const at: string = lastId;
          const still = at === '0-0' ? [] : await reader.run((c) => c.xRange(key, at, at), this.commandTimeoutMs);
          if ((still?.length ?? 0) === 0) this.lost(key, 'resumed after the stream was trimmed past the last entry read');
          resumed = false;
        }
        const from: string = lastId;
        const res = await reader.run(
          (c) => c.xRead({ key, id: from }, { BLOCK: this.blockMs, COUNT: 1000 }),
          this.blockMs + this.commandTimeoutMs,
        );
        failing = false;
        if (!res) continue;
        for (const stream of res as { messages: { id: string; message: Record<string, string> }[] }[]) {
          for (const entry of stream.messages) {
            lastId = entry.id;
            const { o, s, c, m } = entry.message;
            if (s !== undefined) {
              const seq = Number(s);
              const prev = delivered.get(o);
              if (prev !== undefined && seq <= prev) {
                this.log.warn({ key, origin: o, seq, entry: entry.id }, 'redis bus: duplicate entry skipped');
                continue;
              }
              delivered.delete(o);
              delivered.set(o, seq);
              if (delivered.size > ORIGINS_MAX) delivered.delete(delivered.keys().next().value!);
            }
            this.checkNumbering(key, numbered, o, c);
            try {
              handler(m, o);
            } catch (err) {
              this.log.error({ err }, 'redis bus: handler failed');
            }
          }
        }
      } catch (err) {
        if (this.closed) return void this.log.debug({ err, key }, 'redis bus: reader stopped by close');
        if (!failing) this.log.warn({ err, key }, 'redis bus: read failed, retrying');
        failing = true;
        if (lastId !== undefined) resumed = true;
        await sleep(200);
      }
    }
  }

  async close(): Promise<void> {
    if (this.closed) return;
    clearInterval(this.pinger);
    clearTimeout(this.retry);
    // One bounded last try to hand over what is still in the outbox.
    if (this.outbox.length > 0 && this.writer.ready && !this.flushing) await this.flush();
    this.closed = true;
    clearTimeout(this.retry);
    await Promise.all([this.writer.close(1_000), ...this.readers.map((r) => r.link.close(0))]);
  }
}
