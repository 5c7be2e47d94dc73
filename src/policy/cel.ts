/**
 * Authorization expressions in CEL (Common Expression Language), compiled once at config load and evaluated
 * per request over two variables:
 *
 * - `claims`: the verified JWT payload, declared `map(string, dyn)`;
 * - `request`: a typed object `{method, path, host: string; params, headers, query: map(string, string)}`.
 *
 * Engine: `@marcbachmann/cel-js` (see docs/cel-choice.md for why). This wrapper adds what a proxy needs
 * on top of it:
 *
 * - **Everything that can be found statically is a load error** (`CelCompileError` with a stable `code` and a
 *   1-based position): syntax, unknown variables and functions, type errors (`request.method == 1`), a
 *   result that cannot be a bool, a source over 4 KiB, a regex that is invalid, non-literal or unsafe, and
 *   comprehensions nested over request/claims data.
 * - **Evaluation never throws.** Every CEL error (`no such key`, bad overload on dyn data, ...) and every
 *   non-bool result becomes `{ok: false, error}`; the caller denies. `&&`, `||` and `exists`/`all` absorb
 *   errors as the CEL spec says (`claims.missing == 'x' || true` is true).
 * - **JSON numbers**: JS numbers that are safe integers become CEL `int`, other numbers stay `double`
 *   (the Kubernetes convention for schemaless JSON). So `claims.exp > 0`, `claims.exp + 60` and
 *   `claims.level >= 2` work, and `claims.level >= 2` compares correctly for 2.5 too (CEL compares int and
 *   double across types). Arithmetic mixing int and double (`claims.level * 2` with 2.5) is a CEL error,
 *   as in every CEL implementation: write `2.0` or `double(claims.level)`.
 *
 * @example
 * ```ts
 * const rule = compileCel(`'log-reader' in claims.realm_access.roles && request.params.env in claims.envs`);
 * const result = rule.evaluate({ claims, request });
 * if (!(result.ok && result.value)) deny(result.ok ? 'rule false' : result.error);
 * ```
 */
import { Environment, EvaluationError, ParseError, TypeError as CelTypeError } from '@marcbachmann/cel-js';
import type { ASTNode, ParseResult } from '@marcbachmann/cel-js';

export interface CelRequest {
  method: string;
  path: string;
  host: string;
  params: Record<string, string>;
  /** Lower-case names; repeated headers joined by the caller. */
  headers: Record<string, string>;
  query: Record<string, string>;
}

export type CelResult = { ok: true; value: boolean } | { ok: false; error: string };

export interface CompiledCel {
  readonly source: string;
  /** Never throws: errors and non-bool results come back as `{ok: false, error}`. */
  evaluate(activation: { claims: Record<string, unknown>; request: CelRequest }): CelResult;
}

/** Stable reasons a policy expression is refused at load. */
export type CelCompileErrorCode =
  | 'ERR_CEL_TOO_LONG'
  | 'ERR_CEL_SYNTAX'
  | 'ERR_CEL_UNKNOWN_VARIABLE'
  | 'ERR_CEL_UNKNOWN_FUNCTION'
  | 'ERR_CEL_TYPE'
  | 'ERR_CEL_NOT_BOOL'
  | 'ERR_CEL_REGEX'
  | 'ERR_CEL_COST';

export class CelCompileError extends Error {
  readonly code: CelCompileErrorCode;
  /** Within the expression, 1-based; absent when the error concerns the whole expression. */
  readonly position?: { line: number; column: number };

  constructor(code: CelCompileErrorCode, message: string, position?: { line: number; column: number }) {
    super(position ? `${message} (at ${position.line}:${position.column})` : message);
    this.name = 'CelCompileError';
    this.code = code;
    if (position) this.position = position;
  }
}

/** UTF-8 bytes. Bounds parse time and, with the checks below, evaluation cost. */
export const MAX_CEL_SOURCE_BYTES = 4096;

/** Claims nested deeper than this are refused at evaluation (real IdP tokens nest 3-4 levels). */
const MAX_CLAIMS_DEPTH = 32;

/** Upper bound on iterations of nested comprehensions whose ranges are literals (e.g. `[...].all(x, [...].exists(y, ...))`). */
const MAX_LITERAL_ITERATIONS = 10_000;

const COMPREHENSIONS = new Set(['all', 'exists', 'exists_one', 'map', 'filter']);

// The environment is expensive to build (the library says so): one per process, shared by every rule.
const environment = createEnvironment();
const knownFunctions = new Set(environment.getDefinitions().functions.map((f) => f.name));

function createEnvironment(): Environment {
  const env = new Environment({
    // Parse-time structural limits. A 4 KiB source cannot come near maxAstNodes; maxDepth bounds the
    // parser's recursion (a chain of `||` does not nest, parentheses and calls do).
    limits: { maxAstNodes: 4096, maxDepth: 32, maxListElements: 1000, maxMapEntries: 1000, maxCallArguments: 8 },
  });
  env.registerType({
    name: 'portcullis.Request',
    schema: {
      method: 'string',
      path: 'string',
      host: 'string',
      params: 'map<string, string>',
      headers: 'map<string, string>',
      query: 'map<string, string>',
    },
  });
  env.registerVariable('claims', 'map<string, dyn>', { description: 'The verified JWT payload' });
  env.registerVariable('request', 'portcullis.Request', { description: 'The request being authorized' });
  // The CEL spec defines matches() as a global function too; the library has only the receiver form.
  // Same semantics as the library's: JavaScript RegExp, no flags, unanchored (patterns are vetted below).
  env.registerFunction('matches(string, string): bool', (text: string, pattern: string) => new RegExp(pattern).test(text));
  return env;
}

/**
 * Compiles a policy expression. Call once at config load; the result is frozen and safe to share.
 *
 * @throws CelCompileError with `code` ERR_CEL_TOO_LONG, ERR_CEL_SYNTAX, ERR_CEL_UNKNOWN_VARIABLE,
 *   ERR_CEL_UNKNOWN_FUNCTION, ERR_CEL_TYPE, ERR_CEL_NOT_BOOL, ERR_CEL_REGEX or ERR_CEL_COST.
 */
export function compileCel(source: string): CompiledCel {
  if (typeof source !== 'string') throw new CelCompileError('ERR_CEL_SYNTAX', 'expression must be a string');
  const bytes = Buffer.byteLength(source, 'utf8');
  if (bytes > MAX_CEL_SOURCE_BYTES) {
    throw new CelCompileError('ERR_CEL_TOO_LONG', `expression is ${bytes} bytes, over the ${MAX_CEL_SOURCE_BYTES}-byte limit`);
  }

  let program: ParseResult;
  try {
    program = environment.parse(source);
  } catch (error) {
    throw translateCompileError(source, error);
  }
  const checked = program.check();
  if (!checked.valid) throw translateCompileError(source, checked.error);
  // `dyn` (e.g. `claims.admin`) is checked at run time; anything statically non-bool can never allow.
  if (checked.type !== 'bool' && checked.type !== 'dyn') {
    throw new CelCompileError('ERR_CEL_NOT_BOOL', `expression returns ${checked.type}, not bool`);
  }
  vetAst(source, program.ast);

  const evaluate = (activation: { claims: Record<string, unknown>; request: CelRequest }): CelResult => {
    try {
      const value: unknown = program({ claims: toCelClaims(activation.claims), request: activation.request });
      if (typeof value === 'boolean') return { ok: true, value };
      return { ok: false, error: `expression returned ${celTypeName(value)}, not bool` };
    } catch (error) {
      return { ok: false, error: describeEvaluationError(error) };
    }
  };
  return Object.freeze({ source, evaluate });
}

// ---------------------------------------------------------------------------------------------------------
// Compile-time errors

function translateCompileError(source: string, error: unknown): CelCompileError {
  if (error instanceof CelCompileError) return error;
  if (!(error instanceof ParseError || error instanceof CelTypeError)) {
    return new CelCompileError('ERR_CEL_SYNTAX', `cannot compile expression: ${firstLine(error)}`);
  }
  const position = error.range ? positionOf(source, error.range.start) : undefined;
  const summary = error.summary || firstLine(error);
  if (error instanceof ParseError) {
    if (error.code === 'limit_exceeded') return new CelCompileError('ERR_CEL_COST', `too complex: ${summary}`, position);
    return new CelCompileError('ERR_CEL_SYNTAX', `syntax error: ${summary}`, position);
  }
  switch (error.code) {
    case 'unknown_variable': {
      const name = error.node?.op === 'id' ? error.node.args : summary.replace(/^Unknown variable: /, '');
      return new CelCompileError(
        'ERR_CEL_UNKNOWN_VARIABLE',
        `unknown variable "${name}": only claims and request are defined`,
        position,
      );
    }
    case 'no_matching_overload': {
      const node = error.node;
      const name = node?.op === 'call' || node?.op === 'rcall' ? node.args[0] : undefined;
      if (name !== undefined && !knownFunctions.has(name)) {
        return new CelCompileError('ERR_CEL_UNKNOWN_FUNCTION', `unknown function "${name}"`, position);
      }
      return new CelCompileError('ERR_CEL_TYPE', `type error: ${summary}`, position);
    }
    case 'no_such_key': {
      // Only `request` has declared fields; claims are a map and a missing claim is a run-time matter.
      const field = error.node?.op === '.' ? error.node.args[1] : summary.replace(/^No such key: /, '');
      return new CelCompileError(
        'ERR_CEL_TYPE',
        `type error: no field "${field}" (request has method, path, host, params, headers, query)`,
        position,
      );
    }
    default:
      return new CelCompileError('ERR_CEL_TYPE', `type error: ${summary}`, position);
  }
}

function positionOf(source: string, offset: number): { line: number; column: number } {
  const before = source.slice(0, Math.max(0, Math.min(offset, source.length)));
  const lineStart = before.lastIndexOf('\n') + 1;
  let line = 1;
  for (let i = before.indexOf('\n'); i !== -1; i = before.indexOf('\n', i + 1)) line++;
  return { line, column: offset - lineStart + 1 };
}

function firstLine(error: unknown): string {
  const message = error instanceof Error ? error.message : String(error);
  return message.split('\n', 1)[0] ?? message;
}

// ---------------------------------------------------------------------------------------------------------
// Static vetting: regular expressions and comprehension cost. The library has no run-time cost limit
// (cel-go's cost estimator has no counterpart), so the bounds are enforced on the AST at load.

function vetAst(source: string, root: ASTNode): void {
  // dataDepth: enclosing comprehensions whose range comes from claims/request; literalProduct: the
  // product of the sizes of enclosing comprehensions over list/map literals.
  const walk = (node: ASTNode, dataDepth: number, literalProduct: number): void => {
    if (node.op === 'rcall') {
      const [name, receiver, args] = node.args;
      if (name === 'matches' && args.length === 1 && args[0]) vetRegexArgument(source, args[0]);
      if (COMPREHENSIONS.has(name) && args.length >= 2) {
        walk(receiver, dataDepth, literalProduct);
        const literalSize = receiver.op === 'list' ? receiver.args.length : receiver.op === 'map' ? receiver.args.length : undefined;
        if (literalSize === undefined && dataDepth > 0) {
          throw new CelCompileError(
            'ERR_CEL_COST',
            `"${name}" over request or claims data is nested inside another such comprehension; ` +
              'its cost would grow with the square of attacker-influenced sizes',
            positionOf(source, node.start),
          );
        }
        const product = literalProduct * Math.max(1, literalSize ?? 1);
        if (product > MAX_LITERAL_ITERATIONS) {
          throw new CelCompileError(
            'ERR_CEL_COST',
            `nested comprehensions over literals iterate up to ${product} times (limit ${MAX_LITERAL_ITERATIONS})`,
            positionOf(source, node.start),
          );
        }
        for (const arg of args) walk(arg, literalSize === undefined ? dataDepth + 1 : dataDepth, product);
        return;
      }
    }
    if (node.op === 'call' && node.args[0] === 'matches' && node.args[1].length === 2 && node.args[1][1]) {
      vetRegexArgument(source, node.args[1][1]);
    }
    for (const child of childrenOf(node)) walk(child, dataDepth, literalProduct);
  };
  walk(root, 0, 1);
}

function childrenOf(node: ASTNode): ASTNode[] {
  switch (node.op) {
    case 'value':
    case 'id':
      return [];
    case '.':
    case '.?':
      return [node.args[0]];
    case 'call':
      return node.args[1];
    case 'rcall':
      return [node.args[1], ...node.args[2]];
    case 'list':
      return node.args;
    case 'map':
      return node.args.flat();
    case '!_':
    case '-_':
      return [node.args];
    default:
      return [...node.args];
  }
}

/**
 * CEL specifies RE2 (linear time); the library runs JavaScript's backtracking RegExp on the text, which is
 * request data. So a pattern must be a literal (vetted here, at load) and must stay within the subset that
 * means the same in both engines and cannot backtrack catastrophically in the obvious way.
 */
function vetRegexArgument(source: string, node: ASTNode): void {
  const position = positionOf(source, node.start);
  if (node.op !== 'value' || typeof node.args !== 'string') {
    throw new CelCompileError('ERR_CEL_REGEX', 'matches() needs a string literal pattern, so it can be vetted at load', position);
  }
  const problem = regexProblem(node.args);
  if (problem !== undefined) throw new CelCompileError('ERR_CEL_REGEX', `regular expression /${node.args}/: ${problem}`, position);
}

/** Returns why a pattern is refused, or undefined. */
function regexProblem(pattern: string): string | undefined {
  try {
    new RegExp(pattern);
  } catch {
    if (/^\(\?[a-zA-Z]+\)/.test(pattern)) return 'flag groups like (?i) are not supported; write (?i:...) (valid in RE2 and JavaScript)';
    return 'invalid';
  }
  // One frame per open group: did the group contain an unbounded quantifier?
  const groups: boolean[] = [false];
  let inClass = false;
  for (let i = 0; i < pattern.length; i++) {
    const c = pattern[i];
    if (c === '\\') {
      const next = pattern[i + 1] ?? '';
      if (/[0-9]/.test(next)) return 'backreferences and octal escapes are not supported (RE2 has no backreferences)';
      if (next === 'x') {
        if (!/^[0-9a-fA-F]{2}$/.test(pattern.slice(i + 2, i + 4))) return 'write \\x with exactly two hex digits';
        i += 3;
        continue;
      }
      // Other letters either differ between the engines (\A, \z, \p, \Q, \k, \u, \c) or are identity
      // escapes in JavaScript that RE2 rejects.
      if (/[a-zA-Z]/.test(next) && !'dDwWsSbBtnrfv'.includes(next)) return `escape \\${next} means different things in RE2 and JavaScript`;
      i++;
      continue;
    }
    if (inClass) {
      if (c === '[' && pattern[i + 1] === ':') return 'POSIX classes like [[:alpha:]] are not supported by JavaScript';
      if (c === ']') inClass = false;
      continue;
    }
    if (c === '[') {
      inClass = true;
      if (pattern[i + 1] === '^') i++;
      if (pattern[i + 1] === ']') i++; // a leading ] is literal in RE2 (JavaScript: empty class; rejected by RegExp above if invalid)
      continue;
    }
    if (c === '(') {
      if (pattern[i + 1] === '?') {
        const rest = pattern.slice(i + 2);
        if (/^(=|!|<=|<!)/.test(rest)) return 'lookaround assertions are not supported (not RE2)';
      }
      groups.push(false);
      continue;
    }
    const unbounded = c === '*' || c === '+' || (c === '{' && /^\{\d*,\}/.test(pattern.slice(i)));
    if (c === ')') {
      const inner = groups.pop() ?? false;
      const after = pattern.slice(i + 1);
      const quantifiedUnbounded = /^(\*|\+|\{\d*,\})/.test(after);
      if (inner && quantifiedUnbounded) return 'nested unbounded quantifiers like (a+)+ can backtrack catastrophically';
      if (inner || quantifiedUnbounded) groups[groups.length - 1] = true;
      continue;
    }
    if (unbounded) groups[groups.length - 1] = true;
  }
  return undefined;
}

// ---------------------------------------------------------------------------------------------------------
// Run time

/**
 * JSON -> CEL values: safe integers become int (bigint), other numbers stay double. Structure is shared:
 * only objects and arrays on the path to a number are copied (a typical token copies its top level only),
 * which keeps the conversion at a few hundred nanoseconds. Inherited names cannot resolve either way: the
 * library reads own properties only (`has(claims.toString)` is false). Throws on values JSON cannot carry
 * or on nesting deeper than MAX_CLAIMS_DEPTH; the caller turns that into a failed evaluation.
 */
function toCelClaims(claims: Record<string, unknown>): Record<string, unknown> {
  if (claims === null || typeof claims !== 'object' || Array.isArray(claims)) throw new Error('claims must be an object');
  return toCelValue(claims, 0) as Record<string, unknown>;
}

function toCelValue(value: unknown, depth: number): unknown {
  if (typeof value === 'number') return Number.isSafeInteger(value) ? BigInt(value) : value;
  if (typeof value === 'string' || typeof value === 'boolean' || value === null) return value;
  if (typeof value !== 'object') throw new Error(`claims hold a ${typeof value}, which JSON cannot carry`);
  if (depth >= MAX_CLAIMS_DEPTH) throw new Error(`claims nest deeper than ${MAX_CLAIMS_DEPTH} levels`);
  if (Array.isArray(value)) {
    let copy: unknown[] | undefined;
    for (let i = 0; i < value.length; i++) {
      const item: unknown = value[i];
      if (typeof item === 'string' || typeof item === 'boolean') continue; // the common case, without a call
      const converted = toCelValue(item, depth + 1);
      if (converted !== item) (copy ??= value.slice())[i] = converted;
    }
    return copy ?? value;
  }
  const record = value as Record<string, unknown>;
  let copy: Record<string, unknown> | undefined;
  // for-in with an own-property guard: several times faster than Object.keys() on V8 (enum cache).
  for (const key in record) {
    const item = record[key];
    if (typeof item === 'string' || typeof item === 'boolean') continue;
    if (!Object.hasOwn(record, key)) continue;
    if (item === undefined) continue; // not JSON: left as it is
    const converted = toCelValue(item, depth + 1);
    if (converted === item) continue;
    copy ??= { ...record };
    // A claim named "__proto__" must stay an own property: assignment would set the prototype.
    if (key === '__proto__') Object.defineProperty(copy, key, { value: converted, enumerable: true, writable: true, configurable: true });
    else copy[key] = converted;
  }
  return copy ?? value;
}

function celTypeName(value: unknown): string {
  switch (typeof value) {
    case 'bigint':
      return 'int';
    case 'number':
      return 'double';
    case 'string':
      return 'string';
    case 'boolean':
      return 'bool';
    case 'object':
      if (value === null) return 'null_type';
      if (Array.isArray(value) || value instanceof Set) return 'list';
      if (value instanceof Uint8Array) return 'bytes';
      if (value instanceof Date) return 'timestamp';
      if (value instanceof Map || Object.getPrototypeOf(value) === null || Object.getPrototypeOf(value) === Object.prototype) return 'map';
      return value.constructor.name === 'UnsignedInt' ? 'uint' : value.constructor.name.toLowerCase();
    default:
      return typeof value;
  }
}

function describeEvaluationError(error: unknown): string {
  if (error instanceof EvaluationError) return error.summary || firstLine(error);
  if (error instanceof RangeError) return 'evaluation exceeded the stack';
  return firstLine(error);
}
