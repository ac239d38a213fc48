/**
 * The fan-out bench's raw subscriber: frames cut right from chunks of any size, and a real
 * WebSocket server (`ws`) talking to it: EOSE, EVENTs of every length encoding, a fragmented
 * message, a ping between fragments, the close.
 */
import { createRequire } from 'node:module';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FrameReader, RawSubscriber } from './raw-subscriber.ts';

type WsServer = {
  on(event: 'connection', cb: (ws: WsPeer) => void): void;
  address(): AddressInfo;
  close(cb?: () => void): void;
};
type WsPeer = {
  on(event: 'message', cb: (data: Buffer) => void): void;
  on(event: 'pong', cb: (data: Buffer) => void): void;
  on(event: 'close', cb: (code: number) => void): void;
  send(data: string, opts?: { fin?: boolean }): void;
  ping(data: Buffer): void;
  close(code: number): void;
};
const { WebSocketServer } = createRequire(import.meta.url)('ws') as {
  WebSocketServer: new (opts: { port: number; host: string }, cb: () => void) => WsServer;
};

/** A server frame, unmasked. */
function serverFrame(opcode: number, payload: Buffer, fin = true): Buffer {
  const n = payload.length;
  const head = n < 126 ? Buffer.from([0, n]) : n < 65536 ? Buffer.alloc(4) : Buffer.alloc(10);
  if (n >= 126 && n < 65536) {
    head[1] = 126;
    head.writeUInt16BE(n, 2);
  } else if (n >= 65536) {
    head[1] = 127;
    head.writeBigUInt64BE(BigInt(n), 2);
  }
  head[0] = (fin ? 0x80 : 0) | opcode;
  return Buffer.concat([head, payload]);
}

describe('FrameReader', () => {
  it('cuts the same messages from a stream however it is chunked', () => {
    const messages = [5, 125, 126, 300, 65_535, 65_536, 200_000].map((n, i) => Buffer.alloc(n, 97 + i));
    const stream = Buffer.concat([
      ...messages.map((m) => serverFrame(1, m)),
      serverFrame(1, Buffer.from('frag-'), false),
      serverFrame(9, Buffer.from('ping')),
      serverFrame(0, Buffer.from('ment'), false),
      serverFrame(0, Buffer.from('ed'), true),
    ]);
    for (const size of [1, 2, 3, 7, 100, 4096, stream.length]) {
      const got: [number, string][] = [];
      const reader = new FrameReader((op, p) => got.push([op, p.toString('latin1')]));
      for (let i = 0; i < stream.length; i += size) reader.push(stream.subarray(i, i + size));
      expect(got).toEqual([...messages.map((m): [number, string] => [1, m.toString('latin1')]), [9, 'ping'], [1, 'frag-mented']]);
    }
  });
});

describe('RawSubscriber against a real WebSocket server', () => {
  let server: WsServer;
  let url: string;
  const pongs: string[] = [];
  const closes: number[] = [];

  beforeAll(async () => {
    await new Promise<void>((resolve) => {
      server = new WebSocketServer({ port: 0, host: '127.0.0.1' }, resolve);
    });
    url = `ws://127.0.0.1:${server.address().port}/`;
    server.on('connection', (ws) => {
      ws.on('pong', (d) => pongs.push(d.toString()));
      ws.on('close', (code) => closes.push(code));
      ws.on('message', (data) => {
        const [verb, subId] = JSON.parse(data.toString()) as [string, string];
        if (verb !== 'REQ') return;
        ws.send(`["EOSE",${JSON.stringify(subId)}]`);
        for (const n of [10, 200, 70_000]) ws.send(`["EVENT",${JSON.stringify(subId)},{"content":"${'x'.repeat(n)}"}]`);
        ws.ping(Buffer.from('are you there'));
        ws.send(`["EVENT",${JSON.stringify(subId)},`, { fin: false });
        ws.send('{"content":"in two parts"}]', { fin: true });
        ws.send(`["CLOSED",${JSON.stringify(subId)},"bye"]`);
      });
    });
  });
  afterAll(async () => {
    await new Promise<void>((r) => server?.close(() => r()));
  });

  it('subscribes, sees EOSE, every EVENT whole and CLOSED; answers the ping; closes cleanly', async () => {
    const sub = await RawSubscriber.connect(url, 5_000, '127.0.0.1');
    const events: string[] = [];
    let eose = 0;
    const closed = await new Promise<string>((resolve) => {
      sub.subscribe('feed', [{ kinds: [1] }], {
        onEvent: (raw) => events.push(raw.toString('utf8')),
        onEose: () => eose++,
        onClosed: resolve,
      });
    });
    expect(eose).toBe(1);
    expect(events.map((e) => (JSON.parse(e) as [string, string, { content: string }])[2].content.length)).toEqual([10, 200, 70_000, 12]);
    expect(closed).toBe('["CLOSED","feed","bye"]');
    await new Promise((r) => setTimeout(r, 100));
    expect(pongs).toEqual(['are you there']);
    sub.close();
    await new Promise((r) => setTimeout(r, 200));
    expect(closes).toEqual([1000]);
    expect(sub.droppedByRelay).toBe(false);
  });

  it('fails with the status when the server refuses the upgrade', async () => {
    await expect(RawSubscriber.connect('ws://127.0.0.1:1/', 2_000)).rejects.toThrow();
  });
});
