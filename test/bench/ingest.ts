import { closeAll, connectMany, type NostrEvent, type RelayClient } from './client.ts';
import { perSecond, ReasonTally, round, Samples, type Summary } from './stats.ts';

export type IngestOptions = {
  url: string;
  /** Events per connection, in the order they are sent (connection i sends perConnection[i]). */
  perConnection: NostrEvent[][];
  /** Events per connection sent first and not counted. */
  warmup: number;
  inflight: number;
  /** Stop sending after this long; events not acknowledged by then count as `unacked`. */
  capMs: number;
  onProgress?: (acked: number, total: number) => void;
};

export type IngestResult = {
  connections: number;
  warmup: { events: number; accepted: number };
  inflight: number;
  events: number;
  sent: number;
  accepted: number;
  duplicate: number;
  refused: number;
  unacked: number;
  refusals: Record<string, { count: number; example: string }>;
  seconds: number;
  events_per_s: number;
  ack_ms: Summary;
  connections_dropped: number;
  notices: string[];
  /** Ids the relay accepted (for the query phase). */
  acceptedIds: Set<string>;
};

/**
 * Each connection keeps `inflight` EVENTs outstanding, sending the next one as soon as an OK
 * comes back. Throughput is accepted events over the time from the first send to the last OK.
 */
export async function runIngest(opts: IngestOptions): Promise<IngestResult> {
  const clients = await connectMany(opts.url, opts.perConnection.length);
  try {
    // Warm-up: same connections, not counted (but what it stores is queried later).
    const acceptedIds = new Set<string>();
    let warmupAccepted = 0;
    await Promise.all(
      clients.map((c, i) =>
        Promise.all(
          opts.perConnection[i].slice(0, opts.warmup).map(async (ev) => {
            const r = await c.publish(ev);
            if (r.ok && !r.message.startsWith('duplicate:')) {
              warmupAccepted++;
              acceptedIds.add(ev.id);
            }
          }),
        ),
      ),
    );

    const total = opts.perConnection.reduce((n, evs) => n + Math.max(0, evs.length - opts.warmup), 0);
    const ack = new Samples();
    const refusals = new ReasonTally();
    let sent = 0;
    let acked = 0;
    let accepted = 0;
    let duplicate = 0;
    let refused = 0;
    let lastAck = 0;

    const t0 = performance.now();
    const deadline = t0 + opts.capMs;
    const progress = setInterval(() => opts.onProgress?.(acked, total), 1000);

    // One lane = one outstanding EVENT; `inflight` lanes per connection share its queue.
    const runConnection = async (client: RelayClient, events: NostrEvent[]) => {
      let next = opts.warmup;
      const lane = async () => {
        while (next < events.length && performance.now() < deadline && client.isOpen) {
          const ev = events[next++];
          sent++;
          const r = await client.publish(ev);
          acked++;
          lastAck = performance.now();
          ack.push(r.ms);
          if (r.ok && r.message.startsWith('duplicate:')) duplicate++;
          else if (r.ok) {
            accepted++;
            acceptedIds.add(ev.id);
          } else {
            refused++;
            refusals.add(r.message);
          }
        }
      };
      await Promise.all(Array.from({ length: opts.inflight }, lane));
    };

    let timer: NodeJS.Timeout | undefined;
    const capped = new Promise<void>((r) => (timer = setTimeout(r, opts.capMs + 5000)));
    await Promise.race([Promise.all(clients.map((c, i) => runConnection(c, opts.perConnection[i]))), capped]);
    clearTimeout(timer);
    clearInterval(progress);

    const elapsed = (lastAck || performance.now()) - t0;
    const notices = [...new Set(clients.flatMap((c) => c.notices))].slice(0, 10);
    return {
      connections: clients.length,
      warmup: { events: opts.warmup * clients.length, accepted: warmupAccepted },
      inflight: opts.inflight,
      events: total,
      sent,
      accepted,
      duplicate,
      refused,
      unacked: sent - acked,
      refusals: refusals.toJSON(),
      seconds: round(elapsed / 1000, 3),
      events_per_s: perSecond(accepted, elapsed),
      ack_ms: ack.summary(),
      connections_dropped: clients.filter((c) => c.droppedByRelay).length,
      notices,
      acceptedIds,
    };
  } finally {
    closeAll(clients);
  }
}
