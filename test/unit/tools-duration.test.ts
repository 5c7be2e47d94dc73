import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { MAX_DURATION_MS, formatDuration, parseDuration } from '../../src/tools/duration.ts';

const S = 1_000;
const M = 60 * S;
const H = 60 * M;
const D = 24 * H;

describe('parseDuration', () => {
  const valid: Array<[string | number, number]> = [
    ['500ms', 500],
    ['0ms', 0],
    ['30s', 30 * S],
    ['0s', 0],
    ['15m', 15 * M],
    ['2h', 2 * H],
    ['1d', D],
    ['1h30m', H + 30 * M],
    ['1m30s500ms', M + 30 * S + 500],
    ['1d2h3m4s5ms', D + 2 * H + 3 * M + 4 * S + 5],
    ['90m', 90 * M],
    ['1500ms', 1500],
    ['30', 30 * S],
    ['0', 0],
    [30, 30 * S],
    [0, 0],
    ['3650d', MAX_DURATION_MS],
    [MAX_DURATION_MS / S, MAX_DURATION_MS],
  ];
  for (const [input, expected] of valid) {
    it(`reads ${JSON.stringify(input)} as ${expected} ms`, () => {
      assert.equal(parseDuration(input), expected);
    });
  }

  const invalid: Array<[string | number, RegExp]> = [
    ['', /expected e\.g\. 30s, 15m, 1h/],
    [' ', /expected e\.g\./],
    [' 30s', /expected e\.g\./],
    ['30s ', /expected e\.g\./],
    ['30 s', /expected e\.g\./],
    ['1.5h', /expected e\.g\./],
    ['1.5', /expected e\.g\./],
    [1.5, /expected e\.g\./],
    ['5x', /expected e\.g\./],
    ['s', /expected e\.g\./],
    ['ms', /expected e\.g\./],
    ['1H', /expected e\.g\./],
    ['1e3', /expected e\.g\./],
    ['+5s', /expected e\.g\./],
    ['0x10', /expected e\.g\./],
    ['1h 30m', /expected e\.g\./],
    ['30m1h', /largest to smallest/],
    ['1h1h', /largest to smallest/],
    ['1s1ms1s', /largest to smallest/],
    ['-5s', /must not be negative/],
    ['-5', /must not be negative/],
    [-1, /must not be negative/],
    [Number.NaN, /expected e\.g\./],
    [Number.POSITIVE_INFINITY, /expected e\.g\./],
    ['3651d', /must not exceed 10 years/],
    ['3650d1ms', /must not exceed 10 years/],
    [MAX_DURATION_MS / S + 1, /must not exceed 10 years/],
    ['99999999999999999999s', /must not exceed 10 years/],
    ['99999999999999999999', /must not exceed 10 years/],
  ];
  for (const [input, reason] of invalid) {
    it(`refuses ${JSON.stringify(input)}`, () => {
      assert.throws(
        () => parseDuration(input),
        (error: unknown) => {
          assert.ok(error instanceof Error);
          assert.ok(
            error.message.startsWith(`invalid duration ${JSON.stringify(String(input))}: `),
            `message names the input: ${error.message}`,
          );
          assert.match(error.message, reason);
          return true;
        },
      );
    });
  }
});

describe('formatDuration', () => {
  const cases: Array<[number, string]> = [
    [0, '0s'],
    [1, '1ms'],
    [500, '500ms'],
    [1500, '1s500ms'],
    [30 * S, '30s'],
    [15 * M, '15m'],
    [H + 30 * M, '1h30m'],
    [D + H, '1d1h'],
    [D + 5, '1d5ms'],
    [MAX_DURATION_MS, '3650d'],
  ];
  for (const [ms, text] of cases) {
    it(`formats ${ms} as ${text} and reads it back`, () => {
      assert.equal(formatDuration(ms), text);
      assert.equal(parseDuration(text), ms);
    });
  }

  for (const bad of [-1, 1.5, Number.NaN, Number.POSITIVE_INFINITY]) {
    it(`refuses ${bad}`, () => {
      assert.throws(() => formatDuration(bad), RangeError);
    });
  }
});
