import { request } from 'node:http';
import { createRequire } from 'node:module';
import { parentPort } from 'node:worker_threads';
import { NWCClient } from '@paidrelay/lightning';
import { RelayClient, type NostrEvent } from './client.ts';

/**
 * One flood of `pnpm bench:spam` on its own thread (its own event loop, so the honest users'
 * latency, measured on the main thread, is not the flood's own sending). Each agent is one key
 * with its connections, each bound to a source address; every connection writes the key's events
 * one after another as fast as the relay answers. With a payer wallet the agent pays what a
 * refusal asks, as a client would: the admission when the refusal names one (once; the grant
 * publishes the held event), else the held event's own invoice (`POST /api/invoices` with
 * product "event", from the connection's source address), each through the dev Lightning
 * network's payer wallet, until the role's budget would be exceeded. Without one it never pays.
 */
export type SpamAgent = { pubkey: string; events: NostrEvent[]; addresses: string[] };
export type SpamJob = {
  role: string;
  urls: string[];
  apiBase: string;
  payerNwc: string | null;
  /** The payer wallet's own source address: its NIP-47 traffic is not the flood's, nor 127.0.0.1's. */
  payerAddress: string;
  budgetMsat: number;
  agents: SpamAgent[];
  /** Agents writing at the same time (the next starts when one has written all its events). */
  parallel: number;
  ms: number;
};
export type SpamCounts = {
  role: string;
  keys_started: number;
  connections: number;
  connect_failed: number;
  sent: number;
  accepted: number;
  duplicate: number;
  rate_limited: number;
  refused: number;
  unanswered: number;
  reconnects: number;
  admissions_paid: number;
  events_paid: number;
  paid_msat: number;
  invoice_failed: Record<string, number>;
  payment_failed: number;
  budget_exhausted: boolean;
  refusals: Record<string, { count: number; example: string }>;
  seconds: number;
};

const OK_TIMEOUT_MS = 10_000;
const HTTP_TIMEOUT_MS = 10_000;
const PAY_TIMEOUT_MS = 15_000;
/** After paying admission, how long a refusal that still asks for it is taken as "not there yet". */
const ADMISSION_SETTLE_MS = 15_000;

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout;
  return Promise.race([
    p.finally(() => clearTimeout(timer)),
    new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`${what}: no answer in ${ms} ms`)), ms);
    }),
  ]);
}

/** A JSON request to the admission API from a given source address (its per-IP limits see that address). */
function postJson(base: string, path: string, body: unknown, localAddress: string): Promise<{ status: number; json: unknown }> {
  const url = new URL(path, base);
  const data = JSON.stringify(body);
  return new Promise((resolve, reject) => {
    const req = request(
      {
        host: url.hostname,
        port: url.port,
        path: url.pathname,
        method: 'POST',
        localAddress,
        headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(data) },
        timeout: HTTP_TIMEOUT_MS,
      },
      (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => (text += c));
        res.on('end', () => {
          let json: unknown = null;
          try {
            json = JSON.parse(text);
          } catch {
            /* not JSON: status alone */
          }
          resolve({ status: res.statusCode ?? 0, json });
        });
        res.on('error', reject);
      },
    );
    req.on('timeout', () => req.destroy(new Error(`POST ${path}: timed out`)));
    req.on('error', reject);
    req.end(data);
  });
}

type WsClass = new (url: string, protocols?: string | string[], opts?: Record<string, unknown>) => object;

/** The WebSocket the NWC client opens (the global one), bound to a source address. */
function bindWalletSockets(localAddress: string): void {
  const Ws = createRequire(import.meta.url)('ws') as WsClass;
  (globalThis as { WebSocket?: unknown }).WebSocket = class extends Ws {
    constructor(url: string, protocols?: string | string[]) {
      super(url, protocols, { localAddress });
    }
  };
}

/** The wait a `rate-limited:` refusal asks for ("retry in 0.2 s"), in ms; 100 when it names none. */
export function retryAfterMs(message: string): number {
  const m = /retry in ([\d.]+) s/.exec(message);
  return m ? Math.min(5000, Math.max(20, Number(m[1]) * 1000)) : 100;
}

/** The refusal asks for admission (or a subscription) before anything else. */
export const asksAdmission = (message: string) => / for admission| days of writing/.test(message);

async function run(job: SpamJob): Promise<SpamCounts> {
  const c: SpamCounts = {
    role: job.role,
    keys_started: 0,
    connections: 0,
    connect_failed: 0,
    sent: 0,
    accepted: 0,
    duplicate: 0,
    rate_limited: 0,
    refused: 0,
    unanswered: 0,
    reconnects: 0,
    admissions_paid: 0,
    events_paid: 0,
    paid_msat: 0,
    invoice_failed: {},
    payment_failed: 0,
    budget_exhausted: false,
    refusals: {},
    seconds: 0,
  };
  bindWalletSockets(job.payerAddress);
  const payer = job.payerNwc ? new NWCClient({ nostrWalletConnectUrl: job.payerNwc }) : null;
  let reservedMsat = 0;
  let running = true;
  let nextConnection = 0;
  const tally = (msg: string) => {
    const colon = msg.indexOf(':');
    const prefix = colon > 0 ? msg.slice(0, colon) : msg || '(empty)';
    const e = (c.refusals[prefix] ??= { count: 0, example: msg.slice(0, 200) });
    e.count++;
  };
  const failInvoice = (why: string) => {
    c.invoice_failed[why] = (c.invoice_failed[why] ?? 0) + 1;
  };

  /** Asks the API for an invoice and pays it within the budget; true when paid. */
  const buy = async (body: Record<string, unknown>, address: string): Promise<boolean> => {
    if (!payer || !running) return false;
    let res: { status: number; json: unknown };
    try {
      res = await postJson(job.apiBase, '/api/invoices', body, address);
    } catch (err) {
      failInvoice(`network: ${(err as Error).message.slice(0, 60)}`);
      await sleep(200);
      return false;
    }
    const inv = res.json as { bolt11?: string; amount_msat?: number } | null;
    if (res.status !== 201 || !inv?.bolt11 || typeof inv.amount_msat !== 'number') {
      failInvoice(String(res.status));
      if (res.status === 429) await sleep(1000);
      return false;
    }
    const amount = inv.amount_msat;
    if (c.paid_msat + reservedMsat + amount > job.budgetMsat) {
      // The next invoice would go over the budget: this flooder stops paying (and writing).
      c.budget_exhausted = true;
      running = false;
      return false;
    }
    reservedMsat += amount;
    try {
      await withTimeout(payer.payInvoice({ invoice: inv.bolt11 }), PAY_TIMEOUT_MS, 'pay_invoice');
      c.paid_msat += amount;
      return true;
    } catch {
      c.payment_failed++;
      return false;
    } finally {
      reservedMsat -= amount;
    }
  };

  const runAgent = async (agent: SpamAgent): Promise<void> => {
    c.keys_started++;
    let admissionPaidAt = 0;
    let admission: Promise<boolean> | null = null;
    let cursor = 0;
    const conns = (
      await Promise.allSettled(
        agent.addresses.map((address) => {
          const url = job.urls[nextConnection++ % job.urls.length];
          return RelayClient.connect(url, 10_000, address).then((client) => ({ client, address, url }));
        }),
      )
    ).flatMap((r) => {
      if (r.status === 'fulfilled') return [r.value];
      c.connect_failed++;
      return [];
    });
    c.connections += conns.length;
    /** Writes `ev` until it is stored, refused for good, or paid for; true to move on to the next event. */
    const write = async (client: RelayClient, address: string, ev: NostrEvent): Promise<boolean> => {
      c.sent++;
      let r: { ok: boolean; message: string };
      try {
        r = await withTimeout(client.publish(ev), OK_TIMEOUT_MS, 'OK');
      } catch {
        c.unanswered++;
        return true;
      }
      if (r.ok) {
        if (r.message.startsWith('duplicate:')) c.duplicate++;
        else c.accepted++;
        return true;
      }
      if (r.message.startsWith('rate-limited:')) {
        // As fast as the relay lets it: the same event again when the relay says its bucket has refilled.
        c.rate_limited++;
        await sleep(retryAfterMs(r.message));
        return false;
      }
      c.refused++;
      tally(r.message);
      if (!payer || !r.message.includes('payment required')) return true;
      if (asksAdmission(r.message)) {
        // One admission per key: the grant publishes this held event; until every replica
        // has heard of it, a refusal that still asks for admission is waited out, not paid again.
        if (!admission && Date.now() - admissionPaidAt > ADMISSION_SETTLE_MS) {
          admission = buy({ pubkey: agent.pubkey, product: 'admission' }, address).then((paid) => {
            if (paid) {
              c.admissions_paid++;
              admissionPaidAt = Date.now();
            }
            admission = null;
            return paid;
          });
        }
        const paid = admission ? await admission : true;
        await sleep(paid ? 200 : 1000);
        // Not paid (over budget, or the API said no): this event is given up.
        return !paid;
      }
      // Beyond the allowance: this event's own invoice; paying it publishes the held event.
      if (await buy({ pubkey: agent.pubkey, product: 'event', event_id: ev.id }, address)) c.events_paid++;
      return true;
    };
    const loop = async (conn: { client: RelayClient; address: string; url: string }) => {
      while (running && cursor < agent.events.length) {
        const ev = agent.events[cursor++];
        for (;;) {
          if (!conn.client.isOpen) {
            // Closed by the relay (a flood of refusals): a flooder opens another at once.
            try {
              conn.client = await RelayClient.connect(conn.url, 10_000, conn.address);
              c.reconnects++;
            } catch {
              await sleep(200);
            }
            if (!running) return;
            continue;
          }
          if ((await write(conn.client, conn.address, ev)) || !running) break;
        }
      }
      conn.client.close();
    };
    await Promise.all(conns.map(loop));
  };

  const t0 = performance.now();
  const stop = setTimeout(() => {
    running = false;
  }, job.ms);
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(job.parallel, job.agents.length) }, async () => {
      while (running && next < job.agents.length) await runAgent(job.agents[next++]);
    }),
  );
  clearTimeout(stop);
  c.seconds = (performance.now() - t0) / 1000;
  payer?.close();
  return c;
}

parentPort?.on('message', (job: SpamJob) => {
  run(job).then(
    (counts) => parentPort!.postMessage({ counts }),
    (err: Error) => parentPort!.postMessage({ error: err.stack ?? err.message }),
  );
});
