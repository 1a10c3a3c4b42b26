import type { Registry } from 'prom-client';

/**
 * Counters and histograms for the per-update path. prom-client hashes the label object on every
 * `inc`/`observe`, even on a child resolved once, and validates it: several times the cost of the
 * bookkeeping itself, paid ~6 times per state update. Here a series is a plain object resolved once
 * per label set, and an update is a few additions; the registry reads the series when scraped, in
 * prom-client's own format (same names, labels and buckets as before).
 */

type Labels = Record<string, string>;

interface MetricValue {
  value: number;
  labels: Record<string, string | number>;
  metricName?: string;
}

interface Collectable {
  readonly name: string;
  readonly help: string;
  readonly type: 'counter' | 'histogram';
  readonly aggregator: 'sum';
  get(): { name: string; help: string; type: string; values: MetricValue[]; aggregator: 'sum' };
  reset(): void;
}

abstract class HotMetric<S> implements Collectable {
  abstract readonly type: 'counter' | 'histogram';
  readonly aggregator = 'sum' as const;
  protected readonly series = new Map<string, { labels: Labels; s: S }>();

  constructor(
    readonly name: string,
    readonly help: string,
    private readonly labelNames: readonly string[],
    registry: Registry,
  ) {
    registry.registerMetric(this as unknown as Parameters<Registry['registerMetric']>[0]);
  }

  protected abstract fresh(): S;
  protected abstract valuesOf(labels: Labels, s: S, out: MetricValue[]): void;

  /** The series of these label values, in `labelNames` order: resolve once, keep, use per update. */
  labels(...values: string[]): S {
    const key = values.join('\u0000');
    let e = this.series.get(key);
    if (!e) {
      const labels: Labels = {};
      this.labelNames.forEach((n, i) => (labels[n] = values[i] ?? ''));
      e = { labels, s: this.fresh() };
      this.series.set(key, e);
    }
    return e.s;
  }

  protected byObject(labels: Partial<Labels> = {}): S {
    return this.labels(...this.labelNames.map((n) => labels[n] ?? ''));
  }

  get() {
    const values: MetricValue[] = [];
    for (const { labels, s } of this.series.values()) this.valuesOf(labels, s, values);
    return { name: this.name, help: this.help, type: this.type, values, aggregator: this.aggregator };
  }

  reset(): void {
    this.series.clear();
  }
}

export class CounterSeries {
  value = 0;
  inc(by = 1): void {
    this.value += by;
  }
}

export class HotCounter extends HotMetric<CounterSeries> {
  readonly type = 'counter' as const;

  constructor(name: string, help: string, labelNames: readonly string[], registry: Registry) {
    super(name, help, labelNames, registry);
    // Like prom-client: a metric without labels shows its one series from the start.
    if (labelNames.length === 0) this.labels();
  }

  inc(labels?: Partial<Labels>, by = 1): void {
    this.byObject(labels).inc(by);
  }

  protected fresh(): CounterSeries {
    return new CounterSeries();
  }

  protected valuesOf(labels: Labels, s: CounterSeries, out: MetricValue[]): void {
    out.push({ value: s.value, labels });
  }
}

export class HistogramSeries {
  readonly counts: number[];
  sum = 0;
  count = 0;
  constructor(private readonly bounds: readonly number[]) {
    this.counts = new Array<number>(bounds.length).fill(0);
  }

  observe(v: number): void {
    if (!Number.isFinite(v)) return;
    const b = this.bounds;
    for (let i = 0; i < b.length; i++) {
      if (v <= b[i]) {
        this.counts[i]++;
        break;
      }
    }
    this.sum += v;
    this.count++;
  }
}

export class HotHistogram extends HotMetric<HistogramSeries> {
  readonly type = 'histogram' as const;

  constructor(name: string, help: string, labelNames: readonly string[], private readonly bounds: readonly number[], registry: Registry) {
    super(name, help, labelNames, registry);
    if (labelNames.length === 0) this.labels();
  }

  observe(labels: Partial<Labels> | number, v?: number): void {
    if (typeof labels === 'number') this.byObject().observe(labels);
    else this.byObject(labels).observe(v!);
  }

  /** Like prom-client's: call the result when done, with the labels known only then. */
  startTimer(labels: Partial<Labels> = {}): (more?: Partial<Labels>) => void {
    const t0 = performance.now();
    return (more = {}) => this.byObject({ ...labels, ...more }).observe((performance.now() - t0) / 1000);
  }

  protected fresh(): HistogramSeries {
    return new HistogramSeries(this.bounds);
  }

  protected valuesOf(labels: Labels, s: HistogramSeries, out: MetricValue[]): void {
    let cumulative = 0;
    for (let i = 0; i < this.bounds.length; i++) {
      cumulative += s.counts[i];
      out.push({ value: cumulative, labels: { le: this.bounds[i], ...labels }, metricName: `${this.name}_bucket` });
    }
    out.push({ value: s.count, labels: { le: '+Inf', ...labels }, metricName: `${this.name}_bucket` });
    out.push({ value: s.sum, labels, metricName: `${this.name}_sum` });
    out.push({ value: s.count, labels, metricName: `${this.name}_count` });
  }
}
