/**
 * Counters and histograms for the request path, registered in a prom-client Registry like its own
 * metrics (same exposition, same cluster aggregation through `get()` and `aggregator: 'sum'`).
 *
 * Why not prom-client's Counter and Histogram here: each of their calls validates the label names,
 * builds a hash string, allocates a label/value pair and, for histograms, keys bucket counts by the
 * bound converted to a property name. That was about a microsecond per request on this machine's bench
 * (four calls), for numbers nobody reads until a scrape. Here a call compares its labels with the previous
 * call's (the usual case: same route, same status) or does one Map lookup on the joined label values, then
 * an array increment; the work of shaping the exposition moves to scrape time.
 *
 * Label values must stay bounded (route, issuer and upstream ids, codes): every distinct combination is
 * a series held until the process exits, exactly as with prom-client.
 */
import type { Registry } from 'prom-client';

type Labels<L extends string> = Readonly<Record<L, string>>;

interface MetricValue {
  value: number;
  labels: Record<string, string | number>;
  metricName?: string;
}

interface MetricSnapshot {
  name: string;
  help: string;
  type: 'counter' | 'histogram';
  values: MetricValue[];
  aggregator: 'sum';
}

interface Options<L extends string> {
  readonly name: string;
  readonly help: string;
  readonly labelNames: readonly L[];
  readonly registers: readonly Registry[];
}

/** The series key: label values in declaration order. NUL cannot occur in ids, codes or statuses. */
function keyOf<L extends string>(names: readonly L[], labels: Labels<L>): string {
  let key = labels[names[0]!];
  for (let i = 1; i < names.length; i++) key += '\u0000' + labels[names[i]!];
  return key;
}

function sameLabels<L extends string>(names: readonly L[], own: Record<string, string>, labels: Labels<L>): boolean {
  for (const name of names) if (own[name] !== String(labels[name])) return false;
  return true;
}

/** Only the declared names, copied once per series (the caller's object is not kept). */
function ownLabels<L extends string>(names: readonly L[], labels: Labels<L>): Record<string, string> {
  const own: Record<string, string> = {};
  for (const name of names) own[name] = String(labels[name]);
  return own;
}

/**
 * The series of one metric by label values, shared by both metric kinds: the previous call's series is
 * reused while the labels repeat (a proxy mostly sees the same route and status many times in a row), any
 * other is one Map lookup on the joined values, created on first use.
 */
class SeriesTable<L extends string, S extends { readonly labels: Record<string, string> }> {
  readonly #names: readonly L[];
  readonly #create: (labels: Record<string, string>) => S;
  readonly #series = new Map<string, S>();
  #last: S | undefined;
  /** The values `findValues` found `#last` by; undefined when `find` did. */
  #lastFirst: string | undefined;
  #lastSecond: string | undefined;

  constructor(names: readonly L[], create: (labels: Record<string, string>) => S) {
    this.#names = names;
    this.#create = create;
  }

  find(labels: Labels<L>): S {
    const last = this.#last;
    if (last !== undefined && sameLabels(this.#names, last.labels, labels)) return last;
    const key = keyOf(this.#names, labels);
    let series = this.#series.get(key);
    if (series === undefined) {
      series = this.#create(ownLabels(this.#names, labels));
      this.#series.set(key, series);
    }
    this.#last = series;
    this.#lastFirst = undefined;
    return series;
  }

  /**
   * `find` by label values in declaration order, for metrics of one or two labels. The request path calls
   * this: reading labels by name from objects of every metric's shape made V8's property loads
   * megamorphic (a hash-table probe per label), while two string compares settle the usual repeat.
   */
  findValues(first: string, second: string | undefined): S {
    const last = this.#last;
    if (last !== undefined && first === this.#lastFirst && second === this.#lastSecond) return last;
    const names = this.#names;
    if (names.length !== (second === undefined ? 1 : 2)) {
      throw new Error(`${names.length} label values expected (${names.join(', ')})`);
    }
    const key = second === undefined ? first : `${first}\u0000${second}`;
    let series = this.#series.get(key);
    if (series === undefined) {
      const own: Record<string, string> = {};
      own[names[0]!] = first;
      if (second !== undefined) own[names[1]!] = second;
      series = this.#create(own);
      this.#series.set(key, series);
    }
    this.#last = series;
    this.#lastFirst = first;
    this.#lastSecond = second;
    return series;
  }

  values(): IterableIterator<S> {
    return this.#series.values();
  }

  clear(): void {
    this.#series.clear();
    this.#last = undefined;
    this.#lastFirst = undefined;
  }
}

/** What both metric kinds share: identity, registration and prom-client's `resetMetrics()` contract. */
abstract class HotMetric<L extends string, S extends { readonly labels: Record<string, string> }> {
  readonly name: string;
  readonly help: string;
  readonly aggregator = 'sum';
  protected readonly series: SeriesTable<L, S>;

  constructor(options: Options<L>, create: (labels: Record<string, string>) => S) {
    this.name = options.name;
    this.help = options.help;
    this.series = new SeriesTable(options.labelNames, create);
    for (const registry of options.registers) registry.registerMetric(this as never);
  }

  reset(): void {
    this.series.clear();
  }

  abstract get(): Promise<MetricSnapshot>;
}

export class HotCounter<L extends string> extends HotMetric<L, { readonly labels: Record<string, string>; value: number }> {
  readonly type = 'counter';

  constructor(options: Options<L>) {
    super(options, (labels) => ({ labels, value: 0 }));
  }

  inc(labels: Labels<L>, value = 1): void {
    this.series.find(labels).value += value;
  }

  /** `inc` by one, labels given as values in `labelNames` order (one or two labels). */
  incValues(first: string, second?: string): void {
    this.series.findValues(first, second).value += 1;
  }

  async get(): Promise<MetricSnapshot> {
    const values: MetricValue[] = [];
    for (const { labels, value } of this.series.values()) values.push({ value, labels: { ...labels } });
    return { name: this.name, help: this.help, type: 'counter', values, aggregator: 'sum' };
  }
}

interface HistogramSeries {
  readonly labels: Record<string, string>;
  /** Per bucket, not cumulative; index `bounds.length` is the +Inf bucket. */
  readonly counts: Float64Array;
  sum: number;
  count: number;
}

export class HotHistogram<L extends string> extends HotMetric<L, HistogramSeries> {
  readonly type = 'histogram';
  readonly #bounds: readonly number[];

  constructor(options: Options<L> & { readonly buckets: readonly number[] }) {
    const bounds = [...options.buckets].sort((a, b) => a - b);
    super(options, (labels) => ({ labels, counts: new Float64Array(bounds.length + 1), sum: 0, count: 0 }));
    this.#bounds = bounds;
  }

  observe(labels: Labels<L>, value: number): void {
    // A NaN would poison the sum forever; prom-client throws, a request path must not.
    if (Number.isFinite(value)) this.#add(this.series.find(labels), value);
  }

  /** `observe`, labels given as values in `labelNames` order (one or two labels). */
  observeValues(value: number, first: string, second?: string): void {
    if (Number.isFinite(value)) this.#add(this.series.findValues(first, second), value);
  }

  #add(series: HistogramSeries, value: number): void {
    const bounds = this.#bounds;
    let i = 0;
    while (i < bounds.length && value > bounds[i]!) i++;
    series.counts[i]! += 1;
    series.sum += value;
    series.count += 1;
  }

  async get(): Promise<MetricSnapshot> {
    const values: MetricValue[] = [];
    const bucket = `${this.name}_bucket`;
    for (const series of this.series.values()) {
      let cumulative = 0;
      for (let i = 0; i < this.#bounds.length; i++) {
        cumulative += series.counts[i]!;
        values.push({ value: cumulative, labels: { le: this.#bounds[i]!, ...series.labels }, metricName: bucket });
      }
      values.push({ value: series.count, labels: { le: '+Inf', ...series.labels }, metricName: bucket });
      values.push({ value: series.sum, labels: { ...series.labels }, metricName: `${this.name}_sum` });
      values.push({ value: series.count, labels: { ...series.labels }, metricName: `${this.name}_count` });
    }
    return { name: this.name, help: this.help, type: 'histogram', values, aggregator: 'sum' };
  }
}
