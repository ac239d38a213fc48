import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

/** One registry per relay instance, so several relays in one test process do not collide. */
export function createMetrics() {
  const registry = new Registry();
  /** Read at scrape time; the relay sets them once the parts exist. */
  const probes = { busUp: () => true };
  const tallies = { messages: new Tally('type'), events: new Tally('result', 'reason') };
  collectDefaultMetrics({ register: registry });
  return {
    registry,
    probes,
    busUp: new Gauge({
      name: 'relay_bus_up',
      help: '1 when the bus backend (Redis) is reachable, 0 when not (always 1 in memory)',
      registers: [registry],
      collect() {
        this.set(probes.busUp() ? 1 : 0);
      },
    }),
    connections: new Gauge({ name: 'relay_connections', help: 'Open WebSocket connections', registers: [registry] }),
    subscriptions: new Gauge({ name: 'relay_subscriptions', help: 'Open live subscriptions', registers: [registry] }),
    messages: new Counter({
      name: 'relay_messages_total',
      help: 'Client messages received, by verb',
      labelNames: ['type'],
      registers: [registry],
      collect() {
        tallies.messages.addTo(this);
      },
    }),
    events: new Counter({
      name: 'relay_events_total',
      help: 'EVENT messages answered, by result and reason prefix (result "dropped": refused unanswered, a flood)',
      labelNames: ['result', 'reason'],
      registers: [registry],
      collect() {
        tallies.events.addTo(this);
      },
    }),
    /** The same two counters on the path of every message (ingest.ts): see Tally. */
    tallies,
    delivered: new Counter({ name: 'relay_events_delivered_total', help: 'Events sent to live subscriptions', registers: [registry] }),
    recentCache: new Counter({
      name: 'relay_recent_cache_total',
      help: 'The recent-events cache (recent-cache.ts): REQs answered from it (hit) or sent to Postgres (miss), author windows loaded and evicted',
      labelNames: ['outcome'],
      registers: [registry],
    }),
    queryDuration: new Histogram({
      name: 'relay_query_duration_seconds',
      help: 'Time to answer the stored part of a REQ or COUNT',
      labelNames: ['type'],
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
      registers: [registry],
    }),
    commitDuration: new Histogram({
      name: 'relay_commit_duration_seconds',
      help: 'Time of one group-commit transaction',
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
      registers: [registry],
    }),
    commitTransactions: new Counter({
      name: 'relay_commit_transactions_total',
      help: 'Group-commit transactions, by result (a rolled-back one is retried or answered error:)',
      labelNames: ['result'],
      registers: [registry],
    }),
    commitBatch: new Histogram({
      name: 'relay_commit_batch_size',
      help: 'Events per group-commit transaction',
      buckets: [1, 2, 5, 10, 25, 50, 100, 250, 500, 1000],
      registers: [registry],
    }),
    verifyBatch: new Histogram({
      name: 'relay_verify_batch_size',
      help: 'Signatures per verification batch',
      buckets: [1, 2, 5, 10, 25, 50, 100, 250, 500],
      registers: [registry],
    }),
  };
}

export type Metrics = ReturnType<typeof createMetrics>;

type Cell = { labels: Record<string, string>; n: number };

/**
 * Increments of a counter with one or two labels, by their values, for a path every message
 * takes (a flood's too): prom-client's `inc(labels)` writes the labels out as a string and looks
 * it up on every call, which cost a refused message as much as its refusal. Here the values find
 * their cell in two map lookups, and the counts are added to the counter when it is read (its
 * `collect`, before every scrape or `get()`).
 */
export class Tally {
  private readonly cells = new Map<string, Map<string, Cell>>();
  private readonly names: [string] | [string, string];

  constructor(...names: [string] | [string, string]) {
    this.names = names;
  }

  inc(first: string, second = ''): void {
    let byFirst = this.cells.get(first);
    if (!byFirst) this.cells.set(first, (byFirst = new Map()));
    const cell = byFirst.get(second);
    if (cell) cell.n++;
    else byFirst.set(second, { labels: this.labels(first, second), n: 1 });
  }

  /** Adds what was counted since the last call to `counter`. */
  addTo(counter: Counter<string>): void {
    for (const byFirst of this.cells.values()) {
      for (const cell of byFirst.values()) {
        if (cell.n === 0) continue;
        counter.inc(cell.labels, cell.n);
        cell.n = 0;
      }
    }
  }

  private labels(first: string, second: string): Record<string, string> {
    const [a, b] = this.names;
    return b === undefined ? { [a]: first } : { [a]: first, [b]: second };
  }
}
