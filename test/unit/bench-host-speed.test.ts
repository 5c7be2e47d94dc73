/**
 * The bench's host probe: it runs (a real child Node, unpinned), and its summary counts exactly the runs
 * that began at SLOW_HOST_FACTOR or more times the fastest probe.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { SLOW_HOST_FACTOR, describeProbes, probeHost, summarizeProbes } from '../../bench/lib/host-speed.ts';

test('probeHost times the workload in a child Node', () => {
  const ms = probeHost(process.execPath, undefined);
  assert.equal(typeof ms, 'number');
  assert.ok(ms! > 0);
});

test('probeHost answers undefined when the probe cannot run', () => {
  assert.equal(probeHost('/nonexistent/node', undefined), undefined);
});

test('summarizeProbes: fastest, median (the mean of the middle two for an even count), slowest, and the runs at the factor or above', () => {
  assert.equal(summarizeProbes([]), undefined);
  assert.deepEqual(summarizeProbes([14, 15, 16, 25, 18.2]), { fastestMs: 14, medianMs: 16, slowestMs: 25, slowed: 2, runs: 5 });
  assert.deepEqual(summarizeProbes([14, 18.1]), { fastestMs: 14, medianMs: 16.05, slowestMs: 18.1, slowed: 0, runs: 2 });
  assert.ok(18.2 >= SLOW_HOST_FACTOR * 14 && 18.1 < SLOW_HOST_FACTOR * 14);
});

test('describeProbes gives the summary as one line, with the core when pinned', () => {
  const s = summarizeProbes([14, 15, 16, 25, 18.2])!;
  assert.equal(describeProbes(s, '1'), 'Host probe (a fixed workload on core 1, before each run): fastest 14.0 ms, median 16.0, slowest 25.0 (1.79×); 2 of 5 runs began at ≥ 1.3× the fastest');
  assert.match(describeProbes(s, undefined), /^Host probe \(a fixed workload, before each run\)/);
});
