/** Latency figures, all in milliseconds, rounded to 0.01 ms. */
export type Summary = { count: number; mean: number; p50: number; p90: number; p99: number; max: number };

const round = (x: number, digits = 2) => {
  const f = 10 ** digits;
  return Math.round(x * f) / f;
};

/** Nearest-rank percentile of an ascending array (p in 0..100). */
export function percentile(sorted: ArrayLike<number>, p: number): number {
  if (sorted.length === 0) return NaN;
  const rank = Math.ceil((p / 100) * sorted.length);
  return sorted[Math.min(sorted.length - 1, Math.max(0, rank - 1))];
}

export function summarize(values: ArrayLike<number>): Summary {
  const sorted = Float64Array.from(values).sort();
  if (sorted.length === 0) return { count: 0, mean: 0, p50: 0, p90: 0, p99: 0, max: 0 };
  let sum = 0;
  for (const v of sorted) sum += v;
  return {
    count: sorted.length,
    mean: round(sum / sorted.length),
    p50: round(percentile(sorted, 50)),
    p90: round(percentile(sorted, 90)),
    p99: round(percentile(sorted, 99)),
    max: round(sorted[sorted.length - 1]),
  };
}

/** A growable array of doubles, cheap to push hundreds of thousands of samples into. */
export class Samples {
  private buf = new Float64Array(1024);
  length = 0;

  push(v: number): void {
    if (this.length === this.buf.length) {
      const next = new Float64Array(this.buf.length * 2);
      next.set(this.buf);
      this.buf = next;
    }
    this.buf[this.length++] = v;
  }

  values(): Float64Array {
    return this.buf.subarray(0, this.length);
  }

  summary(): Summary {
    return summarize(this.values());
  }
}

/** Counts of refusal reasons keyed by their NIP-01 prefix ("invalid", "error", ...), with one sample message each. */
export class ReasonTally {
  private counts = new Map<string, { count: number; example: string }>();

  add(message: string): void {
    const colon = message.indexOf(':');
    const prefix = colon > 0 ? message.slice(0, colon) : message || '(empty)';
    const entry = this.counts.get(prefix);
    if (entry) entry.count++;
    else this.counts.set(prefix, { count: 1, example: message.slice(0, 200) });
  }

  toJSON(): Record<string, { count: number; example: string }> {
    return Object.fromEntries(this.counts);
  }
}

export const perSecond = (n: number, ms: number) => (ms > 0 ? round((n * 1000) / ms, 1) : 0);
export { round };
