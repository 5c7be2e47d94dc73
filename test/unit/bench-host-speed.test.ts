/**
 * The bench's host probe: it runs (a real child Node, unpinned), and its summary counts exactly the runs
 * that began at SLOW_HOST_FACTOR or more times the fastest probe.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { SLOW_HOST_FACTOR, describeProbes, probeHost } from '../../bench/lib/host-speed.ts';

test('probeHost times the workload in a child Node', () => {
  const ms = probeHost(process.execPath, undefined);
  assert.equal(typeof ms, 'number');
  assert.ok(ms! > 0);
});

test('probeHost answers undefined when the probe cannot run', () => {
  assert.equal(probeHost('/nonexistent/node', undefined), undefined);
});

test('describeProbes gives the fastest, median and slowest probe, their ratio and the runs that began slowed', () => {
  assert.equal(describeProbes([], '1'), undefined);
  const line = describeProbes([14, 15, 16, 25, 18.2], '1')!;
  assert.equal(line, 'Host probe (a fixed workload on core 1, before each run): fastest 14.0 ms, median 16.0, slowest 25.0 (1.79×); 2 of 5 runs began at ≥ 1.3× the fastest');
  assert.equal(describeProbes([14, 18.1], undefined), 'Host probe (a fixed workload, before each run): fastest 14.0 ms, median 18.1, slowest 18.1 (1.29×); 0 of 2 runs began at ≥ 1.3× the fastest');
  assert.ok(18.2 >= SLOW_HOST_FACTOR * 14 && 18.1 < SLOW_HOST_FACTOR * 14);
});
