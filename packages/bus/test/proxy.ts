import net from 'node:net';

type Pair = { client: net.Socket; upstream: net.Socket; mute: boolean };

/**
 * A TCP hop to Redis on loopback that a test uses to play Redis faults without touching the real
 * server: refuse connections (nothing listening), cut every connection, lose the reply of the next
 * append (the request reaches Redis, the answer never comes back, then the connection drops), or
 * leave connections open but mute (half-open).
 */
export class RedisProxy {
  private server: net.Server | null = null;
  private pairs = new Set<Pair>();
  private armed: { holdMs: number; done: () => void } | null = null;

  private constructor(
    private readonly target: { host: string; port: number },
    public port: number,
  ) {}

  /** A proxy on a port where nothing listens yet (connections are refused until listen()). */
  static async refusing(redisUrl: string): Promise<RedisProxy> {
    const probe = net.createServer();
    await new Promise<void>((r) => probe.listen(0, '127.0.0.1', () => r()));
    const port = (probe.address() as net.AddressInfo).port;
    await new Promise<void>((r) => probe.close(() => r()));
    const u = new URL(redisUrl);
    return new RedisProxy({ host: u.hostname, port: Number(u.port || 6379) }, port);
  }

  static async forwarding(redisUrl: string): Promise<RedisProxy> {
    const p = await RedisProxy.refusing(redisUrl);
    await p.listen();
    return p;
  }

  url(): string {
    return `redis://127.0.0.1:${this.port}`;
  }

  get connections(): number {
    return this.pairs.size;
  }

  listen(): Promise<void> {
    if (this.server) return Promise.resolve();
    const server = net.createServer((client) => this.accept(client));
    this.server = server;
    return new Promise((resolve, reject) => {
      server.once('error', reject);
      server.listen(this.port, '127.0.0.1', () => resolve());
    });
  }

  private accept(client: net.Socket): void {
    const upstream = net.connect(this.target.port, this.target.host);
    const pair: Pair = { client, upstream, mute: false };
    this.pairs.add(pair);
    const drop = () => {
      client.destroy();
      upstream.destroy();
      this.pairs.delete(pair);
    };
    client.on('error', drop).on('close', drop);
    upstream.on('error', drop).on('close', drop);
    client.on('data', (chunk: Buffer) => {
      upstream.write(chunk);
      const armed = this.armed;
      if (armed && chunk.includes('XADD')) {
        // The append reaches Redis; its reply (and every other) is lost, then the connections drop.
        this.armed = null;
        for (const p of this.pairs) p.mute = true;
        setTimeout(() => {
          this.cut();
          armed.done();
        }, armed.holdMs);
      }
    });
    upstream.on('data', (chunk: Buffer) => {
      if (!pair.mute) client.write(chunk);
    });
  }

  /** Destroys every open connection (new ones are accepted if listening). */
  cut(): void {
    for (const p of [...this.pairs]) {
      p.client.destroy();
      p.upstream.destroy();
      this.pairs.delete(p);
    }
  }

  /** Stops listening (connections are refused) and cuts the open ones. */
  async refuse(): Promise<void> {
    const server = this.server;
    this.server = null;
    this.cut();
    if (server) await new Promise<void>((r) => server.close(() => r()));
  }

  /** The open connections stay open but nothing Redis sends reaches the client any more. */
  muteOpenConnections(): void {
    for (const p of this.pairs) p.mute = true;
  }

  /**
   * The next client chunk carrying an XADD (an append, whether MULTI/EXEC or a script) is
   * forwarded, the replies are dropped, and after holdMs every connection is cut. Resolves then.
   */
  loseNextAppendReply(holdMs = 50, timeoutMs = 10_000): Promise<void> {
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => {
        this.armed = null;
        reject(new Error('no append went through the proxy in time'));
      }, timeoutMs);
      this.armed = {
        holdMs,
        done: () => {
          clearTimeout(t);
          resolve();
        },
      };
    });
  }

  async close(): Promise<void> {
    this.armed = null;
    await this.refuse();
  }
}
