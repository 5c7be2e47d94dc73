/**
 * Finding every stream selector of a query. LogQL has exactly two places a selector can sit: a log query
 * (`{...} | ...`) and the log range inside a range aggregation; everything else (aggregations, binary
 * operations, `label_replace`) only contains further expressions. The walk is exhaustive over the node
 * types, so a node type added to the tree without being handled here fails the type check instead of
 * silently escaping enforcement.
 */
import type { LabelMatcher, LogqlAst, MetricExpr } from './ast.ts';

/** Calls `visit` with the live matcher list of every selector, left to right as written. */
export function forEachSelector(ast: LogqlAst, visit: (matchers: LabelMatcher[]) => void): void {
  if (ast.type === 'log') {
    visit(ast.matchers);
    return;
  }
  walkMetric(ast, visit);
}

function walkMetric(e: MetricExpr, visit: (matchers: LabelMatcher[]) => void): void {
  switch (e.type) {
    case 'range_agg':
      visit(e.range.matchers);
      return;
    case 'vector_agg':
    case 'label_replace':
      walkMetric(e.expr, visit);
      return;
    case 'binary':
      walkMetric(e.left, visit);
      walkMetric(e.right, visit);
      return;
    case 'vector':
    case 'literal':
      return;
    default: {
      // Exhaustiveness: a new node type must be handled above, or this stops compiling.
      const unknown: never = e;
      throw new TypeError(`unknown LogQL node ${JSON.stringify((unknown as { type?: unknown }).type)}`);
    }
  }
}

/**
 * The matchers of every stream selector in the query, left to right as written (copies: changing them does
 * not change the tree). For tests and for the audit record of what a query reads.
 *
 * @example selectors(parseLogql('sum(rate({a="1"}[5m])) / sum(rate({b="2"}[5m]))'))
 *   // [[{ name: 'a', op: '=', value: '1' }], [{ name: 'b', op: '=', value: '2' }]]
 * @throws TypeError only for a tree not made by `parseLogql` that holds an unknown node.
 */
export function selectors(ast: LogqlAst): LabelMatcher[][] {
  const out: LabelMatcher[][] = [];
  forEachSelector(ast, (matchers) => out.push(matchers.map((m) => ({ name: m.name, op: m.op, value: m.value }))));
  return out;
}
