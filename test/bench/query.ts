import { closeAll, connectMany, type Filter, type NostrEvent } from './client.ts';
import { perSecond, ReasonTally, round, Samples, type Summary } from './stats.ts';

export type QueryOptions = {
  url: string;
  /** Every author's events as published (all kind 1, threads tagged with `e`). */
  byAuthor: NostrEvent[][];
  /** Ids the relay acknowledged as stored. */
  acceptedIds: Set<string>;
  /** REQs per query type. */
  count: number;
  connections: number;
  /** REQs outstanding per connection (the relay runs up to 4 stored-event queries per connection at once). */
  inflight: number;
  idsPerQuery: number;
  /** Cap per query type. */
  capMs: number;
};

export type QueryTypeResult = {
  filter: string;
  queries: number;
  completed: number;
  seconds: number;
  queries_per_s: number;
  eose_ms: Summary;
  events_per_query: number;
  /** REQs answered with fewer or more events than the bench knows are stored. */
  wrong_count: number;
  closed: number;
  closed_reasons: Record<string, { count: number; example: string }>;
};

export type QueryResult = Record<'authors' | 'e_tag' | 'ids', QueryTypeResult> & { connections: number; inflight: number };

/** One REQ (a single filter) and how many events the bench knows it must return. */
export type Planned = { filter: Filter; expected: number };

/** Deterministic pseudo-random numbers (mulberry32), so runs ask the same questions. */
export function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function plan(opts: QueryOptions): Record<'authors' | 'e_tag' | 'ids', Planned[]> {
  const rand = rng(42);
  const pick = <T>(xs: T[]) => xs[Math.floor(rand() * xs.length)];
  const stored = opts.byAuthor.map((evs) => evs.filter((e) => opts.acceptedIds.has(e.id)));
  const authors = stored.filter((evs) => evs.length > 0);
  const allStored = stored.flat();
  // How many stored events point at each id with an `e` tag.
  const referrers = new Map<string, number>();
  for (const ev of allStored) {
    for (const t of ev.tags) if (t[0] === 'e') referrers.set(t[1], (referrers.get(t[1]) ?? 0) + 1);
  }
  const referenced = [...referrers.keys()];
  if (authors.length === 0 || referenced.length === 0) throw new Error('query phase: nothing was stored during ingest');

  const out = { authors: [] as Planned[], e_tag: [] as Planned[], ids: [] as Planned[] };
  for (let i = 0; i < opts.count; i++) {
    const evs = pick(authors);
    out.authors.push({ filter: { authors: [evs[0].pubkey], kinds: [1], limit: 50 }, expected: Math.min(50, evs.length) });
    const id = pick(referenced);
    out.e_tag.push({ filter: { '#e': [id] }, expected: referrers.get(id)! });
    const ids = new Set<string>();
    while (ids.size < Math.min(opts.idsPerQuery, allStored.length)) ids.add(pick(allStored).id);
    out.ids.push({ filter: { ids: [...ids] }, expected: ids.size });
  }
  return out;
}

/**
 * Each query type in turn: `connections` × `inflight` REQs outstanding, each timed from REQ to
 * EOSE and CLOSEd at EOSE.
 */
export async function runQuery(opts: QueryOptions): Promise<QueryResult> {
  const planned = plan(opts);
  const results = await runPlanned(opts.url, planned, opts);
  return { connections: opts.connections, inflight: opts.inflight, ...(results as Record<keyof typeof planned, QueryTypeResult>) };
}

export type RunLimits = { connections: number; inflight: number; capMs: number };

/** Runs each named list of REQs in turn (in the order of `planned`) over one set of connections. */
export async function runPlanned(
  url: string,
  planned: Record<string, Planned[]>,
  limits: RunLimits,
): Promise<Record<string, QueryTypeResult>> {
  const clients = await connectMany(url, limits.connections);
  let subSeq = 0;
  try {
    const runType = async (queries: Planned[]): Promise<QueryTypeResult> => {
      const eose = new Samples();
      const closedReasons = new ReasonTally();
      let next = 0;
      let completed = 0;
      let events = 0;
      let wrong = 0;
      let closed = 0;
      const t0 = performance.now();
      const deadline = t0 + limits.capMs;
      const lane = async (ci: number) => {
        const client = clients[ci];
        while (next < queries.length && performance.now() < deadline && client.isOpen) {
          const q = queries[next++];
          const r = await client.query(`q${subSeq++}`, [q.filter]);
          if (r.closed !== undefined) {
            closed++;
            closedReasons.add(r.closed);
            continue;
          }
          completed++;
          events += r.events;
          eose.push(r.ms);
          if (r.events !== q.expected) wrong++;
        }
      };
      const lanes = Promise.all(clients.flatMap((_, ci) => Array.from({ length: limits.inflight }, () => lane(ci))));
      // A REQ that never sees EOSE must not hold the bench up forever.
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([lanes, new Promise((r) => (timer = setTimeout(r, limits.capMs + 5000)))]);
      clearTimeout(timer);
      const elapsed = performance.now() - t0;
      return {
        filter: JSON.stringify(queries[0].filter).replace(/[0-9a-f]{64}/g, '…'),
        queries: queries.length,
        completed,
        seconds: round(elapsed / 1000, 3),
        queries_per_s: perSecond(completed, elapsed),
        eose_ms: eose.summary(),
        events_per_query: completed ? round(events / completed, 1) : 0,
        wrong_count: wrong,
        closed,
        closed_reasons: closedReasons.toJSON(),
      };
    };
    const out: Record<string, QueryTypeResult> = {};
    for (const [name, queries] of Object.entries(planned)) out[name] = await runType(queries);
    return out;
  } finally {
    closeAll(clients);
  }
}
