/**
 * The LogQL syntax tree. It mirrors the productions of Loki's grammar (pkg/logql/syntax/syntax.y) closely
 * enough that serialising it gives text Loki reads back as the same query, and it deliberately keeps no
 * source positions, comments, parentheses or keyword casing: two queries that mean the same thing to Loki
 * parse to deep-equal trees, which is what the round-trip tests compare.
 *
 * Every optional part is `null` when absent (never `undefined` or a missing key) so that `deepStrictEqual`
 * on a re-parsed tree is exact.
 */

export type MatchOp = '=' | '!=' | '=~' | '!~';

/** One stream or label matcher, `name op "value"`; `value` is the decoded string (escapes resolved). */
export interface LabelMatcher {
  name: string;
  op: MatchOp;
  value: string;
}

/** `{...} | stage | stage`: a log query, the only expression that reads log lines. */
export interface LogQuery {
  type: 'log';
  matchers: LabelMatcher[];
  pipeline: Stage[];
}

export type LineFilterOp = '|=' | '!=' | '|~' | '!~' | '|>' | '!>';

/** One alternative of a line filter: a string, or `ip("...")`. */
export interface LineFilterTerm {
  ip: boolean;
  value: string;
}

/** `|= "a" or "b"`: the first term plus the ones chained with `or`. */
export interface LineFilterStage {
  type: 'line_filter';
  op: LineFilterOp;
  terms: LineFilterTerm[];
}

/** `name` or `name="expression"` after `| json` or `| logfmt`. */
export interface Extraction {
  label: string;
  expression: string | null;
}

export interface JsonStage {
  type: 'json';
  extractions: Extraction[];
}

export interface LogfmtStage {
  type: 'logfmt';
  /** `--strict`, `--keep-empty`, in the order written. */
  flags: string[];
  extractions: Extraction[];
}

export interface PatternStage {
  type: 'regexp' | 'pattern';
  expression: string;
}

export interface SimpleStage {
  type: 'unpack' | 'decolorize';
}

export interface LineFormatStage {
  type: 'line_format';
  template: string;
}

/** `dst=src` (rename: `source` set) or `dst="template"` (`template` set). */
export interface LabelFormat {
  label: string;
  source: string | null;
  template: string | null;
}

export interface LabelFormatStage {
  type: 'label_format';
  formats: LabelFormat[];
}

/** An item of `| drop` / `| keep`: a bare label name (`matcher` null) or a matcher. */
export interface NamedMatcher {
  name: string;
  matcher: LabelMatcher | null;
}

export interface DropKeepStage {
  type: 'drop' | 'keep';
  items: NamedMatcher[];
}

export interface LabelFilterStage {
  type: 'label_filter';
  filter: LabelFilter;
}

export type Stage =
  | LineFilterStage
  | JsonStage
  | LogfmtStage
  | PatternStage
  | SimpleStage
  | LineFormatStage
  | LabelFormatStage
  | DropKeepStage
  | LabelFilterStage;

export type CompareOp = '>' | '>=' | '<' | '<=' | '!=' | '=' | '==';

/** A signed number as written: `sign` is '' for none, so `+5` and `5` stay distinct texts. */
export interface NumberLiteral {
  sign: '' | '+' | '-';
  text: string;
}

/**
 * Label filter expressions. Loki's `,` and juxtaposition mean `and`; they are read with Loki's precedence
 * (see the parser) and stored as `and`, so the tree says what the filter means.
 */
export type LabelFilter =
  | { type: 'and' | 'or'; left: LabelFilter; right: LabelFilter }
  | { type: 'matcher'; matcher: LabelMatcher }
  | { type: 'ip'; name: string; op: '=' | '!='; value: string }
  | { type: 'duration' | 'bytes'; name: string; op: CompareOp; text: string }
  | { type: 'number'; name: string; op: CompareOp; value: NumberLiteral };

export const CONVERSION_OPS = ['bytes', 'duration', 'duration_seconds'] as const;
export type ConversionOp = (typeof CONVERSION_OPS)[number];

/** `| unwrap [conv(]label[)] | postFilter...` */
export interface Unwrap {
  label: string;
  conversion: ConversionOp | null;
  postFilters: LabelFilter[];
}

/**
 * A log range: selector, pipeline, optional unwrap, `[range]`, optional `offset`. Loki accepts the range
 * before or after the pipeline; the tree does not record where it was (the semantics are the same).
 */
export interface LogRange {
  type: 'log_range';
  matchers: LabelMatcher[];
  pipeline: Stage[];
  unwrap: Unwrap | null;
  /** The duration text inside the brackets, e.g. `5m`. */
  range: string;
  /** The duration text after `offset`, e.g. `1h`. */
  offset: string | null;
}

export interface Grouping {
  without: boolean;
  labels: string[];
}

/** Range aggregations (Loki's `rangeOp` tokens): the one list the lexer, parser and types share. */
export const RANGE_OPS = [
  'count_over_time',
  'rate',
  'rate_counter',
  'bytes_over_time',
  'bytes_rate',
  'avg_over_time',
  'sum_over_time',
  'min_over_time',
  'max_over_time',
  'stdvar_over_time',
  'stddev_over_time',
  'quantile_over_time',
  'first_over_time',
  'last_over_time',
  'absent_over_time',
] as const;
export type RangeOp = (typeof RANGE_OPS)[number];

/** Vector aggregations (Loki's `vectorOp` tokens). */
export const VECTOR_OPS = ['sum', 'avg', 'count', 'max', 'min', 'stddev', 'stdvar', 'bottomk', 'topk', 'sort', 'sort_desc', 'approx_topk'] as const;
export type VectorOp = (typeof VECTOR_OPS)[number];

export interface RangeAggregation {
  type: 'range_agg';
  op: RangeOp;
  /** Numeric parameter text (`0.99` of `quantile_over_time`). */
  param: string | null;
  range: LogRange;
  grouping: Grouping | null;
}

export interface VectorAggregation {
  type: 'vector_agg';
  op: VectorOp;
  /** Numeric parameter text (`3` of `topk`). */
  param: string | null;
  grouping: Grouping | null;
  expr: MetricExpr;
}

export type BinaryOp =
  | 'or'
  | 'and'
  | 'unless'
  | '+'
  | '-'
  | '*'
  | '/'
  | '%'
  | '^'
  | '=='
  | '!='
  | '>'
  | '>='
  | '<'
  | '<=';

/** `on (...)` / `ignoring (...)` with an optional `group_left` / `group_right` (`()` and none are equal). */
export interface VectorMatching {
  on: boolean;
  labels: string[];
  group: { side: 'left' | 'right'; labels: string[] } | null;
}

export interface BinaryExpr {
  type: 'binary';
  op: BinaryOp;
  bool: boolean;
  matching: VectorMatching | null;
  left: MetricExpr;
  right: MetricExpr;
}

export interface LabelReplace {
  type: 'label_replace';
  expr: MetricExpr;
  destination: string;
  replacement: string;
  source: string;
  regex: string;
}

export interface VectorLiteral {
  type: 'vector';
  value: string;
}

export interface Literal {
  type: 'literal';
  value: NumberLiteral;
}

export type MetricExpr =
  | RangeAggregation
  | VectorAggregation
  | BinaryExpr
  | LabelReplace
  | VectorLiteral
  | Literal;

/** A whole query: a log query or a metric query. */
export type LogqlAst = LogQuery | MetricExpr;
