import { randomUUID } from 'node:crypto';
import { createClient, type RedisClientType } from 'redis';
import type { Logger } from 'pino';
import type { Bus, BusHandler } from './bus.ts';

const STREAM_PREFIX = 'paidrelay:bus:';
/** Entries kept per stream: how far a replica can fall behind (an outage) and still catch up. */
const STREAM_MAX_LEN = 100_000;
const OUTBOX_MAX = 50_000;
const BLOCK_MS = 2_000;

/**
 * Redis Streams rather than pub/sub: a replica that loses Redis for a while resumes from
 * the last entry it read, so it catches up on what the other replicas published meanwhile.
 */
export class RedisBus implements Bus {
  readonly id = randomUUID();
  readonly kind = 'redis' as const;
  private writer: RedisClientType;
  private readers: RedisClientType[] = [];
  private outbox: { channel: string; message: string }[] = [];
  private flushing = false;
  private closed = false;

  constructor(
    private readonly url: string,
    private readonly log: Logger,
  ) {
    this.writer = this.client('writer');
  }

  private client(role: string): RedisClientType {
    const c = createClient({
      url: this.url,
      socket: { reconnectStrategy: (retries) => Math.min(100 * 2 ** retries, 2_000) },
    }) as RedisClientType;
    let down = false;
    c.on('error', (err: Error) => {
      if (!down) this.log.warn({ err: err.message, role }, 'redis bus: connection error');
      down = true;
    });
    c.on('ready', () => {
      if (down) this.log.info({ role }, 'redis bus: reconnected');
      down = false;
      if (role === 'writer') void this.flush();
    });
    return c;
  }

  async start(): Promise<void> {
    await this.writer.connect();
  }

  healthy(): boolean {
    return this.writer.isReady;
  }

  publish(channel: string, message: string): void {
    if (this.closed) return;
    if (this.outbox.length >= OUTBOX_MAX) {
      this.outbox.shift();
      this.log.warn('redis bus: outbox full, dropping the oldest message');
    }
    this.outbox.push({ channel, message });
    void this.flush();
  }

  private async flush(): Promise<void> {
    if (this.flushing || !this.writer.isReady) return;
    this.flushing = true;
    try {
      while (this.outbox.length > 0 && this.writer.isReady) {
        const batch = this.outbox.slice(0, 500);
        const multi = this.writer.multi();
        for (const { channel, message } of batch) {
          multi.xAdd(STREAM_PREFIX + channel, '*', { o: this.id, m: message }, {
            TRIM: { strategy: 'MAXLEN', strategyModifier: '~', threshold: STREAM_MAX_LEN },
          });
        }
        await multi.exec();
        this.outbox.splice(0, batch.length);
      }
    } catch (err) {
      this.log.warn({ err: (err as Error).message }, 'redis bus: publish failed, will retry');
    } finally {
      this.flushing = false;
    }
    if (this.outbox.length > 0 && this.writer.isReady && !this.closed) setTimeout(() => void this.flush(), 100);
  }

  async subscribe(channel: string, handler: BusHandler): Promise<void> {
    const reader = this.client('reader');
    this.readers.push(reader);
    await reader.connect();
    const key = STREAM_PREFIX + channel;
    const last = await reader.xRevRange(key, '+', '-', { COUNT: 1 });
    let lastId = last?.[0]?.id ?? '0-0';
    const loop = async () => {
      while (!this.closed) {
        try {
          if (!reader.isReady) {
            await new Promise((r) => setTimeout(r, 200));
            continue;
          }
          const res = await reader.xRead({ key, id: lastId }, { BLOCK: BLOCK_MS, COUNT: 1000 });
          if (!res) continue;
          for (const stream of res as { messages: { id: string; message: Record<string, string> }[] }[]) {
            for (const entry of stream.messages) {
              lastId = entry.id;
              try {
                handler(entry.message.m, entry.message.o);
              } catch (err) {
                this.log.error({ err }, 'redis bus: handler failed');
              }
            }
          }
        } catch (err) {
          if (this.closed) return;
          await new Promise((r) => setTimeout(r, 200));
        }
      }
    };
    void loop();
  }

  async close(): Promise<void> {
    this.closed = true;
    const all = [this.writer, ...this.readers];
    await Promise.all(all.map((c) => c.isOpen ? c.close().catch(() => c.destroy()) : undefined));
  }
}
