/**
 * A tiny in-memory NIP-01 relay for this package's unit tests (the project's relay is tested
 * with it in /work/main/test/lightning.test.ts). Stores regular and replaceable events,
 * broadcasts ephemeral ones without storing them, verifies signatures, answers OK/EOSE.
 */
import { WebSocketServer, type WebSocket } from 'ws';
import { verifyEvent, type Event } from 'nostr-tools/pure';
import { matchFilter, type Filter } from 'nostr-tools/filter';

export type MiniRelay = {
  url: string;
  /** Every EVENT received, accepted or not. */
  received: Event[];
  stored: () => Event[];
  close: () => Promise<void>;
};

export async function startMiniRelay(listenPort = 0): Promise<MiniRelay> {
  const wss = new WebSocketServer({ host: '127.0.0.1', port: listenPort });
  await new Promise<void>((r) => wss.once('listening', () => r()));
  const port = (wss.address() as { port: number }).port;
  let stored: Event[] = [];
  const received: Event[] = [];
  const subs = new Map<WebSocket, Map<string, Filter[]>>();

  wss.on('connection', (ws) => {
    subs.set(ws, new Map());
    ws.on('close', () => subs.delete(ws));
    ws.on('message', (data) => {
      let msg: unknown[];
      try {
        msg = JSON.parse(data.toString()) as unknown[];
      } catch {
        ws.send(JSON.stringify(['NOTICE', 'invalid: bad json']));
        return;
      }
      if (msg[0] === 'EVENT') {
        const ev = msg[1] as Event;
        received.push(ev);
        if (!verifyEvent(ev)) {
          ws.send(JSON.stringify(['OK', ev?.id, false, 'invalid: bad signature']));
          return;
        }
        const k = ev.kind;
        const ephemeral = k >= 20000 && k < 30000;
        const replaceable = k === 0 || k === 3 || (k >= 10000 && k < 20000);
        if (!ephemeral) {
          if (replaceable) stored = stored.filter((e) => !(e.kind === k && e.pubkey === ev.pubkey));
          stored.push(ev);
        }
        ws.send(JSON.stringify(['OK', ev.id, true, '']));
        for (const [client, m] of subs) {
          for (const [id, filters] of m) {
            if (filters.some((f) => matchFilter(f, ev))) client.send(JSON.stringify(['EVENT', id, ev]));
          }
        }
      } else if (msg[0] === 'REQ') {
        const id = msg[1] as string;
        const filters = msg.slice(2) as Filter[];
        subs.get(ws)!.set(id, filters);
        for (const ev of stored) if (filters.some((f) => matchFilter(f, ev))) ws.send(JSON.stringify(['EVENT', id, ev]));
        ws.send(JSON.stringify(['EOSE', id]));
      } else if (msg[0] === 'CLOSE') {
        subs.get(ws)?.delete(msg[1] as string);
      }
    });
  });

  return {
    url: `ws://127.0.0.1:${port}`,
    received,
    stored: () => stored,
    close: () =>
      new Promise<void>((resolve) => {
        for (const c of wss.clients) c.terminate();
        wss.close(() => resolve());
      }),
  };
}
