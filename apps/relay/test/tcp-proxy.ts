import { createServer, connect, type Server, type Socket } from 'node:net';

type Pair = { client: Socket; upstream?: Socket };

/**
 * A TCP proxy for fault tests (loopback only): forwards to `target` and can
 * - `cut()`: destroy every socket and stop listening (connections refused) until `restore()`;
 * - `pause()`: a blackhole: bytes in both directions are dropped, sockets stay open, new
 *   connections are accepted but never forwarded, until `resume()`.
 * `dropped` is the client-to-server text dropped while paused (to see which queries were tried).
 */
export class TcpProxy {
  private server: Server | null = null;
  private pairs = new Set<Pair>();
  private paused = false;
  port = 0;
  dropped = '';
  accepted = 0;

  private constructor(private readonly target: { host: string; port: number }) {}

  static async start(target: { host: string; port: number }): Promise<TcpProxy> {
    const p = new TcpProxy(target);
    await p.listen();
    return p;
  }

  private listen(): Promise<void> {
    const server = createServer((client) => this.accept(client));
    this.server = server;
    return new Promise((resolve, reject) => {
      server.once('error', reject);
      server.listen(this.port, '127.0.0.1', () => {
        server.off('error', reject);
        this.port = (server.address() as { port: number }).port;
        resolve();
      });
    });
  }

  private accept(client: Socket): void {
    this.accepted++;
    const pair: Pair = { client };
    this.pairs.add(pair);
    const forget = () => {
      this.pairs.delete(pair);
      client.destroy();
      pair.upstream?.destroy();
    };
    client.on('error', forget);
    client.on('close', forget);
    client.on('data', (chunk) => {
      if (this.paused || !pair.upstream) {
        this.dropped += chunk.toString('latin1');
        return;
      }
      pair.upstream.write(chunk);
    });
    if (this.paused) return; // accepted, never forwarded
    this.connectUpstream(pair, forget);
  }

  private connectUpstream(pair: Pair, forget: () => void): void {
    const upstream = connect(this.target.port, this.target.host);
    pair.upstream = upstream;
    upstream.on('error', forget);
    upstream.on('close', forget);
    upstream.on('data', (chunk) => {
      if (!this.paused) pair.client.write(chunk);
    });
  }

  /** Kills every connection and refuses new ones. */
  async cut(): Promise<void> {
    const server = this.server;
    this.server = null;
    const closed = server ? new Promise<void>((r) => server.close(() => r())) : Promise.resolve();
    for (const p of [...this.pairs]) {
      p.client.destroy();
      p.upstream?.destroy();
    }
    this.pairs.clear();
    await closed;
  }

  /** Listens again on the same port after cut(). */
  async restore(): Promise<void> {
    if (!this.server) await this.listen();
  }

  /** Stops forwarding in both directions; sockets stay open. */
  pause(): void {
    this.paused = true;
    this.dropped = '';
  }

  /**
   * Forwards again on the connections that survived the pause (whatever the relay still uses
   * of them is its own business: the bytes dropped meanwhile are gone). Connections accepted
   * during the pause never reached the server: they are closed.
   */
  resume(): void {
    this.paused = false;
    for (const p of [...this.pairs]) {
      if (!p.upstream) {
        this.pairs.delete(p);
        p.client.destroy();
      }
    }
  }

  async close(): Promise<void> {
    await this.cut();
  }
}
