/**
 * Enforced queries remembered by their exact text and enforced labels. A Grafana panel sends the same query
 * text on every refresh (only `start`/`end` move), and parsing, enforcing, writing and re-checking it costs
 * several microseconds per request. The result is a pure function of (kind, query, enforced labels) under the
 * default parser limits, so a memo keyed by all three exactly gives the same answer as computing it.
 *
 * - Only successes are kept: a refusal is always computed again, so it can never depend on memo state.
 * - The key holds the labels as JSON, so no two label sets share a key (a value may contain any character;
 *   `["a","b"]` and `["a,b"]` enforce different matchers), then a newline JSON never contains, then the query.
 * - Bounded: queries over MEMO_MAX_QUERY_CHARS are not remembered, and two generations of at most
 *   MEMO_GENERATION_ENTRIES each hold everything; a full generation becomes the old one and the previous old
 *   one is dropped whole. Every operation stays O(1) under churn, with no per-entry eviction.
 */
import { enforceLogql, enforceSelector, type EnforcedLabels } from './enforce.ts';

/** Queries longer than this are enforced every time (a dashboard's queries are far shorter). */
export const MEMO_MAX_QUERY_CHARS = 2048;
/** Entries per generation; at most twice this many are held. */
export const MEMO_GENERATION_ENTRIES = 512;

export interface EnforceMemo {
  /** `enforceLogql(query, enforce).query`, remembered. Throws exactly what enforceLogql throws. */
  logql(query: string, enforce: EnforcedLabels): string;
  /** `enforceSelector(text, enforce)`, remembered. Throws exactly what enforceSelector throws. */
  selector(text: string, enforce: EnforcedLabels): string;
  /** Entries held now (both generations). */
  size(): number;
}

export function createEnforceMemo(generationEntries: number = MEMO_GENERATION_ENTRIES, maxQueryChars: number = MEMO_MAX_QUERY_CHARS): EnforceMemo {
  let current = new Map<string, string>();
  let previous = new Map<string, string>();

  const remember = (key: string, value: string): void => {
    if (current.size >= generationEntries) {
      previous = current;
      current = new Map();
    }
    current.set(key, value);
  };

  const lookup = (kind: string, text: string, enforce: EnforcedLabels, compute: () => string): string => {
    if (text.length > maxQueryChars) return compute();
    const key = `${kind}${JSON.stringify([...enforce])}\n${text}`;
    const hit = current.get(key);
    if (hit !== undefined) return hit;
    const old = previous.get(key);
    const value = old ?? compute();
    // Promoted from the old generation or new: either way it lives on in the current one.
    remember(key, value);
    return value;
  };

  return {
    logql: (query, enforce) => lookup('q', query, enforce, () => enforceLogql(query, enforce).query),
    selector: (text, enforce) => lookup('s', text, enforce, () => enforceSelector(text, enforce)),
    size: () => current.size + previous.size,
  };
}
