/**
 * Reads a YAML config file, substitutes `${ENV}` references and validates it against the schema, keeping
 * every node's position so that each problem is reported as `FILE:LINE:COL: message` — all of them at once,
 * not the first one only.
 */
import { readFileSync } from 'node:fs';
import { isMap, isPair, isScalar, isSeq, LineCounter, parseDocument, visit } from 'yaml';
import type { Document, Node } from 'yaml';
import type { z } from 'zod';
import { configSchema } from './schema.ts';
import type { RawConfig } from './schema.ts';

export interface ConfigProblem {
  readonly file: string;
  readonly line: number;
  readonly col: number;
  readonly message: string;
}

/** A configuration that cannot be used; `problems` lists every reason with its position. */
export class ConfigError extends Error {
  readonly code = 'ERR_CONFIG_INVALID';
  readonly problems: readonly ConfigProblem[];
  constructor(problems: readonly ConfigProblem[]) {
    super(problems.map(formatProblem).join('\n'));
    this.name = 'ConfigError';
    this.problems = problems;
  }
}

export function formatProblem(p: ConfigProblem): string {
  return `${p.file}:${p.line}:${p.col}: ${p.message}`;
}

export type PathSegment = string | number;

/** Finds the position of a config path (or of its nearest existing ancestor) for error messages. */
export interface Locator {
  readonly file: string;
  at(path: readonly PathSegment[], key?: string): { line: number; col: number };
  problem(path: readonly PathSegment[], message: string, key?: string): ConfigProblem;
}

export interface LoadedConfig {
  readonly raw: RawConfig;
  readonly locator: Locator;
  readonly text: string;
}

const MAX_CONFIG_BYTES = 4 * 1024 * 1024;

/**
 * Loads and validates a config file. Throws ConfigError (code ERR_CONFIG_INVALID) with every problem found:
 * YAML syntax, unset environment variables, unknown keys, wrong types, bad durations.
 */
export function loadConfigFile(file: string, env: NodeJS.ProcessEnv = process.env): LoadedConfig {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (error) {
    throw new ConfigError([{ file, line: 0, col: 0, message: `cannot read config: ${(error as Error).message}` }]);
  }
  return loadConfigText(text, file, env);
}

export function loadConfigText(text: string, file: string, env: NodeJS.ProcessEnv = process.env): LoadedConfig {
  if (text.length > MAX_CONFIG_BYTES) {
    throw new ConfigError([{ file, line: 1, col: 1, message: `config larger than ${MAX_CONFIG_BYTES} bytes` }]);
  }
  const lineCounter = new LineCounter();
  // uniqueKeys: a key given twice is almost always a mistake whose second value would silently win.
  const doc = parseDocument(text, { lineCounter, uniqueKeys: true, prettyErrors: false });
  const position = (offset: number): { line: number; col: number } => {
    const pos = lineCounter.linePos(offset);
    return { line: pos.line, col: pos.col };
  };
  const locator = createLocator(file, doc, position);
  const problems: ConfigProblem[] = [];
  for (const error of [...doc.errors, ...doc.warnings]) {
    const pos = position(error.pos[0]);
    problems.push({ file, ...pos, message: error.message.split('\n')[0] ?? error.message });
  }
  if (problems.length > 0) throw new ConfigError(problems);

  substituteEnv(doc, env, (node, message) => {
    problems.push({ file, ...position(node.range?.[0] ?? 0), message });
  });

  // reportInput: a missing key and a key of the wrong type are told apart by the issue's input.
  const result = configSchema.safeParse(doc.toJS() ?? {}, { reportInput: true });
  if (!result.success) {
    // A value whose ${ENV} failed is already reported; its knock-on schema error would only add noise.
    const reported = new Set(problems.map((p) => `${p.line}:${p.col}`));
    const schemaProblems = result.error.issues.flatMap((issue) => describeIssue(issue, locator));
    problems.push(...schemaProblems.filter((p) => !reported.has(`${p.line}:${p.col}`)));
  }
  if (problems.length > 0 || !result.success) throw new ConfigError(sortProblems(problems));
  return { raw: result.data, locator, text };
}

export function sortProblems(problems: readonly ConfigProblem[]): ConfigProblem[] {
  return [...problems].sort((a, b) => a.line - b.line || a.col - b.col);
}

/**
 * `${NAME}` in any string value is replaced by the environment variable, `${NAME:-default}` falls back to
 * a default; `$${` escapes a literal `${`.
 * An unset variable is an error rather than an empty string: an empty secret or URL fails open elsewhere.
 */
function substituteEnv(doc: Document, env: NodeJS.ProcessEnv, report: (node: Node, message: string) => void): void {
  visit(doc, {
    Scalar(key, node) {
      if (key === 'key' || typeof node.value !== 'string' || !node.value.includes('${')) return;
      node.value = node.value.replace(/\$?\$\{([^}]*)\}/g, (match: string, name: string) => {
        if (match.startsWith('$$')) return match.slice(1);
        const sep = name.indexOf(':-');
        const fallback = sep >= 0 ? name.slice(sep + 2) : undefined;
        if (sep >= 0) name = name.slice(0, sep);
        if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(name)) {
          report(node, `invalid environment reference "${match}"`);
          return match;
        }
        const value = env[name] ?? fallback;
        if (value === undefined) {
          report(node, `environment variable ${name} is not set`);
          return match;
        }
        return value;
      });
    },
  });
}

function describeIssue(issue: z.core.$ZodIssue, locator: Locator): ConfigProblem[] {
  const path = issue.path.filter((p): p is PathSegment => typeof p !== 'symbol');
  if (issue.code === 'unrecognized_keys') {
    return issue.keys.map((key) => locator.problem(path, `unknown key "${key}"${suggestKey(path)}`, key));
  }
  if (issue.code === 'invalid_type' && issue.input === undefined) {
    const name = path[path.length - 1];
    return [locator.problem(path.slice(0, -1), `missing required key "${String(name)}"`)];
  }
  const where = path.length > 0 ? `${path.join('.')}: ` : '';
  let message = issue.message;
  if (issue.code === 'invalid_type') message = `expected ${issue.expected}, got ${describeValue(issue.input)}`;
  return [locator.problem(path, where + message)];
}

function suggestKey(path: readonly PathSegment[]): string {
  return path.length === 0 ? ' at the top level' : ` in ${path.join('.')}`;
}

function describeValue(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'a list';
  if (typeof value === 'object') return 'a mapping';
  return `${typeof value} ${JSON.stringify(value)}`;
}

function createLocator(
  file: string,
  doc: Document,
  position: (offset: number) => { line: number; col: number },
): Locator {
  const find = (path: readonly PathSegment[], key?: string): { line: number; col: number } => {
    let node: unknown = doc.contents;
    let best = position(0);
    if (node && typeof node === 'object' && 'range' in node) best = position((node as Node).range?.[0] ?? 0);
    const segments: PathSegment[] = key === undefined ? [...path] : [...path, key];
    for (let i = 0; i < segments.length; i++) {
      const segment = segments[i];
      const isLast = i === segments.length - 1;
      if (isMap(node)) {
        const pair = node.items.find((item) => isPair(item) && isScalar(item.key) && String(item.key.value) === String(segment));
        if (!pair) break;
        // For an unknown key, point at the key itself; otherwise at the value.
        const target = isLast && key !== undefined ? pair.key : (pair.value ?? pair.key);
        const range = (target as Node | null)?.range;
        if (range) best = position(range[0]);
        node = pair.value;
      } else if (isSeq(node) && typeof segment === 'number') {
        const item = node.items[segment] as Node | undefined;
        if (!item) break;
        if (item.range) best = position(item.range[0]);
        node = item;
      } else {
        break;
      }
    }
    return best;
  };
  return {
    file,
    at: find,
    problem: (path, message, key) => ({ file, ...find(path, key), message }),
  };
}
