/**
 * The relay's own Prometheus figures (GET /metrics on its port), read before and after each
 * phase: how many group commits ran and how big and long they were, signature-verification
 * batch sizes, and the server-side query time. Missing metrics are simply left out.
 */
import { round } from './stats.ts';

export type MetricsSnapshot = Map<string, number>;

/** Sums every series of a metric name over its labels, except the labels kept in `by`. */
export async function scrapeMetrics(httpUrl: string): Promise<MetricsSnapshot | null> {
  try {
    const res = await fetch(`${httpUrl}/metrics`, { signal: AbortSignal.timeout(3000) });
    if (!res.ok) return null;
    const out: MetricsSnapshot = new Map();
    for (const line of (await res.text()).split('\n')) {
      if (!line || line.startsWith('#')) continue;
      const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)/.exec(line);
      if (!m || m[1].endsWith('_bucket')) continue;
      // Keep the `type` label (query kinds) and `outcome` (the recent-events cache's); fold the others.
      const type = m[2] ? /(?:type|outcome)="([^"]*)"/.exec(m[2])?.[1] : undefined;
      const key = type ? `${m[1]}{${type}}` : m[1];
      out.set(key, (out.get(key) ?? 0) + Number(m[3]));
    }
    return out;
  } catch {
    return null;
  }
}

/** What happened inside the relay between two snapshots. */
export function metricsDelta(a: MetricsSnapshot | null, b: MetricsSnapshot | null): Record<string, number> | null {
  if (!a || !b) return null;
  const d = (k: string) => (b.get(k) ?? 0) - (a.get(k) ?? 0);
  const mean = (sum: string, count: string, scale = 1) => (d(count) > 0 ? round((d(sum) / d(count)) * scale, 2) : undefined);
  const out: Record<string, number | undefined> = {
    commits: d('relay_commit_duration_seconds_count'),
    commit_ms_mean: mean('relay_commit_duration_seconds_sum', 'relay_commit_duration_seconds_count', 1000),
    commit_batch_mean: mean('relay_commit_batch_size_sum', 'relay_commit_batch_size_count'),
    verify_batches: d('relay_verify_batch_size_count'),
    verify_batch_mean: mean('relay_verify_batch_size_sum', 'relay_verify_batch_size_count'),
    req_query_ms_mean: mean('relay_query_duration_seconds_sum{req}', 'relay_query_duration_seconds_count{req}', 1000),
    delivered: d('relay_events_delivered_total'),
    cache_hits: d('relay_recent_cache_total{hit}'),
    cache_misses: d('relay_recent_cache_total{miss}'),
    cache_loads: d('relay_recent_cache_total{load}'),
    cache_evictions: d('relay_recent_cache_total{eviction}'),
  };
  for (const k of Object.keys(out)) if (out[k] === undefined || out[k] === 0) delete out[k];
  return out as Record<string, number>;
}
