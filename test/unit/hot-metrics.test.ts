/**
 * The request-path metrics must be indistinguishable from prom-client's own: the same exposition text for
 * the same observations, and the same cluster aggregation.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { AggregatorRegistry, Counter, Histogram, Registry } from 'prom-client';
import { HotCounter, HotHistogram } from '../../src/hot-metrics.ts';

const BUCKETS = [0.001, 0.01, 0.1, 1];
const OBSERVATIONS: [string, string, number][] = [
  ['a', '200', 0.0005],
  ['a', '200', 0.001], // on a bound: counted in that bucket (le is <=)
  ['a', '200', 0.05],
  ['a', '502', 3],
  ['b', '200', 0.2],
  ['a', '200', 1e9],
];

function both() {
  const hot = new Registry();
  const reference = new Registry();
  const labelNames = ['route', 'status'] as const;
  return {
    hot,
    reference,
    counters: [
      new HotCounter({ name: 't_requests_total', help: 'requests', labelNames, registers: [hot] }),
      new Counter({ name: 't_requests_total', help: 'requests', labelNames, registers: [reference] }),
    ],
    histograms: [
      new HotHistogram({ name: 't_duration_seconds', help: 'duration', labelNames, buckets: BUCKETS, registers: [hot] }),
      new Histogram({ name: 't_duration_seconds', help: 'duration', labelNames, buckets: BUCKETS, registers: [reference] }),
    ],
  };
}

test('the exposition text is the same as prom-client for the same observations', async () => {
  const { hot, reference, counters, histograms } = both();
  for (const [route, status, value] of OBSERVATIONS) {
    for (const c of counters) c.inc({ route, status });
    for (const h of histograms) h.observe({ route, status }, value);
  }
  for (const c of counters) c.inc({ route: 'b', status: '200' }, 5);
  assert.equal(await hot.metrics(), await reference.metrics());
  assert.match(await hot.metrics(), /t_duration_seconds_bucket\{le="0.001",route="a",status="200"\} 2/);
});

test('label values given in order count in the same series as labels given by name', async () => {
  const { hot, reference, counters, histograms } = both();
  const [hotCounter, refCounter] = counters as [HotCounter<'route' | 'status'>, Counter];
  const [hotHistogram, refHistogram] = histograms as [HotHistogram<'route' | 'status'>, Histogram];
  for (const [i, [route, status, value]] of OBSERVATIONS.entries()) {
    // Alternating the two forms exercises both memos of the previous series against each other.
    if (i % 2 === 0) {
      hotCounter.incValues(route, status);
      hotHistogram.observeValues(value, route, status);
    } else {
      hotCounter.inc({ route, status });
      hotHistogram.observe({ route, status }, value);
    }
    refCounter.inc({ route, status });
    refHistogram.observe({ route, status }, value);
  }
  hotHistogram.observeValues(Number.NaN, 'a', '200');
  assert.equal(await hot.metrics(), await reference.metrics());
});

test('label values of the wrong count are refused, not counted under a wrong series', async () => {
  const { hot, counters, histograms } = both();
  const counter = counters[0] as HotCounter<'route' | 'status'>;
  assert.throws(() => counter.incValues('a'), /2 label values expected \(route, status\)/);
  assert.throws(() => (histograms[0] as HotHistogram<'route' | 'status'>).observeValues(1, 'a'), /2 label values expected/);
  const one = new HotCounter({ name: 't_one_total', help: 'one', labelNames: ['reason'], registers: [hot] });
  assert.throws(() => one.incValues('x', 'y'), /1 label values expected \(reason\)/);
  one.incValues('x');
  assert.match(await hot.metrics(), /t_one_total\{reason="x"\} 1\n/);
  assert.doesNotMatch(await hot.metrics(), /t_requests_total\{/);
});

test('a non-finite observation is dropped instead of poisoning the sum', async () => {
  const { hot, histograms } = both();
  histograms[0]!.observe({ route: 'a', status: '200' }, 0.5);
  histograms[0]!.observe({ route: 'a', status: '200' }, Number.NaN);
  assert.match(await hot.metrics(), /t_duration_seconds_sum\{route="a",status="200"\} 0.5\n/);
  assert.match(await hot.metrics(), /t_duration_seconds_count\{route="a",status="200"\} 1\n/);
});

test('cluster aggregation sums workers like prom-client metrics', async () => {
  const workers = [both(), both()];
  for (const [i, w] of workers.entries()) {
    for (const [route, status, value] of OBSERVATIONS.slice(i)) {
      for (const c of w.counters) c.inc({ route, status });
      for (const h of w.histograms) h.observe({ route, status }, value);
    }
  }
  const hot = AggregatorRegistry.aggregate(await Promise.all(workers.map((w) => w.hot.getMetricsAsJSON())));
  const reference = AggregatorRegistry.aggregate(await Promise.all(workers.map((w) => w.reference.getMetricsAsJSON())));
  assert.equal(await hot.metrics(), await reference.metrics());
});

test('reset forgets every series', async () => {
  const { hot, counters, histograms } = both();
  counters[0]!.inc({ route: 'a', status: '200' });
  histograms[0]!.observe({ route: 'a', status: '200' }, 1);
  hot.resetMetrics();
  assert.doesNotMatch(await hot.metrics(), /route="a"/);
});
