import { createRequire } from 'node:module';
import { parentPort } from 'node:worker_threads';
import type { NostrEvent } from './client.ts';

/**
 * Flood thread or process (its own event loop, so the honest clients' latency is measured undisturbed by
 * the flood's sending): opens the connections from their source addresses, keeps `window`
 * EVENTs outstanding on each, and sends the next one as soon as one is answered (an OK, or the
 * per-connection NOTICE `rate-limited:` that takes the place of an OK), cycling through the pool,
 * for `ms`. A flooder does not wait on a relay that stops answering: a connection that got no
 * answer for 100 ms sends another window's worth. A connection the relay closes is opened again
 * at once, from the same address (`closed_by_relay`, `reconnects`; an upgrade the relay refuses
 * is retried after 100 ms). Answers are counted by kind and reason prefix.
 */
export type FloodJob = { url: string; events: NostrEvent[]; addresses: string[]; window: number; ms: number };
export type FloodCounts = {
  connections: number;
  connect_failed: number;
  sent: number;
  accepted: number;
  duplicate: number;
  refused: number;
  notices: number;
  closed_by_relay: number;
  reconnects: number;
  refusals: Record<string, { count: number; example: string }>;
  seconds: number;
};

type Ws = {
  readyState: number;
  send(data: string): void;
  close(): void;
  terminate(): void;
  on(ev: string, cb: (...a: never[]) => void): void;
};
const WebSocket = createRequire(import.meta.url)('ws') as new (url: string, opts: Record<string, unknown>) => Ws;

function connect(url: string, localAddress: string): Promise<Ws> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, { localAddress, perMessageDeflate: false, handshakeTimeout: 10_000 });
    ws.on('open', () => resolve(ws));
    ws.on('error', (err: Error) => reject(err));
    ws.on('unexpected-response', () => reject(new Error('refused on upgrade')));
  });
}

async function flood(job: FloodJob): Promise<FloodCounts> {
  const c: FloodCounts = {
    connections: 0,
    connect_failed: 0,
    sent: 0,
    accepted: 0,
    duplicate: 0,
    refused: 0,
    notices: 0,
    closed_by_relay: 0,
    reconnects: 0,
    refusals: {},
    seconds: 0,
  };
  const addressOf: string[] = [];
  const socks = (await Promise.allSettled(job.addresses.map((a) => connect(job.url, a)))).flatMap((r, i) => {
    if (r.status === 'fulfilled') {
      addressOf.push(job.addresses[i]);
      return [r.value];
    }
    c.connect_failed++;
    return [];
  });
  c.connections = socks.length;
  const frames = job.events.map((ev) => `["EVENT",${JSON.stringify(ev)}]`);
  let next = 0;
  let running = true;
  const open = new Set<Ws>(socks);
  const tally = (msg: string) => {
    const colon = msg.indexOf(':');
    const prefix = colon > 0 ? msg.slice(0, colon) : msg || '(empty)';
    const e = (c.refusals[prefix] ??= { count: 0, example: msg.slice(0, 160) });
    e.count++;
  };
  const reopen = (address: string) => {
    if (!running) return;
    connect(job.url, address).then(
      (ws) => {
        c.reconnects++;
        drive(ws, address);
      },
      () => setTimeout(() => reopen(address), 100),
    );
  };
  const drive = (ws: Ws, address: string) => {
    open.add(ws);
    ws.on('close', () => {
      open.delete(ws);
      if (!running) return;
      c.closed_by_relay++;
      reopen(address);
    });
    const pump = () => {
      if (!running || ws.readyState !== 1) return;
      ws.send(frames[next++ % frames.length]);
      c.sent++;
    };
    let answered = false;
    const impatient = setInterval(() => {
      if (!running || ws.readyState !== 1) return clearInterval(impatient);
      if (!answered) for (let i = 0; i < job.window; i++) pump();
      answered = false;
    }, 100);
    ws.on('message', (data: Buffer) => {
      answered = true;
      const text = data.toString();
      if (text.startsWith('["OK"')) {
        const m = JSON.parse(text) as [string, string, boolean, string];
        if (m[2] && m[3].startsWith('duplicate:')) c.duplicate++;
        else if (m[2]) c.accepted++;
        else {
          c.refused++;
          tally(m[3]);
        }
        pump();
      } else if (text.startsWith('["NOTICE"')) {
        c.notices++;
        tally(`notice ${(JSON.parse(text) as string[])[1]}`);
        pump();
      }
    });
    for (let i = 0; i < job.window; i++) pump();
  };
  const t0 = performance.now();
  socks.forEach((ws, i) => drive(ws, addressOf[i]));
  await new Promise((r) => setTimeout(r, job.ms));
  running = false;
  c.seconds = (performance.now() - t0) / 1000;
  // Answers still on their way are not counted; the next phase starts after a pause.
  for (const ws of open) ws.terminate();
  return c;
}

// On a worker thread (runWorker), or in a process of its own (startFloodProcess, `--pin`: it says
// when it is ready, so the phase does not start while it is still compiling).
const port = parentPort ?? {
  on: (_: 'message', f: (job: FloodJob) => void) => process.on('message', f),
  postMessage: (m: unknown) => process.send!(m),
};
port.on('message', (job: FloodJob) => {
  flood(job).then(
    (counts) => port.postMessage({ counts }),
    (err: Error) => port.postMessage({ error: err.message }),
  );
});
if (!parentPort) port.postMessage({ ready: true });
