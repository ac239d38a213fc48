import { createRequire } from 'node:module';

/**
 * A minimal NIP-01 client for load generation: one WebSocket, promises for OK and EOSE,
 * and a raw (unparsed) path for high-volume EVENT deliveries.
 *
 * `ws` is a dependency of the `test` workspace package but its type package is not, so the
 * little of its API used here is typed by hand.
 */
type WsSocket = {
  readyState: number;
  send(data: string, cb?: (err?: Error) => void): void;
  close(code?: number, reason?: string): void;
  terminate(): void;
  on(event: 'open', cb: () => void): void;
  on(event: 'message', cb: (data: Buffer, isBinary: boolean) => void): void;
  on(event: 'close', cb: (code: number, reason: Buffer) => void): void;
  on(event: 'error', cb: (err: Error) => void): void;
  on(event: 'unexpected-response', cb: (req: unknown, res: { statusCode?: number }) => void): void;
};
type WsConstructor = new (url: string, opts?: Record<string, unknown>) => WsSocket;
const WebSocket = createRequire(import.meta.url)('ws') as WsConstructor;
const OPEN = 1;
const EVENT_PREFIX = Buffer.from('["EVENT","');
const QUOTE = 0x22;

import type { NostrEvent } from '@paidrelay/nostr';

export type { NostrEvent };

export type Filter = Record<string, unknown>;

export type OkResult = { ok: boolean; message: string; ms: number };

export type SubHandlers = {
  /**
   * Called with the raw bytes of each ["EVENT", subId, ...] message: not decoded nor parsed, since
   * fan-out delivers hundreds of thousands of them (valid only during the call).
   */
  onEvent?: (raw: Buffer) => void;
  onEose?: () => void;
  onClosed?: (message: string) => void;
};

export type ReqResult = { events: number; ms: number; closed?: string };

export class RelayClient {
  /** NOTICE messages the relay sent (kept up to a bound). */
  readonly notices: string[] = [];
  /** Set when the socket closes; `code` 1000/1005 after our own close(). */
  closedWith: { code: number; reason: string } | null = null;

  private okWaiters = new Map<string, { t0: number; resolve: (r: OkResult) => void }>();
  private subs = new Map<string, SubHandlers>();
  private closing = false;

  private constructor(
    readonly url: string,
    private readonly ws: WsSocket,
  ) {
    ws.on('message', (data) => this.onMessage(data));
    ws.on('close', (code, reason) => {
      this.closedWith = { code, reason: reason.toString() };
      // Nothing more will arrive: settle whatever is still waiting.
      for (const [, w] of this.okWaiters) w.resolve({ ok: false, message: 'bench: connection closed', ms: performance.now() - w.t0 });
      this.okWaiters.clear();
      for (const [, h] of this.subs) h.onClosed?.('bench: connection closed');
      this.subs.clear();
    });
    ws.on('error', () => {
      /* reported through 'close' */
    });
  }

  /** `localAddress`: the source address (any of 127/8 on loopback: the relay sees distinct clients). */
  static connect(url: string, timeoutMs = 10_000, localAddress?: string): Promise<RelayClient> {
    return new Promise((resolve, reject) => {
      // The bench reads what it needs from the raw bytes; skipping UTF-8 validation saves it CPU.
      const ws = new WebSocket(url, {
        perMessageDeflate: false,
        handshakeTimeout: timeoutMs,
        skipUTF8Validation: true,
        ...(localAddress ? { localAddress } : {}),
      });
      let settled = false;
      const fail = (err: Error) => {
        if (settled) return;
        settled = true;
        ws.terminate();
        reject(err);
      };
      ws.on('open', () => {
        settled = true;
        resolve(new RelayClient(url, ws));
      });
      ws.on('unexpected-response', (_req, res) => fail(new Error(`${url}: HTTP ${res.statusCode} on upgrade`)));
      ws.on('error', (err) => fail(err));
      ws.on('close', (code) => fail(new Error(`${url}: closed before open (${code})`)));
    });
  }

  get isOpen(): boolean {
    return this.ws.readyState === OPEN;
  }

  /** Sends ["EVENT", ev]; resolves on the matching OK, with the send-to-OK time. */
  publish(ev: NostrEvent): Promise<OkResult> {
    return new Promise((resolve) => {
      if (!this.isOpen) return resolve({ ok: false, message: 'bench: connection closed', ms: 0 });
      this.okWaiters.set(ev.id, { t0: performance.now(), resolve });
      this.ws.send(`["EVENT",${JSON.stringify(ev)}]`);
    });
  }

  /** Sends a REQ; handlers see its events, EOSE and CLOSED. */
  subscribe(subId: string, filters: Filter[], handlers: SubHandlers): void {
    this.subs.set(subId, handlers);
    this.ws.send(JSON.stringify(['REQ', subId, ...filters]));
  }

  /** A REQ that resolves at EOSE (or CLOSED) with the number of stored events and the time to EOSE; then CLOSEs it. */
  query(subId: string, filters: Filter[]): Promise<ReqResult> {
    return new Promise((resolve) => {
      const t0 = performance.now();
      let events = 0;
      this.subscribe(subId, filters, {
        onEvent: () => events++,
        onEose: () => {
          this.unsubscribe(subId);
          resolve({ events, ms: performance.now() - t0 });
        },
        onClosed: (message) => {
          this.subs.delete(subId);
          resolve({ events, ms: performance.now() - t0, closed: message });
        },
      });
    });
  }

  unsubscribe(subId: string): void {
    this.subs.delete(subId);
    if (this.isOpen) this.ws.send(JSON.stringify(['CLOSE', subId]));
  }

  close(): void {
    this.closing = true;
    if (this.ws.readyState <= OPEN) this.ws.close(1000);
  }

  terminate(): void {
    this.closing = true;
    this.ws.terminate();
  }

  /** True when the relay (not us) closed the socket. */
  get droppedByRelay(): boolean {
    return this.closedWith !== null && !this.closing;
  }

  private onMessage(data: Buffer): void {
    // Hot path: ["EVENT","<subId>",{...}] is handed over as bytes.
    if (data.length > 10 && data.compare(EVENT_PREFIX, 0, EVENT_PREFIX.length, 0, EVENT_PREFIX.length) === 0) {
      const end = data.indexOf(QUOTE, EVENT_PREFIX.length);
      this.subs.get(data.toString('latin1', EVENT_PREFIX.length, end))?.onEvent?.(data);
      return;
    }
    const text = data.toString('utf8');
    let msg: unknown[];
    try {
      msg = JSON.parse(text) as unknown[];
    } catch {
      this.notice(`bench: unparsable message from relay: ${text.slice(0, 100)}`);
      return;
    }
    if (!Array.isArray(msg)) return;
    switch (msg[0]) {
      case 'OK': {
        const w = this.okWaiters.get(msg[1] as string);
        if (!w) return;
        this.okWaiters.delete(msg[1] as string);
        w.resolve({ ok: msg[2] === true, message: String(msg[3] ?? ''), ms: performance.now() - w.t0 });
        return;
      }
      case 'EOSE':
        this.subs.get(msg[1] as string)?.onEose?.();
        return;
      case 'CLOSED': {
        const h = this.subs.get(msg[1] as string);
        this.subs.delete(msg[1] as string);
        h?.onClosed?.(String(msg[2] ?? ''));
        return;
      }
      case 'EVENT': {
        // An EVENT whose JSON did not start the way the hot path expects (extra spaces...).
        this.subs.get(msg[1] as string)?.onEvent?.(data);
        return;
      }
      case 'NOTICE':
        this.notice(String(msg[1]));
        return;
      default:
        // AUTH challenges and anything else: not used by the bench.
        return;
    }
  }

  private notice(message: string): void {
    if (this.notices.length < 100) this.notices.push(message);
  }
}

/** Opens `n` connections, at most `parallel` handshakes at a time. */
export async function connectMany(url: string, n: number, parallel = 50): Promise<RelayClient[]> {
  const out: RelayClient[] = new Array(n);
  let next = 0;
  const worker = async () => {
    while (next < n) {
      const i = next++;
      out[i] = await RelayClient.connect(url);
    }
  };
  try {
    await Promise.all(Array.from({ length: Math.min(parallel, n) }, worker));
  } catch (err) {
    for (const c of out) c?.terminate();
    throw err;
  }
  return out;
}

export function closeAll(clients: RelayClient[]): void {
  for (const c of clients) c?.close();
}
