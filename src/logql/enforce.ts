/**
 * Label-based access control for LogQL (DESIGN §4): every stream selector of a query gets one matcher per
 * enforced label, so whatever else the query says, it can only read streams whose labels carry an allowed
 * value. The query is parsed into a tree, changed there and written back; no text is spliced. The user's
 * own matchers stay: Loki ANDs all matchers of a selector, so `{env=~".*"}` enforced to `env="staging"`
 * reads staging only, and `{env!="staging"}` enforced the same way reads nothing, which is correct.
 *
 * After writing, the result is parsed again and checked to carry the enforced matchers on every selector,
 * with the same number of selectors: a bug in the serialiser fails closed instead of leaking.
 */
import type { LabelMatcher, LogqlAst } from './ast.ts';
import { enforceError, parseError, tooLarge } from './errors.ts';
import { KEYWORDS } from './lexer.ts';
import { DEFAULT_LIMITS, isStackOverflow, parseLogql, parseWithLimits, type LogqlLimits } from './parser.ts';
import { forEachSelector, selectors } from './selectors.ts';
import { serializeLogql } from './serializer.ts';

/** Label name -> the values the caller may read. */
export type EnforcedLabels = ReadonlyMap<string, readonly string[]>;

export interface EnforcedQuery {
  /** The rewritten query, canonical LogQL. */
  query: string;
  /** How many stream selectors the query has (each now carries the enforced matchers); 0 for `vector(1)`. */
  selectors: number;
}

const LABEL_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;

/** RE2 metacharacters, as Go's regexp.QuoteMeta escapes them. */
function escapeRegex(value: string): string {
  return value.replace(/[\\.+*?()|[\]{}^$]/g, '\\$&');
}

/**
 * Turns the enforcement map into the matchers to add: one allowed value gives `label="v"`, several give
 * `label=~"^(?:v1|v2)$"` with every value regex-escaped. (Loki anchors regex matchers itself; the explicit
 * anchors cost nothing and do not depend on it.)
 *
 * @throws LogqlError `ERR_LOGQL_ENFORCE` when the map is empty, a label name is not a LogQL identifier (or
 *   is a LogQL keyword such as `by`), a label has no allowed value, or a value is empty or not a string.
 *   An empty value is refused because `label=""` matches the streams that do NOT have the label.
 */
export function compileEnforcement(enforce: EnforcedLabels): LabelMatcher[] {
  if (!(enforce instanceof Map)) throw enforceError('the enforced labels must be a Map of label -> allowed values');
  if (enforce.size === 0) throw enforceError('no label to enforce: refusing to pass the query unrestricted');
  const out: LabelMatcher[] = [];
  for (const [name, allowed] of enforce) {
    if (typeof name !== 'string' || !LABEL_NAME.test(name) || KEYWORDS.has(name.toLowerCase())) {
      throw enforceError(`enforced label name ${JSON.stringify(name)} is not a valid LogQL label name`);
    }
    if (!Array.isArray(allowed) || allowed.length === 0) {
      throw enforceError(`no allowed value for enforced label ${name}: refusing rather than reading everything`);
    }
    const values: string[] = [];
    for (const v of allowed as readonly unknown[]) {
      if (typeof v !== 'string' || v === '') {
        throw enforceError(`enforced label ${name} has an empty or non-string allowed value`);
      }
      if (!v.isWellFormed()) throw enforceError(`enforced label ${name} has a value that is not valid Unicode`);
      if (!values.includes(v)) values.push(v);
    }
    if (values.length === 1) out.push({ name, op: '=', value: values[0]! });
    else out.push({ name, op: '=~', value: `^(?:${values.map(escapeRegex).join('|')})$` });
  }
  return out;
}

function sameMatcher(a: LabelMatcher, b: LabelMatcher): boolean {
  return a.name === b.name && a.op === b.op && a.value === b.value;
}

/** Adds the matchers to every selector (skipping one already present verbatim); returns the selector count. */
function applyEnforcement(ast: LogqlAst, extra: readonly LabelMatcher[]): number {
  let count = 0;
  forEachSelector(ast, (matchers) => {
    count++;
    for (const m of extra) {
      if (!matchers.some((own) => sameMatcher(own, m))) matchers.push({ name: m.name, op: m.op, value: m.value });
    }
  });
  return count;
}

/** Re-reads the output and proves the enforcement is in it; any doubt is an error, never a pass. */
function verify(output: string, extra: readonly LabelMatcher[], count: number, limits: LogqlLimits | undefined): void {
  const maxDepth = limits?.maxDepth ?? DEFAULT_LIMITS.maxDepth;
  let found: ReturnType<typeof selectors>;
  try {
    // The rewritten query is longer and may carry a few more parentheses than the input, so the limits
    // here are relaxed; the input already passed the real ones.
    found = selectors(parseWithLimits(output, Number.MAX_SAFE_INTEGER, maxDepth * 2 + 4, count + 1));
  } catch (err) {
    throw enforceError(`internal error: the rewritten query does not parse (${(err as Error).message})`);
  }
  if (found.length !== count) throw enforceError('internal error: the rewritten query changed its selectors');
  for (const sel of found) {
    for (const m of extra) {
      if (!sel.some((own) => sameMatcher(own, m))) {
        throw enforceError('internal error: a selector of the rewritten query lacks an enforced matcher');
      }
    }
  }
}

/**
 * Parses a LogQL query, adds the enforced matchers to every stream selector (log queries, range
 * aggregations, both sides of binary operations, inside `label_replace` and every aggregation) and writes
 * it back.
 *
 * A query without any selector (`vector(1)`, `1 + 1`) is allowed and comes back with `selectors: 0`: it
 * reads no logs. Callers that want to refuse such queries can test `selectors === 0`.
 *
 * @example
 * enforceLogql('sum(rate({app="api"} |= "error" [5m]))', new Map([['env', ['staging']]]))
 * // { query: 'sum(rate({app="api", env="staging"} |= "error" [5m]))', selectors: 1 }
 * @throws LogqlError `ERR_LOGQL_ENFORCE` when the enforcement map is unusable (see `compileEnforcement`),
 *   or when the rewritten query fails the final check (an internal error; the query must not be sent).
 * @throws LogqlError `ERR_LOGQL_PARSE` / `ERR_LOGQL_TOO_LARGE` from `parseLogql`.
 */
export function enforceLogql(query: string, enforce: EnforcedLabels, limits?: LogqlLimits): EnforcedQuery {
  const extra = compileEnforcement(enforce);
  const ast = parseLogql(query, limits);
  return guardStack(() => {
    const count = applyEnforcement(ast, extra);
    const output = serializeLogql(ast);
    verify(output, extra, count, limits);
    return { query: output, selectors: count };
  });
}

/** The walks are recursive; a stack overflow (only when called with an almost full stack) is a refusal. */
function guardStack<T>(work: () => T): T {
  try {
    return work();
  } catch (err) {
    if (isStackOverflow(err)) throw tooLarge('query nesting exhausted the stack', 0);
    throw err;
  }
}

/**
 * The same enforcement for a bare stream selector `{...}`, the form Loki takes in `match[]` of the series
 * endpoint and in `query` of the label endpoints. Anything beyond one selector (a pipeline, an aggregation)
 * is refused.
 *
 * @example enforceSelector('{app="api"}', new Map([['team', ['a', 'b']]]))
 *   // '{app="api", team=~"^(?:a|b)$"}'
 * @throws LogqlError `ERR_LOGQL_PARSE` when the text is not exactly one stream selector, `ERR_LOGQL_TOO_LARGE`
 *   over the limits, `ERR_LOGQL_ENFORCE` as for `enforceLogql`.
 */
export function enforceSelector(selectorText: string, enforce: EnforcedLabels, limits?: LogqlLimits): string {
  const extra = compileEnforcement(enforce);
  const ast = parseLogql(selectorText, limits);
  if (ast.type !== 'log' || ast.pipeline.length > 0) {
    throw parseError('expected a bare stream selector such as {app="api"}', 0);
  }
  return guardStack(() => {
    const count = applyEnforcement(ast, extra);
    const output = serializeLogql(ast);
    verify(output, extra, count, limits);
    return output;
  });
}
