/** A figure measured several times: its median with the spread, and the raw samples. */
export interface Summary {
  median: number;
  min: number;
  max: number;
  /** Number of repetitions. */
  n: number;
  samples: number[];
}

/** The `q` quantile (0..1) of `values`, linearly interpolated between the closest ranks. */
export function quantile(values: readonly number[], q: number): number {
  if (values.length === 0) return Number.NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const position = (sorted.length - 1) * Math.min(1, Math.max(0, q));
  const lower = Math.floor(position);
  const upper = Math.ceil(position);
  const low = sorted[lower]!;
  const high = sorted[upper]!;
  return low + (high - low) * (position - lower);
}

/** The median of `values` (NaN for none). */
export function median(values: readonly number[]): number {
  return quantile(values, 0.5);
}

/** Median, min and max of repeated measurements. */
export function summarize(samples: readonly number[]): Summary {
  const finite = samples.filter((s) => Number.isFinite(s));
  return {
    median: median(finite),
    min: finite.length > 0 ? Math.min(...finite) : Number.NaN,
    max: finite.length > 0 ? Math.max(...finite) : Number.NaN,
    n: finite.length,
    samples: [...finite],
  };
}

/** Milliseconds since an arbitrary origin, with sub-millisecond resolution. */
export function nowMs(): number {
  return performance.now();
}
