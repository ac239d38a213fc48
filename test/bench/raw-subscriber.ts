import { randomBytes } from 'node:crypto';
import { connect, type Socket } from 'node:net';
import type { Filter, SubHandlers } from './client.ts';

/**
 * A receive-only WebSocket client for fan-out: a TCP socket, the upgrade written by hand and the
 * server's frames cut from the bytes as they come, with no per-message event, decoding or copy
 * (an EVENT's payload is handed over as a view of the received chunk). The `ws` client costs the
 * bench about 8 µs per delivery, so at 5,000 subscribers × 100 events/s (500,000 deliveries a
 * second) it needed more cores than the machine has before the relay sent anything.
 *
 * Speaks what a relay sends a subscriber: unmasked text frames (fragmented ones are joined),
 * ping (answered), close. Sends masked text frames (REQ) and a close.
 */

const EVENT_PREFIX = Buffer.from('["EVENT","');
const EOSE_PREFIX = Buffer.from('["EOSE","');
const CLOSED_PREFIX = Buffer.from('["CLOSED","');
const HEADERS_END = Buffer.from('\r\n\r\n');
const QUOTE = 0x22;

const startsWith = (b: Buffer, p: Buffer) => b.length >= p.length && b.compare(p, 0, p.length, 0, p.length) === 0;

/** A client frame (masked, as RFC 6455 requires of clients). */
export function clientFrame(opcode: number, payload: Buffer): Buffer {
  const n = payload.length;
  const head = n < 126 ? 2 : n < 65536 ? 4 : 10;
  const out = Buffer.allocUnsafe(head + 4 + n);
  out[0] = 0x80 | opcode;
  if (n < 126) out[1] = 0x80 | n;
  else if (n < 65536) {
    out[1] = 0x80 | 126;
    out.writeUInt16BE(n, 2);
  } else {
    out[1] = 0x80 | 127;
    out.writeBigUInt64BE(BigInt(n), 2);
  }
  const mask = randomBytes(4);
  mask.copy(out, head);
  for (let i = 0; i < n; i++) out[head + 4 + i] = payload[i] ^ mask[i & 3];
  return out;
}

/**
 * Server frames cut from a byte stream that arrives in arbitrary chunks: `push` each chunk,
 * `onFrame` sees every complete message (fragments joined) with its opcode.
 */
export class FrameReader {
  /** Bytes of a frame not complete yet, and how many it needs before it is worth looking again. */
  private pending: Buffer[] = [];
  private pendingBytes = 0;
  private need = 0;
  private fragments: Buffer[] = [];
  private fragmentOpcode = 0;

  constructor(private readonly onFrame: (opcode: number, payload: Buffer) => void) {}

  push(chunk: Buffer): void {
    let buf = chunk;
    if (this.pending.length > 0) {
      // A large frame in many chunks is joined once, when it is all here.
      this.pending.push(chunk);
      this.pendingBytes += chunk.length;
      if (this.pendingBytes < this.need) return;
      buf = Buffer.concat(this.pending, this.pendingBytes);
      this.pending = [];
      this.pendingBytes = 0;
    }
    let i = 0;
    this.need = 2;
    while (buf.length - i >= 2) {
      const b0 = buf[i];
      const b1 = buf[i + 1];
      let len = b1 & 0x7f;
      let head = 2;
      if (len === 126) {
        this.need = 4;
        if (buf.length - i < 4) break;
        len = buf.readUInt16BE(i + 2);
        head = 4;
      } else if (len === 127) {
        this.need = 10;
        if (buf.length - i < 10) break;
        len = buf.readUInt32BE(i + 2) * 2 ** 32 + buf.readUInt32BE(i + 6);
        head = 10;
      }
      const masked = (b1 & 0x80) !== 0;
      if (masked) head += 4;
      this.need = head + len;
      if (buf.length - i < head + len) break;
      this.need = 2;
      let payload = buf.subarray(i + head, i + head + len);
      if (masked) {
        const key = buf.subarray(i + head - 4, i + head);
        payload = Buffer.from(payload);
        for (let k = 0; k < payload.length; k++) payload[k] ^= key[k & 3];
      }
      i += head + len;
      const fin = (b0 & 0x80) !== 0;
      const opcode = b0 & 0x0f;
      if (opcode >= 8) {
        this.onFrame(opcode, payload); // control frames may come between fragments
      } else if (!fin) {
        if (opcode !== 0) this.fragmentOpcode = opcode;
        this.fragments.push(Buffer.from(payload));
      } else if (opcode === 0) {
        this.fragments.push(payload);
        const whole = Buffer.concat(this.fragments);
        this.fragments = [];
        this.onFrame(this.fragmentOpcode, whole);
      } else {
        this.onFrame(opcode, payload);
      }
    }
    // A partial frame waits for the next chunks (copied: the chunk's memory is not ours to keep).
    if (i < buf.length) {
      const rest = Buffer.from(buf.subarray(i));
      this.pending.push(rest);
      this.pendingBytes = rest.length;
    }
  }
}

export class RawSubscriber {
  closedWith: { code: number } | null = null;
  private handlers = new Map<string, SubHandlers>();
  private closing = false;

  private constructor(private readonly socket: Socket) {}

  /** `localAddress`: the source address (any of 127/8 on loopback: the relay sees distinct clients). */
  static connect(url: string, timeoutMs = 10_000, localAddress?: string): Promise<RawSubscriber> {
    const u = new URL(url);
    if (u.protocol !== 'ws:') throw new Error(`raw subscriber: ${url}: only ws:// is supported`);
    return new Promise((resolve, reject) => {
      const socket = connect({ host: u.hostname, port: Number(u.port || 80), ...(localAddress ? { localAddress } : {}) });
      socket.setNoDelay(true);
      const timer = setTimeout(() => fail(new Error(`${url}: no upgrade within ${timeoutMs} ms`)), timeoutMs);
      let settled = false;
      const fail = (err: Error) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        socket.destroy();
        reject(err);
      };
      socket.once('error', fail);
      socket.once('close', () => fail(new Error(`${url}: closed before the upgrade`)));
      socket.once('connect', () => {
        socket.write(
          `GET ${u.pathname}${u.search} HTTP/1.1\r\nHost: ${u.host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
            `Sec-WebSocket-Key: ${randomBytes(16).toString('base64')}\r\nSec-WebSocket-Version: 13\r\n\r\n`,
        );
      });
      let head = Buffer.alloc(0);
      const onHead = (chunk: Buffer) => {
        head = Buffer.concat([head, chunk]);
        const end = head.indexOf(HEADERS_END);
        if (end < 0) {
          if (head.length > 16_384) fail(new Error(`${url}: upgrade response too long`));
          return;
        }
        const status = head.toString('latin1', 0, head.indexOf('\r\n'));
        if (!/^HTTP\/1\.1 101 /.test(status)) return fail(new Error(`${url}: ${status} on upgrade`));
        settled = true;
        clearTimeout(timer);
        socket.off('data', onHead);
        socket.removeAllListeners('error');
        socket.removeAllListeners('close');
        const sub = new RawSubscriber(socket);
        sub.listen(head.subarray(end + HEADERS_END.length));
        resolve(sub);
      };
      socket.on('data', onHead);
    });
  }

  private listen(first: Buffer): void {
    const reader = new FrameReader((opcode, payload) => this.onFrame(opcode, payload));
    this.socket.on('data', (chunk: Buffer) => reader.push(chunk));
    this.socket.on('error', () => {
      /* reported through 'close' */
    });
    this.socket.on('close', () => {
      this.closedWith ??= { code: 1006 };
      for (const h of this.handlers.values()) h.onClosed?.('bench: connection closed');
      this.handlers.clear();
    });
    if (first.length > 0) reader.push(first);
  }

  private onFrame(opcode: number, payload: Buffer): void {
    if (opcode === 1) {
      if (startsWith(payload, EVENT_PREFIX)) {
        const end = payload.indexOf(QUOTE, EVENT_PREFIX.length);
        this.handlers.get(payload.toString('latin1', EVENT_PREFIX.length, end))?.onEvent?.(payload);
      } else if (startsWith(payload, EOSE_PREFIX)) {
        const end = payload.indexOf(QUOTE, EOSE_PREFIX.length);
        this.handlers.get(payload.toString('latin1', EOSE_PREFIX.length, end))?.onEose?.();
      } else if (startsWith(payload, CLOSED_PREFIX)) {
        const end = payload.indexOf(QUOTE, CLOSED_PREFIX.length);
        const id = payload.toString('latin1', CLOSED_PREFIX.length, end);
        const h = this.handlers.get(id);
        this.handlers.delete(id);
        h?.onClosed?.(payload.toString('utf8'));
      }
    } else if (opcode === 9) {
      if (!this.socket.destroyed) this.socket.write(clientFrame(10, payload));
    } else if (opcode === 8) {
      this.closedWith = { code: payload.length >= 2 ? payload.readUInt16BE(0) : 1005 };
      if (!this.socket.destroyed) this.socket.end(clientFrame(8, payload.subarray(0, 2)));
    }
  }

  subscribe(subId: string, filters: Filter[], handlers: SubHandlers): void {
    this.handlers.set(subId, handlers);
    this.socket.write(clientFrame(1, Buffer.from(JSON.stringify(['REQ', subId, ...filters]))));
  }

  /** True when the relay (not us) closed the socket. */
  get droppedByRelay(): boolean {
    return this.closedWith !== null && !this.closing;
  }

  close(): void {
    this.closing = true;
    if (this.socket.destroyed) return;
    const code = Buffer.alloc(2);
    code.writeUInt16BE(1000);
    this.socket.end(clientFrame(8, code));
    setTimeout(() => this.socket.destroy(), 1_000).unref();
  }

  terminate(): void {
    this.closing = true;
    this.socket.destroy();
  }
}
