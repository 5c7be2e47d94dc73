/**
 * A recursive-descent parser for the whole of LogQL as Loki's grammar defines it (pkg/logql/syntax/syntax.y),
 * plus the checks Loki makes while building its tree (parameters of `topk`/`quantile_over_time`, which range
 * aggregations need or refuse `| unwrap`, binary operations only between metric queries). Anything it does
 * not fully understand is refused: for an access proxy a query it cannot read is a query it cannot narrow.
 *
 * Refused on purpose:
 * - `variants(...) of (...)` (experimental multi-variant queries): not needed, and one more place a
 *   selector could hide.
 * - `| distinct`: merged into Loki 2.8 development and reverted before release (grafana/loki#10356).
 * - `count_values`, subqueries (`[5m:1m]`), `@` modifiers, `| xml`: not LogQL.
 *
 * Not checked here, because Loki checks it and a mismatch only turns into Loki's own 400: that regular
 * expressions compile, and that a selector has a matcher that cannot match the empty string
 * (`{env=~".*"}` is accepted here; once enforced it carries `env="..."` and Loki accepts it too).
 */
import type {
  BinaryOp,
  ConversionOp,
  Extraction,
  Grouping,
  LabelFilter,
  LabelFormat,
  LabelMatcher,
  LineFilterOp,
  LineFilterTerm,
  LogQuery,
  LogRange,
  LogqlAst,
  MatchOp,
  MetricExpr,
  NamedMatcher,
  NumberLiteral,
  RangeOp,
  Stage,
  Unwrap,
  VectorMatching,
  VectorOp,
} from './ast.ts';
import { CONVERSION_OPS, RANGE_OPS, VECTOR_OPS } from './ast.ts';
import { LogqlError, parseError, tooLarge } from './errors.ts';
import { tokenize, type Token } from './lexer.ts';

/** Bounds on what `parseLogql` will read; exceeding one throws `ERR_LOGQL_TOO_LARGE`. */
export interface LogqlLimits {
  /** Maximum query size in UTF-8 bytes. Default 65536 (64 KiB). */
  maxLength?: number;
  /**
   * Maximum nesting: parentheses, function calls and chained operators (`a + b + c` counts 3) all add a
   * level, so the depth bounds the recursion of every walk over the tree. Default 64, at most 1000.
   */
  maxDepth?: number;
  /** Maximum number of stream selectors `{...}` in one query. Default 256. */
  maxSelectors?: number;
}

export const DEFAULT_LIMITS: Readonly<Required<LogqlLimits>> = Object.freeze({
  maxLength: 64 * 1024,
  maxDepth: 64,
  maxSelectors: 256,
});

const RANGE_OP_SET: ReadonlySet<string> = new Set(RANGE_OPS);

const VECTOR_OP_SET: ReadonlySet<string> = new Set(VECTOR_OPS);

// RangeAggregationExpr.validate in Loki's ast.go.
const RANGE_GROUPING_OK: ReadonlySet<string> = new Set([
  'avg_over_time',
  'stddev_over_time',
  'stdvar_over_time',
  'quantile_over_time',
  'max_over_time',
  'min_over_time',
  'first_over_time',
  'last_over_time',
]);
const RANGE_UNWRAP_OK: ReadonlySet<string> = new Set([
  'avg_over_time',
  'sum_over_time',
  'max_over_time',
  'min_over_time',
  'stddev_over_time',
  'stdvar_over_time',
  'quantile_over_time',
  'rate',
  'rate_counter',
  'absent_over_time',
  'first_over_time',
  'last_over_time',
]);
const RANGE_NO_UNWRAP_OK: ReadonlySet<string> = new Set([
  'bytes_over_time',
  'bytes_rate',
  'count_over_time',
  'rate',
  'absent_over_time',
]);

const CONVERSIONS: ReadonlySet<string> = new Set(CONVERSION_OPS);
const MATCH_OPS: ReadonlySet<string> = new Set<MatchOp>(['=', '!=', '=~', '!~']);
const LINE_FILTER_OPS: ReadonlySet<string> = new Set<LineFilterOp>(['|=', '!=', '|~', '!~', '|>', '!>']);
const COMPARE_OPS: ReadonlySet<string> = new Set(['>', '>=', '<', '<=', '!=', '=', '==']);

/** Binary operator precedence, lowest first, as the `%left`/`%right` lines of syntax.y. */
export const BINARY_PRECEDENCE: Readonly<Record<BinaryOp, number>> = Object.freeze({
  or: 1,
  and: 2,
  unless: 2,
  '==': 3,
  '!=': 3,
  '>': 3,
  '>=': 3,
  '<': 3,
  '<=': 3,
  '+': 4,
  '-': 4,
  '*': 5,
  '/': 5,
  '%': 5,
  '^': 6,
});

const SYMBOL_BINARY_OPS: ReadonlySet<string> = new Set([
  '+',
  '-',
  '*',
  '/',
  '%',
  '^',
  '==',
  '!=',
  '>',
  '>=',
  '<',
  '<=',
]);

interface State {
  readonly input: string;
  readonly tokens: Token[];
  i: number;
  depth: number;
  selectors: number;
  readonly maxDepth: number;
  readonly maxSelectors: number;
}

function peek(s: State, k = 0): Token {
  return s.tokens[Math.min(s.i + k, s.tokens.length - 1)]!;
}

function next(s: State): Token {
  const t = peek(s);
  if (t.kind !== 'eof') s.i++;
  return t;
}

function isOp(t: Token, value: string): boolean {
  return t.kind === 'op' && t.value === value;
}

function isKeyword(t: Token, value: string): boolean {
  return t.kind === 'keyword' && t.value === value;
}

function describe(s: State, t: Token): string {
  if (t.kind === 'eof') return 'end of query';
  const raw = s.input.slice(t.pos, t.end);
  return JSON.stringify(raw.length > 40 ? `${raw.slice(0, 40)}...` : raw);
}

function unexpected(s: State, t: Token, expected?: string): LogqlError {
  const what = `unexpected ${describe(s, t)} at ${t.pos}`;
  return new LogqlError('ERR_LOGQL_PARSE', expected ? `${what} (expected ${expected})` : what, t.pos);
}

function expectOp(s: State, value: string): Token {
  const t = peek(s);
  if (!isOp(t, value)) throw unexpected(s, t, JSON.stringify(value));
  return next(s);
}

function expectKind(s: State, kind: 'ident' | 'string' | 'number', expected: string): Token {
  const t = peek(s);
  if (t.kind !== kind) throw unexpected(s, t, expected);
  return next(s);
}

function enter(s: State, pos: number): void {
  s.depth++;
  if (s.depth > s.maxDepth) throw tooLarge(`query nesting is deeper than ${s.maxDepth}`, pos);
}

function leave(s: State, levels = 1): void {
  s.depth -= levels;
}

/**
 * The deepest `maxDepth` a caller may ask for. Every walk over the tree (serialising, finding selectors) is
 * recursive; at this depth it stays far from Node's stack limit even when called from deep in a request
 * pipeline.
 */
export const MAX_DEPTH_LIMIT = 1000;

function checkLimit(name: string, value: number | undefined, fallback: number, max: number): number {
  if (value === undefined) return fallback;
  if (!Number.isSafeInteger(value) || value < 1 || value > max) {
    throw new RangeError(`LogQL limit ${name} must be an integer from 1 to ${max}, got ${String(value)}`);
  }
  return value;
}

/** A stack overflow (possible only when called with an almost full stack) is a refusal, never a crash. */
export function isStackOverflow(err: unknown): boolean {
  return err instanceof RangeError && /call stack/i.test(err.message);
}

/**
 * Parses a LogQL query (a log query or a metric query) into a syntax tree.
 *
 * @example parseLogql('sum by (app) (rate({env="prod"} |= "error" [5m]))')
 * @throws LogqlError `ERR_LOGQL_PARSE` when the query is not LogQL this library fully understands (the
 *   message names the offending token and its offset: `unexpected "}" at 17`).
 * @throws LogqlError `ERR_LOGQL_TOO_LARGE` when the query is longer than `maxLength` bytes, nests deeper
 *   than `maxDepth` or has more than `maxSelectors` stream selectors.
 * @throws RangeError when a limit is not a positive integer, or `maxDepth` exceeds `MAX_DEPTH_LIMIT` (a
 *   programming error, not a bad query).
 */
export function parseLogql(query: string, limits?: LogqlLimits): LogqlAst {
  const maxLength = checkLimit('maxLength', limits?.maxLength, DEFAULT_LIMITS.maxLength, Number.MAX_SAFE_INTEGER);
  const maxDepth = checkLimit('maxDepth', limits?.maxDepth, DEFAULT_LIMITS.maxDepth, MAX_DEPTH_LIMIT);
  const maxSelectors = checkLimit(
    'maxSelectors',
    limits?.maxSelectors,
    DEFAULT_LIMITS.maxSelectors,
    Number.MAX_SAFE_INTEGER,
  );
  return parseWithLimits(query, maxLength, maxDepth, maxSelectors);
}

/**
 * `parseLogql` with checked limits. The enforcement's self-check calls it directly, to re-read its own
 * output with more headroom than `MAX_DEPTH_LIMIT` (that output has the shape of an input that passed).
 */
export function parseWithLimits(query: string, maxLength: number, maxDepth: number, maxSelectors: number): LogqlAst {
  if (typeof query !== 'string') throw parseError('the query must be a string', 0);
  // UTF-16 length never exceeds the UTF-8 length, so the cheap test first, the exact one second.
  if (query.length > maxLength || Buffer.byteLength(query, 'utf8') > maxLength) {
    throw tooLarge(`query is longer than ${maxLength} bytes`, Math.min(maxLength, query.length));
  }
  const s: State = { input: query, tokens: tokenize(query), i: 0, depth: 0, selectors: 0, maxDepth, maxSelectors };
  if (peek(s).kind === 'eof') throw parseError('empty query', 0);
  try {
    const ast = parseExpr(s, 0);
    const t = peek(s);
    if (t.kind !== 'eof') throw unexpected(s, t, 'end of query');
    return ast;
  } catch (err) {
    if (isStackOverflow(err)) throw tooLarge('query nesting exhausted the stack', peek(s).pos);
    throw err;
  }
}

function binaryOpOf(t: Token): BinaryOp | null {
  if (t.kind === 'keyword' && (t.value === 'or' || t.value === 'and' || t.value === 'unless')) return t.value;
  if (t.kind === 'op' && SYMBOL_BINARY_OPS.has(t.value)) return t.value as BinaryOp;
  return null;
}

/** Precedence climbing over binary operators; `^` is right-associative, the rest left (syntax.y). */
function parseExpr(s: State, minPrecedence: number, operand = false): LogqlAst {
  // A right operand is already counted by the operator that reads it (below), so it does not enter again:
  // the depth then matches the height of the tree, right- or left-leaning alike.
  if (!operand) enter(s, peek(s).pos);
  let left = parsePrimary(s);
  let chained = 0;
  for (;;) {
    const t = peek(s);
    const op = binaryOpOf(t);
    if (op === null) break;
    const precedence = BINARY_PRECEDENCE[op];
    if (precedence < minPrecedence) break;
    next(s);
    const bool = isKeyword(peek(s), 'bool');
    if (bool) next(s);
    const matching = parseVectorMatching(s);
    // Each chained operator is one more level of the tree, so it counts towards the depth limit.
    enter(s, t.pos);
    chained++;
    const right = parseExpr(s, op === '^' ? precedence : precedence + 1, true);
    if (left.type === 'log' || right.type === 'log') {
      throw parseError(`binary operation ${JSON.stringify(op)} needs metric queries on both sides`, t.pos);
    }
    // Loki (mustNewBinOpExpr) refuses literals on either side of a set operation.
    if ((op === 'or' || op === 'and' || op === 'unless') && (left.type === 'literal' || right.type === 'literal')) {
      throw parseError(`set operation ${JSON.stringify(op)} cannot take a number literal`, t.pos);
    }
    left = { type: 'binary', op, bool, matching, left, right };
  }
  leave(s, chained + (operand ? 0 : 1));
  return left;
}

function parseVectorMatching(s: State): VectorMatching | null {
  const t = peek(s);
  if (!isKeyword(t, 'on') && !isKeyword(t, 'ignoring')) return null;
  next(s);
  const labels = parseLabelList(s);
  let group: VectorMatching['group'] = null;
  const g = peek(s);
  if (isKeyword(g, 'group_left') || isKeyword(g, 'group_right')) {
    next(s);
    // As in Loki's LALR parser, a `(` after group_left always opens its label list.
    group = { side: g.value === 'group_left' ? 'left' : 'right', labels: isOp(peek(s), '(') ? parseLabelList(s) : [] };
  }
  return { on: t.value === 'on', labels, group };
}

function parseLabelList(s: State): string[] {
  expectOp(s, '(');
  const labels: string[] = [];
  if (isOp(peek(s), ')')) {
    next(s);
    return labels;
  }
  for (;;) {
    labels.push(expectKind(s, 'ident', 'a label name').value);
    if (isOp(peek(s), ',')) {
      next(s);
      continue;
    }
    expectOp(s, ')');
    return labels;
  }
}

function parseGrouping(s: State): Grouping | null {
  const t = peek(s);
  if (!isKeyword(t, 'by') && !isKeyword(t, 'without')) return null;
  next(s);
  return { without: t.value === 'without', labels: parseLabelList(s) };
}

function parsePrimary(s: State): LogqlAst {
  const t = peek(s);
  if (isOp(t, '{')) {
    const q = parseLogQuery(s);
    const after = peek(s);
    if (after.kind === 'range') {
      throw parseError('a range like [5m] is only allowed inside a range aggregation such as rate(...)', after.pos);
    }
    if (isOp(after, '|') && isKeyword(peek(s, 1), 'unwrap')) {
      throw parseError('unwrap is only allowed inside a range aggregation', after.pos);
    }
    return q;
  }
  if (isOp(t, '(')) {
    next(s);
    const inner = parseExpr(s, 0);
    expectOp(s, ')');
    return inner;
  }
  if (t.kind === 'func') {
    if (RANGE_OP_SET.has(t.value)) return parseRangeAggregation(s);
    if (VECTOR_OP_SET.has(t.value)) return parseVectorAggregation(s);
    if (t.value === 'label_replace') return parseLabelReplace(s);
    if (t.value === 'vector') {
      next(s);
      expectOp(s, '(');
      const value = expectKind(s, 'number', 'a number').value;
      expectOp(s, ')');
      return { type: 'vector', value };
    }
    throw unexpected(s, t, 'a query');
  }
  if (t.kind === 'number') {
    next(s);
    return { type: 'literal', value: { sign: '', text: t.value } };
  }
  if ((isOp(t, '+') || isOp(t, '-')) && peek(s, 1).kind === 'number') {
    next(s);
    return { type: 'literal', value: { sign: t.value as '+' | '-', text: next(s).value } };
  }
  if (isKeyword(t, 'variants')) throw parseError('variants(...) of (...) queries are not supported', t.pos);
  if (t.kind === 'ident' && isOp(peek(s, 1), '(')) {
    throw parseError(`unknown function ${JSON.stringify(t.value)}`, t.pos);
  }
  throw unexpected(s, t, 'a query');
}

function parseSelector(s: State): LabelMatcher[] {
  const open = expectOp(s, '{');
  s.selectors++;
  if (s.selectors > s.maxSelectors) throw tooLarge(`more than ${s.maxSelectors} stream selectors`, open.pos);
  if (isOp(peek(s), '}')) throw parseError('empty stream selector {} is not allowed', open.pos);
  const matchers: LabelMatcher[] = [];
  for (;;) {
    matchers.push(parseMatcher(s));
    if (isOp(peek(s), ',')) {
      next(s);
      continue;
    }
    expectOp(s, '}');
    return matchers;
  }
}

function parseMatcher(s: State): LabelMatcher {
  const name = expectKind(s, 'ident', 'a label name').value;
  const op = peek(s);
  if (op.kind !== 'op' || !MATCH_OPS.has(op.value)) throw unexpected(s, op, '=, !=, =~ or !~');
  next(s);
  const value = expectKind(s, 'string', 'a string').value;
  return { name, op: op.value as MatchOp, value };
}

function parseLogQuery(s: State): LogQuery {
  const matchers = parseSelector(s);
  return { type: 'log', matchers, pipeline: parsePipeline(s) };
}

function startsUnwrap(s: State): boolean {
  return isOp(peek(s), '|') && isKeyword(peek(s, 1), 'unwrap');
}

function parsePipeline(s: State): Stage[] {
  const stages: Stage[] = [];
  for (;;) {
    const t = peek(s);
    if (t.kind === 'op' && LINE_FILTER_OPS.has(t.value)) {
      stages.push(parseLineFilter(s));
    } else if (isOp(t, '|') && !startsUnwrap(s)) {
      next(s);
      stages.push(parseStage(s));
    } else {
      return stages;
    }
  }
}

function parseLineFilter(s: State): Stage {
  const op = next(s).value as LineFilterOp;
  const terms = [parseLineFilterTerm(s)];
  while (isKeyword(peek(s), 'or')) {
    next(s);
    terms.push(parseLineFilterTerm(s));
  }
  return { type: 'line_filter', op, terms };
}

function parseLineFilterTerm(s: State): LineFilterTerm {
  const t = peek(s);
  if (t.kind === 'string') {
    next(s);
    return { ip: false, value: t.value };
  }
  if (t.kind === 'func' && t.value === 'ip') {
    next(s);
    expectOp(s, '(');
    const value = expectKind(s, 'string', 'a string').value;
    expectOp(s, ')');
    return { ip: true, value };
  }
  throw unexpected(s, t, 'a string or ip("...")');
}

function parseStage(s: State): Stage {
  const t = peek(s);
  if (t.kind === 'keyword') {
    switch (t.value) {
      case 'json':
        next(s);
        return { type: 'json', extractions: parseExtractions(s) };
      case 'logfmt': {
        next(s);
        const flags: string[] = [];
        while (peek(s).kind === 'flag') flags.push(next(s).value);
        return { type: 'logfmt', flags, extractions: parseExtractions(s) };
      }
      case 'regexp':
      case 'pattern':
        next(s);
        return { type: t.value, expression: expectKind(s, 'string', 'a string').value };
      case 'unpack':
      case 'decolorize':
        next(s);
        return { type: t.value };
      case 'line_format':
        next(s);
        return { type: 'line_format', template: expectKind(s, 'string', 'a template string').value };
      case 'label_format':
        next(s);
        return { type: 'label_format', formats: parseLabelFormats(s) };
      case 'drop':
      case 'keep':
        next(s);
        return { type: t.value, items: parseNamedMatchers(s) };
      default:
        throw unexpected(s, t, 'a pipeline stage');
    }
  }
  if (t.kind === 'ident' || isOp(t, '(')) return { type: 'label_filter', filter: parseLabelFilter(s, null) };
  throw unexpected(s, t, 'a pipeline stage');
}

function parseExtractions(s: State): Extraction[] {
  const out: Extraction[] = [];
  if (peek(s).kind !== 'ident') return out;
  for (;;) {
    const label = expectKind(s, 'ident', 'a label name').value;
    let expression: string | null = null;
    if (isOp(peek(s), '=')) {
      next(s);
      expression = expectKind(s, 'string', 'a string').value;
    }
    out.push({ label, expression });
    if (!isOp(peek(s), ',')) return out;
    next(s);
  }
}

function parseLabelFormats(s: State): LabelFormat[] {
  const out: LabelFormat[] = [];
  for (;;) {
    const label = expectKind(s, 'ident', 'a label name').value;
    expectOp(s, '=');
    const v = peek(s);
    if (v.kind === 'ident') out.push({ label, source: next(s).value, template: null });
    else if (v.kind === 'string') out.push({ label, source: null, template: next(s).value });
    else throw unexpected(s, v, 'a label name or a template string');
    if (!isOp(peek(s), ',')) return out;
    next(s);
  }
}

function parseNamedMatchers(s: State): NamedMatcher[] {
  const out: NamedMatcher[] = [];
  for (;;) {
    const t = peek(s);
    const after = peek(s, 1);
    if (t.kind === 'ident' && after.kind === 'op' && MATCH_OPS.has(after.value)) {
      const matcher = parseMatcher(s);
      out.push({ name: matcher.name, matcher });
    } else {
      out.push({ name: expectKind(s, 'ident', 'a label name').value, matcher: null });
    }
    if (!isOp(peek(s), ',')) return out;
    next(s);
  }
}

type FilterJoin = 'and' | 'or' | 'comma' | 'juxtaposition';

function filterJoinOf(t: Token): FilterJoin | null {
  if (isKeyword(t, 'and')) return 'and';
  if (isKeyword(t, 'or')) return 'or';
  if (isOp(t, ',')) return 'comma';
  if (t.kind === 'ident' || isOp(t, '(')) return 'juxtaposition';
  return null;
}

/**
 * Label filter expressions with Loki's exact grouping. In syntax.y `and` binds tighter than `or` and both
 * are left-associative, but `,` and juxtaposition (`a="1" b="2"`) have no precedence, so yacc resolves their
 * conflicts by shifting: they take everything to their right, and anything after an `and`/`or` operand
 * joins that operand. So `a, b or c` is `a and (b or c)` while `a and b or c` is `(a and b) or c`.
 * `context` is the join whose right operand is being read (null at the top).
 */
function parseLabelFilter(s: State, context: FilterJoin | null): LabelFilter {
  // As in parseExpr, a right operand was counted by its join already.
  if (context === null) enter(s, peek(s).pos);
  let left = parseLabelFilterPrimary(s);
  let chained = 0;
  for (;;) {
    const t = peek(s);
    const join = filterJoinOf(t);
    if (join === null) break;
    if (
      (context === 'and' || context === 'or') &&
      (join === 'and' || join === 'or') &&
      (join === 'or' || context === 'and')
    ) {
      // Reduce: an equal or lower precedence and/or ends the current operand.
      break;
    }
    if (join !== 'juxtaposition') next(s);
    enter(s, t.pos);
    chained++;
    const right = parseLabelFilter(s, join);
    left = { type: join === 'or' ? 'or' : 'and', left, right };
  }
  leave(s, chained + (context === null ? 1 : 0));
  return left;
}

function parseLabelFilterPrimary(s: State): LabelFilter {
  const t = peek(s);
  if (isOp(t, '(')) {
    next(s);
    const inner = parseLabelFilter(s, null);
    expectOp(s, ')');
    return inner;
  }
  const name = expectKind(s, 'ident', 'a label filter').value;
  const op = peek(s);
  if (op.kind !== 'op' || !(MATCH_OPS.has(op.value) || COMPARE_OPS.has(op.value))) {
    throw unexpected(s, op, 'a comparison operator');
  }
  next(s);
  const v = peek(s);
  if ((op.value === '=' || op.value === '!=') && v.kind === 'func' && v.value === 'ip') {
    next(s);
    expectOp(s, '(');
    const value = expectKind(s, 'string', 'a string').value;
    expectOp(s, ')');
    return { type: 'ip', name, op: op.value, value };
  }
  if (MATCH_OPS.has(op.value) && v.kind === 'string') {
    next(s);
    return { type: 'matcher', matcher: { name, op: op.value as MatchOp, value: v.value } };
  }
  if (COMPARE_OPS.has(op.value)) {
    const cmp = op.value as Extract<LabelFilter, { type: 'number' }>['op'];
    if (v.kind === 'duration' || v.kind === 'bytes') {
      next(s);
      return { type: v.kind, name, op: cmp, text: v.value };
    }
    const literal = parseNumberLiteral(s);
    if (literal !== null) return { type: 'number', name, op: cmp, value: literal };
  }
  throw unexpected(s, v, 'a string, number, duration or byte size');
}

function parseNumberLiteral(s: State): NumberLiteral | null {
  const t = peek(s);
  if (t.kind === 'number') {
    next(s);
    return { sign: '', text: t.value };
  }
  if ((isOp(t, '+') || isOp(t, '-')) && peek(s, 1).kind === 'number') {
    next(s);
    return { sign: t.value as '+' | '-', text: next(s).value };
  }
  return null;
}

function parseUnwrap(s: State): Unwrap | null {
  if (!startsUnwrap(s)) return null;
  next(s);
  next(s);
  const t = peek(s);
  let label: string;
  let conversion: ConversionOp | null = null;
  if (t.kind === 'func' && CONVERSIONS.has(t.value)) {
    next(s);
    conversion = t.value as ConversionOp;
    expectOp(s, '(');
    label = expectKind(s, 'ident', 'a label name').value;
    expectOp(s, ')');
  } else {
    label = expectKind(s, 'ident', 'a label name or bytes(...), duration(...), duration_seconds(...)').value;
  }
  const postFilters: LabelFilter[] = [];
  // syntax.y: unwrapExpr PIPE labelFilter; no other stage may follow an unwrap.
  while (isOp(peek(s), '|') && (peek(s, 1).kind === 'ident' || isOp(peek(s, 1), '('))) {
    next(s);
    postFilters.push(parseLabelFilter(s, null));
  }
  return { label, conversion, postFilters };
}

function parseOffset(s: State): string | null {
  if (!isKeyword(peek(s), 'offset')) return null;
  next(s);
  const t = peek(s);
  if (t.kind !== 'duration') throw unexpected(s, t, 'a duration');
  next(s);
  return t.value;
}

function expectRange(s: State): string {
  const t = peek(s);
  if (t.kind !== 'range') throw unexpected(s, t, 'a range such as [5m]');
  next(s);
  return t.value;
}

/**
 * The log range inside a range aggregation. syntax.y spells out every placement it accepts:
 * `sel [pipeline] [unwrap] [range] [offset]`, `sel [range] [offset] [pipeline] [unwrap]`,
 * `(sel [pipeline] [unwrap]) [range] [offset]`, `(sel) [range] [offset] [unwrap]` and `(logRange)`.
 */
function parseLogRange(s: State): LogRange {
  if (isOp(peek(s), '(')) {
    const open = next(s);
    enter(s, open.pos);
    if (isOp(peek(s), '(')) {
      const inner = parseLogRange(s);
      expectOp(s, ')');
      leave(s);
      return inner;
    }
    const matchers = parseSelector(s);
    const pipeline = parsePipeline(s);
    let unwrap = parseUnwrap(s);
    if (peek(s).kind === 'range') {
      const inner = finishLogRange(s, matchers, pipeline, unwrap);
      expectOp(s, ')');
      leave(s);
      return inner;
    }
    expectOp(s, ')');
    leave(s);
    const range = expectRange(s);
    const offset = parseOffset(s);
    // `(sel) [range] [offset]` may still take an unwrap; with a pipeline inside the parentheses, nothing.
    if (pipeline.length === 0 && unwrap === null) unwrap = parseUnwrap(s);
    return { type: 'log_range', matchers, pipeline, unwrap, range, offset };
  }
  const matchers = parseSelector(s);
  const pipeline = parsePipeline(s);
  const unwrap = parseUnwrap(s);
  return finishLogRange(s, matchers, pipeline, unwrap);
}

function finishLogRange(s: State, matchers: LabelMatcher[], pipeline: Stage[], unwrap: Unwrap | null): LogRange {
  const range = expectRange(s);
  const offset = parseOffset(s);
  if (pipeline.length === 0 && unwrap === null) {
    return { type: 'log_range', matchers, pipeline: parsePipeline(s), unwrap: parseUnwrap(s), range, offset };
  }
  return { type: 'log_range', matchers, pipeline, unwrap, range, offset };
}

function parseParam(s: State): string | null {
  if (peek(s).kind === 'number' && isOp(peek(s, 1), ',')) {
    const param = next(s).value;
    next(s);
    return param;
  }
  return null;
}

function parseRangeAggregation(s: State): MetricExpr {
  const fn = next(s);
  const op = fn.value as RangeOp;
  expectOp(s, '(');
  enter(s, fn.pos);
  const param = parseParam(s);
  const range = parseLogRange(s);
  expectOp(s, ')');
  leave(s);
  const grouping = parseGrouping(s);
  if (op === 'quantile_over_time' && param === null) throw parseError(`${op} needs a parameter`, fn.pos);
  if (op !== 'quantile_over_time' && param !== null) throw parseError(`${op} takes no parameter`, fn.pos);
  if (grouping !== null && !RANGE_GROUPING_OK.has(op)) throw parseError(`grouping is not allowed for ${op}`, fn.pos);
  if (range.unwrap !== null && !RANGE_UNWRAP_OK.has(op)) throw parseError(`${op} cannot be used with unwrap`, fn.pos);
  if (range.unwrap === null && !RANGE_NO_UNWRAP_OK.has(op)) throw parseError(`${op} needs | unwrap`, fn.pos);
  return { type: 'range_agg', op, param, range, grouping };
}

function expectMetric(s: State, e: LogqlAst, pos: number, where: string): MetricExpr {
  if (e.type === 'log') throw parseError(`${where} needs a metric query, not a log query`, pos);
  return e;
}

function parseVectorAggregation(s: State): MetricExpr {
  const fn = next(s);
  const op = fn.value as VectorOp;
  let grouping = parseGrouping(s);
  expectOp(s, '(');
  const param = parseParam(s);
  const start = peek(s).pos;
  const expr = expectMetric(s, parseExpr(s, 0), start, `${op}(...)`);
  expectOp(s, ')');
  if (grouping === null) grouping = parseGrouping(s);
  if (op === 'topk' || op === 'bottomk' || op === 'approx_topk') {
    // Loki reads the parameter with strconv.Atoi and wants it positive.
    if (param === null) throw parseError(`${op} needs a parameter`, fn.pos);
    if (!/^\d+$/.test(param) || BigInt(param) < 1n || BigInt(param) > 0x7fffffffffffffffn) {
      throw parseError(`${op} needs a positive integer parameter`, fn.pos);
    }
    if (op === 'approx_topk' && grouping !== null) throw parseError('grouping is not allowed for approx_topk', fn.pos);
  } else if (param !== null) {
    throw parseError(`${op} takes no parameter`, fn.pos);
  }
  if ((op === 'sort' || op === 'sort_desc') && grouping !== null && grouping.labels.length > 0) {
    throw parseError(`${op} does not allow grouping`, fn.pos);
  }
  return { type: 'vector_agg', op, param, grouping, expr };
}

function parseLabelReplace(s: State): MetricExpr {
  next(s);
  expectOp(s, '(');
  const start = peek(s).pos;
  const expr = expectMetric(s, parseExpr(s, 0), start, 'label_replace(...)');
  const strings: string[] = [];
  for (let k = 0; k < 4; k++) {
    expectOp(s, ',');
    strings.push(expectKind(s, 'string', 'a string').value);
  }
  expectOp(s, ')');
  const [destination = '', replacement = '', source = '', regex = ''] = strings;
  return { type: 'label_replace', expr, destination, replacement, source, regex };
}
