/**
 * The LogQL lexer. It reproduces the token boundaries of Loki's own lexer (pkg/logql/syntax/lex.go on top of
 * a copy of Go's text/scanner) wherever they decide what a query means, because the proxy and Loki must
 * agree on where every string, comment and selector starts and ends:
 *
 * - `#` starts a comment to the end of the line, and so do Go's `//` and `/* ... *\/` (text/scanner runs in
 *   `GoTokens` mode, which skips Go comments), but only where a token may start: inside strings and ranges
 *   they are plain text.
 * - `"..."` strings take Go escapes (`\n`, `\x41`, `\u00e9`, `\101`, ...) and cannot span lines; `` `...` ``
 *   strings are raw and may. Single quotes are not strings in LogQL and are refused.
 * - `[...]` is read raw up to the first `]` and must be a Prometheus duration, so a subquery `[5m:1m]` is
 *   refused here, as Loki refuses it.
 * - A number glued to unit letters is a duration (`5m`, `1.5s`, `-1h`) or a byte size (`10MB`, `1KiB`);
 *   `--strict` and `--keep-empty` are parser flags.
 * - Words in `tokens` of lex.go (`by`, `or`, `json`, `unwrap`, ...) are keywords in any casing; function
 *   names (`rate`, `sum`, `ip`, `bytes`, ...) are keywords only when `(` or `by (`/`without (` follows, and
 *   identifiers otherwise, so `{count="1"}` and `| unwrap bytes` work as in Loki.
 *
 * Where Loki is looser than needed (it turns any unknown character into an identifier token, accepts
 * identifiers in any script, hexadecimal numbers and digit separators that its number parsing then
 * rejects), this lexer refuses early: refusing a query Loki would also refuse costs nothing, and a narrower
 * token set leaves less room for the two parsers to disagree.
 */
import { CONVERSION_OPS, RANGE_OPS, VECTOR_OPS } from './ast.ts';
import { parseError } from './errors.ts';

export type TokenKind =
  | 'ident'
  | 'keyword'
  | 'func'
  | 'string'
  | 'number'
  | 'duration'
  | 'bytes'
  | 'range'
  | 'flag'
  | 'op'
  | 'eof';

export interface Token {
  readonly kind: TokenKind;
  /** Identifier text, lower-cased keyword, decoded string, number/duration/bytes text or operator. */
  readonly value: string;
  /** UTF-16 offset of the first character. */
  readonly pos: number;
  /** UTF-16 offset just past the last character. */
  readonly end: number;
}

/** Words that are keywords wherever they appear, in any casing (lex.go `tokens`). */
export const KEYWORDS: ReadonlySet<string> = new Set([
  'by',
  'without',
  'bool',
  'offset',
  'on',
  'ignoring',
  'group_left',
  'group_right',
  'or',
  'and',
  'unless',
  'json',
  'regexp',
  'logfmt',
  'unpack',
  'pattern',
  'label_format',
  'line_format',
  'decolorize',
  'drop',
  'keep',
  'unwrap',
  // Experimental multi-variant queries (`variants(...) of (...)`) and the unreleased `| xml` parser of
  // Loki's newest grammar: refused by the parser, but reserved so they never read as label names, which
  // a Loki that knows them would refuse.
  'variants',
  'of',
  'xml',
]);

/** Words that are keywords only in function position (lex.go `functionTokens`). */
export const FUNCTION_WORDS: ReadonlySet<string> = new Set<string>([
  ...RANGE_OPS,
  ...VECTOR_OPS,
  ...CONVERSION_OPS,
  'vector',
  'label_replace',
  'ip',
]);

const TWO_CHAR_OPS: ReadonlySet<string> = new Set(['!=', '=~', '!~', '!>', '|=', '|~', '|>', '==', '>=', '<=']);
const ONE_CHAR_OPS = '{}(),=|+-*/%^><.';
const PARSER_FLAGS: ReadonlySet<string> = new Set(['--strict', '--keep-empty']);

// Prometheus `model.ParseDuration`: units from largest to smallest, each at most once, integers only.
const PROM_DURATION = /^(?:\d+y)?(?:\d+w)?(?:\d+d)?(?:\d+h)?(?:\d+m)?(?:\d+s)?(?:\d+ms)?$/;
// Go `time.ParseDuration`, Loki's fallback for durations outside ranges (lex.go parseDuration).
const GO_DURATION = /^[+-]?(?:(?:\d+(?:\.\d*)?|\.\d+)(?:ns|us|µs|μs|ms|s|m|h))+$/;
const GO_ZERO = /^[+-]?0$/;
const GO_FLOAT = /^(?:\d+\.?\d*|\.\d+)$/;

// Characters lex.go's tryScanDuration / tryScanBytes glue onto a number (isDurationRune, isBytesSizeRune).
const DURATION_RUNES = '0123456789.nuµmshdwy';
const BYTES_RUNES = '0123456789.BikKMGTP';

// go-humanize `bytesSizeTable` restricted to what BYTES_RUNES can spell.
const BYTE_UNITS: ReadonlyMap<string, number> = new Map([
  ['b', 1],
  ['k', 1e3],
  ['kb', 1e3],
  ['ki', 1024],
  ['kib', 1024],
  ['m', 1e6],
  ['mb', 1e6],
  ['mi', 1024 ** 2],
  ['mib', 1024 ** 2],
  ['g', 1e9],
  ['gb', 1e9],
  ['gi', 1024 ** 3],
  ['gib', 1024 ** 3],
  ['t', 1e12],
  ['tb', 1e12],
  ['ti', 1024 ** 4],
  ['tib', 1024 ** 4],
  ['p', 1e15],
  ['pb', 1e15],
  ['pi', 1024 ** 5],
  ['pib', 1024 ** 5],
]);
const MAX_UINT64 = 2 ** 64;

/** A duration as Loki's lexer accepts it after a number or a minus sign (Prometheus first, then Go). */
export function isLexDuration(text: string): boolean {
  return (text !== '' && PROM_DURATION.test(text)) || GO_DURATION.test(text) || GO_ZERO.test(text);
}

/** A `[range]` body: Prometheus syntax only (lex.go calls `model.ParseDuration` directly). */
export function isRangeDuration(text: string): boolean {
  return text !== '' && PROM_DURATION.test(text);
}

/** A byte size as go-humanize `ParseBytes` reads it (lex.go tryScanBytes). */
export function isLexBytes(text: string): boolean {
  const m = /^([0-9.]+)([A-Za-z]*)$/.exec(text);
  if (m === null) return false;
  const num = m[1] ?? '';
  const multiplier = BYTE_UNITS.get((m[2] ?? '').toLowerCase());
  if (!GO_FLOAT.test(num) || multiplier === undefined) return false;
  return Number(num) * multiplier < MAX_UINT64;
}

function isIdentStart(c: number): boolean {
  return (c >= 97 && c <= 122) || (c >= 65 && c <= 90) || c === 95;
}

function isIdentPart(c: number): boolean {
  return isIdentStart(c) || (c >= 48 && c <= 57);
}

function isDigit(c: number): boolean {
  return c >= 48 && c <= 57;
}

function isHex(c: number): boolean {
  return isDigit(c) || (c >= 97 && c <= 102) || (c >= 65 && c <= 70);
}

function isSpace(c: number): boolean {
  // Go's GoWhitespace: tab, newline, carriage return, space. Anything else is not white space to Loki.
  return c === 32 || c === 9 || c === 10 || c === 13;
}

/**
 * Skips white space and comments from `i`; returns the offset of the next token. With `strict`, an
 * unterminated block comment is an error; without, it ends the lookahead (returns the input length).
 */
function skipTrivia(input: string, i: number, strict: boolean): number {
  const n = input.length;
  while (i < n) {
    const c = input.charCodeAt(i);
    if (isSpace(c)) {
      i++;
    } else if (c === 35 /* # */) {
      const nl = input.indexOf('\n', i);
      i = nl === -1 ? n : nl + 1;
    } else if (c === 47 /* / */ && input.charCodeAt(i + 1) === 47) {
      const nl = input.indexOf('\n', i);
      i = nl === -1 ? n : nl + 1;
    } else if (c === 47 && input.charCodeAt(i + 1) === 42 /* * */) {
      const close = input.indexOf('*/', i + 2);
      if (close === -1) {
        if (strict) throw parseError('comment never closed', i);
        return n;
      }
      i = close + 2;
    } else {
      break;
    }
  }
  return i;
}

/**
 * lex.go `isFunction`: a function word is a function when `(` follows, or `by`/`without` and then `(`.
 * Loki only skips white space here; comments are skipped too, which accepts a few queries Loki refuses but
 * cannot change the meaning of one it accepts (an identifier is never followed by `(` in the grammar).
 */
function isFunctionPosition(input: string, i: number): boolean {
  let k = skipTrivia(input, i, false);
  if (input.charCodeAt(k) === 40 /* ( */) return true;
  const two = input.slice(k, k + 2).toLowerCase();
  if (two === 'by') {
    k = skipTrivia(input, k + 2, false);
    return input.charCodeAt(k) === 40;
  }
  const seven = input.slice(k, k + 7).toLowerCase();
  if (seven === 'without') {
    k = skipTrivia(input, k + 7, false);
    return input.charCodeAt(k) === 40;
  }
  return false;
}

const UTF8 = new TextDecoder('utf-8', { fatal: true });

/** Decodes a double-quoted Go string literal starting at `start` (the quote); returns value and end. */
function readQuoted(input: string, start: number): { value: string; end: number } {
  const n = input.length;
  let i = start + 1;
  // Fast path: no escapes, the common case.
  for (; i < n; i++) {
    const c = input.charCodeAt(i);
    if (c === 34 /* " */) return { value: input.slice(start + 1, i), end: i + 1 };
    if (c === 10) throw parseError('string literal not terminated', start);
    if (c === 92 /* \ */) break;
  }
  if (i >= n) throw parseError('string literal not terminated', start);

  let out = input.slice(start + 1, i);
  // Escapes like \xc3\xa9 produce raw bytes that only together form a character (Go strings are bytes);
  // they are collected here and must decode as UTF-8, as Loki's lexer requires of every string.
  let bytes: number[] = [];
  const flush = (at: number): void => {
    if (bytes.length === 0) return;
    try {
      out += UTF8.decode(new Uint8Array(bytes));
    } catch {
      throw parseError('string is not valid UTF-8', at);
    }
    bytes = [];
  };
  while (i < n) {
    const c = input.charCodeAt(i);
    if (c === 34) {
      flush(i);
      return { value: out, end: i + 1 };
    }
    if (c === 10) throw parseError('string literal not terminated', start);
    if (c !== 92) {
      flush(i);
      // Copy a run of plain characters at once.
      let j = i + 1;
      while (j < n) {
        const d = input.charCodeAt(j);
        if (d === 34 || d === 92 || d === 10) break;
        j++;
      }
      out += input.slice(i, j);
      i = j;
      continue;
    }
    const e = input[i + 1];
    const escapeAt = i;
    switch (e) {
      case 'a':
      case 'b':
      case 'f':
      case 'n':
      case 'r':
      case 't':
      case 'v':
      case '\\':
      case '"': {
        flush(i);
        out += { a: '\x07', b: '\b', f: '\f', n: '\n', r: '\r', t: '\t', v: '\v', '\\': '\\', '"': '"' }[e];
        i += 2;
        break;
      }
      case 'x': {
        const hex = input.slice(i + 2, i + 4);
        if (!/^[0-9a-fA-F]{2}$/.test(hex)) throw parseError('invalid escape in string', escapeAt);
        const v = Number.parseInt(hex, 16);
        if (v >= 0x80) bytes.push(v);
        else {
          flush(i);
          out += String.fromCharCode(v);
        }
        i += 4;
        break;
      }
      case 'u':
      case 'U': {
        const len = e === 'u' ? 4 : 8;
        const hex = input.slice(i + 2, i + 2 + len);
        if (hex.length !== len || ![...hex].every((h) => isHex(h.charCodeAt(0)))) {
          throw parseError('invalid escape in string', escapeAt);
        }
        const cp = Number.parseInt(hex, 16);
        // Go's UnquoteChar refuses surrogates and values beyond Unicode.
        if (cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) {
          throw parseError('invalid escape in string', escapeAt);
        }
        flush(i);
        out += String.fromCodePoint(cp);
        i += 2 + len;
        break;
      }
      default: {
        if (e !== undefined && e >= '0' && e <= '7') {
          const oct = input.slice(i + 1, i + 4);
          if (!/^[0-7]{3}$/.test(oct)) throw parseError('invalid escape in string', escapeAt);
          const v = Number.parseInt(oct, 8);
          if (v > 255) throw parseError('invalid escape in string', escapeAt);
          if (v >= 0x80) bytes.push(v);
          else {
            flush(i);
            out += String.fromCharCode(v);
          }
          i += 4;
          break;
        }
        if (e === undefined || e === '\n') throw parseError('string literal not terminated', start);
        throw parseError(`invalid escape "\\${e}" in string`, escapeAt);
      }
    }
  }
  throw parseError('string literal not terminated', start);
}

/** Index of the first lone surrogate, or -1. Such a string has no UTF-8 form, so Loki could not read it. */
function loneSurrogateAt(input: string): number {
  if (input.isWellFormed()) return -1;
  for (let i = 0; i < input.length; i++) {
    const c = input.charCodeAt(i);
    if (c >= 0xd800 && c <= 0xdbff) {
      const d = input.charCodeAt(i + 1);
      if (d >= 0xdc00 && d <= 0xdfff) {
        i++;
        continue;
      }
      return i;
    }
    if (c >= 0xdc00 && c <= 0xdfff) return i;
  }
  return -1;
}

/**
 * Splits a query into tokens, ending with one `eof` token.
 *
 * @throws LogqlError `ERR_LOGQL_PARSE` for an unterminated string, raw string, comment or range, an invalid
 *   escape or range duration, an invalid number, a NUL or lone surrogate, or a character LogQL has no use
 *   for.
 */
export function tokenize(input: string): Token[] {
  const bad = loneSurrogateAt(input);
  if (bad !== -1) throw parseError('invalid UTF-16 (lone surrogate)', bad);
  const nul = input.indexOf('\0');
  if (nul !== -1) throw parseError('invalid character NUL', nul);

  const tokens: Token[] = [];
  const n = input.length;
  // text/scanner ignores a byte-order mark at the very start.
  let i = input.charCodeAt(0) === 0xfeff ? 1 : 0;

  for (;;) {
    i = skipTrivia(input, i, true);
    if (i >= n) {
      tokens.push({ kind: 'eof', value: '', pos: n, end: n });
      return tokens;
    }
    const start = i;
    const c = input.charCodeAt(i);

    if (isIdentStart(c)) {
      let j = i + 1;
      while (j < n && isIdentPart(input.charCodeAt(j))) j++;
      const word = input.slice(i, j);
      const lower = word.toLowerCase();
      // Function words are checked first, as in lex.go, so `ip` and `label_replace` are identifiers
      // unless called.
      if (FUNCTION_WORDS.has(lower)) {
        const fn = isFunctionPosition(input, j);
        tokens.push({ kind: fn ? 'func' : 'ident', value: fn ? lower : word, pos: start, end: j });
      } else if (KEYWORDS.has(lower)) {
        tokens.push({ kind: 'keyword', value: lower, pos: start, end: j });
      } else {
        tokens.push({ kind: 'ident', value: word, pos: start, end: j });
      }
      i = j;
      continue;
    }

    if (isDigit(c) || (c === 46 /* . */ && isDigit(input.charCodeAt(i + 1)))) {
      tokens.push(readNumber(input, i));
      i = tokens[tokens.length - 1]!.end;
      continue;
    }

    if (c === 34 /* " */) {
      const { value, end } = readQuoted(input, i);
      tokens.push({ kind: 'string', value, pos: start, end });
      i = end;
      continue;
    }

    if (c === 96 /* ` */) {
      const close = input.indexOf('`', i + 1);
      if (close === -1) throw parseError('raw string never closed', i);
      tokens.push({ kind: 'string', value: input.slice(i + 1, close), pos: start, end: close + 1 });
      i = close + 1;
      continue;
    }

    if (c === 91 /* [ */) {
      const close = input.indexOf(']', i + 1);
      if (close === -1) throw parseError("missing closing ']' in range", i);
      const body = input.slice(i + 1, close);
      if (!isRangeDuration(body)) {
        const why = body.includes(':') ? 'subqueries are not supported in LogQL' : 'invalid range';
        throw parseError(`${why}: ${JSON.stringify(`[${body}]`)}`, i);
      }
      tokens.push({ kind: 'range', value: body, pos: start, end: close + 1 });
      i = close + 1;
      continue;
    }

    if (c === 45 /* - */) {
      if (input.charCodeAt(i + 1) === 45) {
        let j = i + 1;
        while (j < n && (isIdentStart(input.charCodeAt(j)) || input.charCodeAt(j) === 45)) j++;
        const flag = input.slice(i, j);
        if (PARSER_FLAGS.has(flag)) {
          tokens.push({ kind: 'flag', value: flag, pos: start, end: j });
          i = j;
          continue;
        }
      } else {
        // lex.go: a minus glued to a duration is a negative duration (`offset -1h`, `x > -5s`).
        let j = i + 1;
        while (j < n && DURATION_RUNES.includes(input[j]!)) j++;
        if (j > i + 1 && isLexDuration(input.slice(i, j))) {
          tokens.push({ kind: 'duration', value: input.slice(i, j), pos: start, end: j });
          i = j;
          continue;
        }
      }
    }

    const two = input.slice(i, i + 2);
    if (TWO_CHAR_OPS.has(two)) {
      tokens.push({ kind: 'op', value: two, pos: start, end: i + 2 });
      i += 2;
      continue;
    }
    const one = input[i]!;
    if (ONE_CHAR_OPS.includes(one)) {
      tokens.push({ kind: 'op', value: one, pos: start, end: i + 1 });
      i += 1;
      continue;
    }
    if (one === "'") throw parseError('single quotes do not delimit strings in LogQL; use " or `', i);
    const shown = String.fromCodePoint(input.codePointAt(i) ?? c);
    throw parseError(`unexpected character ${JSON.stringify(shown)}`, i);
  }
}

/** A decimal number, then (lex.go) the duration or byte-size suffix glued to it, if any. */
function readNumber(input: string, start: number): Token {
  const n = input.length;
  let i = start;
  const c1 = input[i + 1];
  if (input[i] === '0' && (c1 === 'x' || c1 === 'X' || c1 === 'o' || c1 === 'O')) {
    throw parseError('only decimal numbers are supported', start);
  }
  if (input[i] === '0' && (c1 === 'b' || c1 === 'B') && /[01_]/.test(input[i + 2] ?? '')) {
    throw parseError('only decimal numbers are supported', start);
  }
  while (i < n && isDigit(input.charCodeAt(i))) i++;
  if (input[i] === '.') {
    i++;
    while (i < n && isDigit(input.charCodeAt(i))) i++;
  }
  if (input[i] === 'e' || input[i] === 'E') {
    let j = i + 1;
    if (input[j] === '+' || input[j] === '-') j++;
    if (!isDigit(input.charCodeAt(j))) throw parseError('exponent has no digits', start);
    while (j < n && isDigit(input.charCodeAt(j))) j++;
    i = j;
  }
  const num = input.slice(start, i);
  // Go reads 0-prefixed integers as octal, so `09` is an error to Loki.
  if (/^0\d+$/.test(num) && /[89]/.test(num)) throw parseError('invalid digit in octal literal', start);

  let j = i;
  while (j < n && DURATION_RUNES.includes(input[j]!)) j++;
  if (j > i && isLexDuration(input.slice(start, j))) {
    return { kind: 'duration', value: input.slice(start, j), pos: start, end: j };
  }
  j = i;
  while (j < n && BYTES_RUNES.includes(input[j]!)) j++;
  if (j > i && isLexBytes(input.slice(start, j))) {
    return { kind: 'bytes', value: input.slice(start, j), pos: start, end: j };
  }
  return { kind: 'number', value: num, pos: start, end: i };
}
