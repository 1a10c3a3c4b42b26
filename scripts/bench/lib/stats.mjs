// Latency statistics for benchmark scenarios.

/** A growable list of latencies in ms, preallocated for `capacity` samples. */
export class Latencies {
  constructor(capacity) {
    this.values = new Float64Array(Math.max(1, capacity));
    this.n = 0;
  }
  add(ms) {
    if (this.n === this.values.length) {
      const bigger = new Float64Array(this.values.length * 2);
      bigger.set(this.values);
      this.values = bigger;
    }
    this.values[this.n++] = ms;
  }
  /** { n, p50, p90, p99, max, mean } in ms (nearest-rank percentiles); nulls when empty. */
  summary() {
    const n = this.n;
    if (n === 0) return { n, p50: null, p90: null, p99: null, max: null, mean: null };
    const s = this.values.slice(0, n).sort();
    const q = (p) => s[Math.min(n - 1, Math.max(0, Math.ceil(p * n) - 1))];
    let sum = 0;
    for (let i = 0; i < n; i++) sum += s[i];
    return { n, p50: q(0.5), p90: q(0.9), p99: q(0.99), max: s[n - 1], mean: sum / n };
  }
}

/** Rounds for reports: ms to the microsecond, rates to 0.1. */
export const roundMs = (v) => (v === null ? null : Math.round(v * 1000) / 1000);
export const roundRate = (v) => (v === null ? null : Math.round(v * 10) / 10);

/** The median of a list of numbers (the mean of the middle two for an even count). */
export function median(values) {
  const s = [...values].sort((x, y) => x - y);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

/**
 * The geometric mean of ratios. The paired harnesses alternate which build goes first, and on this
 * machine the build that goes first in a pair can read ~10% dearer: per-round ratios then fall in
 * two groups, and their median lands wherever the groups meet; the geometric mean weighs both.
 */
export function geomean(ratios) {
  let sum = 0;
  for (const r of ratios) sum += Math.log(r);
  return Math.exp(sum / ratios.length);
}
