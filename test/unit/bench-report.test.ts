/**
 * The bench's target lines: ratios are paired by round, and the line says where the rounds fall against the
 * target, so that a verdict the host's noise decided reads as such.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { checkTargets, describeRounds, formatRatio, roundRatios } from '../../bench/lib/report.ts';
import type { Row, Sample } from '../../bench/lib/report.ts';

function row(scenario: string, contestant: string, rps: readonly number[]): Row {
  const samples = rps.map((r, round) => ({ round, rps: r, p99Ms: 10 }) as unknown as Sample);
  return { scenario, contestant, label: contestant, problem: undefined, stopped: false, notes: new Set(), samples };
}

test('roundRatios pairs samples by round and skips rounds the other row lacks', () => {
  const a = row('distinct', 'portcullis', [90, 100, 80]);
  const b = row('distinct', 'lean-verify', [100, 100]);
  assert.deepEqual(roundRatios(a, b), [0.9, 1]);
  assert.deepEqual(roundRatios(a, undefined), []);
});

test('describeRounds says whether every round is on one side of the target', () => {
  assert.equal(describeRounds([0.8, 0.82, 0.79], 0.95), 'median of 3 per-round ratios, 0.79-0.82; every round below the target');
  assert.equal(describeRounds([1.2, 0.96, 1.0], 0.95), 'median of 3 per-round ratios, 0.96-1.20; every round at or above the target');
  assert.equal(describeRounds([0.9, 0.97, 1.01], 0.95), 'median of 3 per-round ratios, 0.90-1.01; 2 of 3 rounds at or above the target');
  assert.equal(describeRounds([0.9], 0.95), 'one round');
});

test('checkTargets: the every-token-new line, paired by round, with the spread', () => {
  const rows = [row('baseline', 'passthrough', [100, 100, 100]), row('distinct', 'lean-verify', [100, 120, 80]), row('distinct', 'portcullis', [96, 90, 84])];
  const line = checkTargets(rows, []).find((c) => c.target.startsWith('every token new ≥ 0.95× lean'))!;
  assert.equal(line.pass, true, 'median of 0.96, 0.75, 1.05 is 0.96');
  assert.equal(line.measured, '0.96× (median of 3 per-round ratios, 0.75-1.05; 2 of 3 rounds at or above the target; medians 90 vs 100 req/s)');
  assert.equal(checkTargets(rows, []).find((c) => c.target.startsWith('invalid'))!.measured, 'not measured');
});

test('formatRatio never prints a miss as the target itself', () => {
  assert.equal(formatRatio(0.948, 0.95), '0.948');
  assert.equal(formatRatio(0.9449, 0.95), '0.94');
  assert.equal(formatRatio(0.951, 0.95), '0.95');
  assert.equal(formatRatio(0.9996, 1), '0.999');
  assert.equal(formatRatio(3.456, 3), '3.46');
});
