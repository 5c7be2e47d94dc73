/**
 * LogQL for the logs access feature (DESIGN §4): parse a query completely, add the enforced label matchers
 * to every stream selector, write it back; refuse whatever cannot be fully parsed.
 */
export type * from './ast.ts';
export { LogqlError, type LogqlErrorCode } from './errors.ts';
export { DEFAULT_LIMITS, parseLogql, type LogqlLimits } from './parser.ts';
export { quoteString, serializeLogql } from './serializer.ts';
export { selectors } from './selectors.ts';
export {
  compileEnforcement,
  enforceLogql,
  enforceSelector,
  type EnforcedLabels,
  type EnforcedQuery,
} from './enforce.ts';
