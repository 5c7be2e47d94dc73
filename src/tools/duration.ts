/**
 * Human durations for configuration and the CLI (`30s`, `15m`, `1h30m`). Every duration in the config goes
 * through `parseDuration`, so one grammar and one error message apply everywhere, and a typo is a load error
 * instead of a silently huge or zero timeout.
 */

const UNITS = [
  ['d', 86_400_000],
  ['h', 3_600_000],
  ['m', 60_000],
  ['s', 1_000],
  ['ms', 1],
] as const;

const UNIT_MS: ReadonlyMap<string, number> = new Map(UNITS);
const UNIT_RANK: ReadonlyMap<string, number> = new Map(UNITS.map(([unit], index) => [unit, index]));

/**
 * Ten years of 365 days. Nothing in a proxy legitimately waits longer, and a bound keeps arithmetic on the
 * result inside safe integers and `setTimeout`-adjacent code from overflowing into surprises.
 */
export const MAX_DURATION_MS = 10 * 365 * 86_400_000;

// `ms` must come before `m` and `s` in the alternation, or `500ms` would lex as `500m` + `s`.
const COMPONENT = /(\d+)(ms|d|h|m|s)/y;
const BARE_SECONDS = /^\d+$/;

function invalid(text: string | number, reason = 'expected e.g. 30s, 15m, 1h'): Error {
  return new Error(`invalid duration ${JSON.stringify(String(text))}: ${reason}`);
}

function checkRange(text: string | number, ms: number): number {
  if (ms > MAX_DURATION_MS) throw invalid(text, 'must not exceed 10 years');
  return ms;
}

/**
 * Parses a duration into milliseconds.
 *
 * Accepted forms: a unit suffix (`500ms`, `30s`, `15m`, `2h`, `1d`), several components from the largest
 * unit to the smallest, each at most once (`1h30m`, `1d12h`, `1m30s500ms`), or a bare non-negative integer,
 * as a string or a number, meaning seconds (`30`, the habit of Envoy and most YAML configs). Fractions,
 * signs, spaces and unknown units are refused rather than guessed at.
 *
 * @example parseDuration('1h30m') // 5_400_000
 * @example parseDuration(30)      // 30_000
 * @throws Error `invalid duration "<text>": <reason>` when the text is not a duration, is negative or
 *   exceeds ten years.
 */
export function parseDuration(text: string | number): number {
  if (typeof text === 'number') {
    if (!Number.isFinite(text) || !Number.isInteger(text)) throw invalid(text);
    if (text < 0) throw invalid(text, 'must not be negative');
    return checkRange(text, text * 1000);
  }
  if (typeof text !== 'string') throw invalid(String(text));
  if (text.startsWith('-')) throw invalid(text, 'must not be negative');
  if (BARE_SECONDS.test(text)) return checkRange(text, Number(text) * 1000);
  if (text.length === 0) throw invalid(text);

  let total = 0;
  let lastRank = -1;
  COMPONENT.lastIndex = 0;
  while (COMPONENT.lastIndex < text.length) {
    const match = COMPONENT.exec(text);
    if (match === null) throw invalid(text);
    const [, digits, unit] = match;
    const rank = UNIT_RANK.get(unit!)!;
    // Descending, non-repeating units: `30m1h` or `1h1h` are almost certainly typos, not intent.
    if (rank <= lastRank) throw invalid(text, 'units must go from largest to smallest, each at most once');
    lastRank = rank;
    total += Number(digits) * UNIT_MS.get(unit!)!;
    // Check as we go so an absurd component cannot push `total` past safe-integer precision first.
    checkRange(text, total);
  }
  return total;
}

/**
 * Formats milliseconds as the shortest string `parseDuration` reads back to the same value, for summaries
 * and log lines (`5400000` -> `1h30m`, `0` -> `0s`, `1500` -> `1s500ms`).
 *
 * @throws RangeError when `ms` is negative or not an integer.
 */
export function formatDuration(ms: number): string {
  if (!Number.isSafeInteger(ms) || ms < 0) throw new RangeError(`cannot format duration ${ms}`);
  if (ms === 0) return '0s';
  let rest = ms;
  let out = '';
  for (const [unit, size] of UNITS) {
    const count = Math.floor(rest / size);
    if (count > 0) {
      out += `${count}${unit}`;
      rest -= count * size;
    }
  }
  return out;
}
