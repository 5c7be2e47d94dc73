/**
 * The route table, compiled once: routes sorted most-specific first (exact host before wildcard host before
 * any host; literal exact path, then exact pattern, then prefix by length), so a request is matched by one
 * linear scan that stops at the first hit. Declaration order breaks ties, as users expect from Envoy and nginx.
 *
 * Paths may name parameters: `/envs/{env}/logs` matches one non-empty segment per `{name}`, available to
 * policies as `request.params.env`.
 */
import { ProxyError } from '../errors.ts';
import type { RouteConfig } from '../config/types.ts';

export interface RouteMatch {
  readonly route: RouteConfig;
  /** Path parameters; a shared empty object when the route has none. */
  readonly params: Readonly<Record<string, string>>;
}

export interface RouteTable {
  /** Throws ERR_ROUTE_NOT_FOUND, or ERR_METHOD_NOT_ALLOWED when only the method differs. */
  match(host: string, method: string, path: string): RouteMatch;
}

interface CompiledRoute {
  readonly route: RouteConfig;
  readonly pattern: RegExp | undefined;
  readonly paramNames: readonly string[];
}

const NO_PARAMS: Readonly<Record<string, string>> = Object.freeze({});

export function createRouteTable(routes: readonly RouteConfig[]): RouteTable {
  const sorted: CompiledRoute[] = routes
    .map((route, order) => ({ route, order }))
    .sort((a, b) => specificity(b.route) - specificity(a.route) || a.order - b.order)
    .map(({ route }) => ({ route, ...compilePattern(route) }));
  return {
    match(host, method, path) {
      let pathMatched = false;
      for (const entry of sorted) {
        const route = entry.route;
        if (!matchHost(route.host, host)) continue;
        let params = NO_PARAMS;
        if (entry.pattern !== undefined) {
          const m = entry.pattern.exec(path);
          if (m === null) continue;
          const found: Record<string, string> = {};
          entry.paramNames.forEach((name, i) => (found[name] = safeDecode(m[i + 1]!)));
          params = found;
        } else if (!matchPath(route, path)) continue;
        if (route.methods.length === 0 || route.methods.includes(method)) return { route, params };
        pathMatched = true;
      }
      throw new ProxyError(pathMatched ? 'ERR_METHOD_NOT_ALLOWED' : 'ERR_ROUTE_NOT_FOUND');
    },
  };
}

/** `{name}` segments become capture groups; everything else is matched literally. */
function compilePattern(route: RouteConfig): { pattern: RegExp | undefined; paramNames: string[] } {
  const value = route.path.value;
  if (!value.includes('{')) return { pattern: undefined, paramNames: [] };
  const paramNames: string[] = [];
  const source = value
    .split(/(\{[A-Za-z_][A-Za-z0-9_]*\})/)
    .map((part) => {
      if (/^\{[A-Za-z_][A-Za-z0-9_]*\}$/.test(part)) {
        paramNames.push(part.slice(1, -1));
        return '([^/]+)';
      }
      return part.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
    })
    .join('');
  const tail = route.path.kind === 'exact' ? '$' : value.endsWith('/') ? '' : '(?=/|$)';
  return { pattern: new RegExp(`^${source}${tail}`), paramNames };
}

function safeDecode(segment: string): string {
  try {
    return decodeURIComponent(segment);
  } catch {
    return segment;
  }
}

function specificity(route: RouteConfig): number {
  const host = route.host === undefined ? 0 : route.host.startsWith('*.') ? 1 : 2;
  const patterned = route.path.value.includes('{');
  const path = route.path.kind === 'exact' ? (patterned ? 200_000 : 300_000) : route.path.value.length;
  return host * 1_000_000 + path;
}

/** Host without port, lower-cased by the caller. `*.example.com` matches `a.example.com`, not `example.com`. */
function matchHost(pattern: string | undefined, host: string): boolean {
  if (pattern === undefined) return true;
  if (pattern.startsWith('*.')) return host.endsWith(pattern.slice(1)) && host.length > pattern.length - 1;
  return pattern === host;
}

/**
 * Prefixes match on segment boundaries: `/api` matches `/api` and `/api/x` but not `/apix`, which a plain
 * string prefix would let through to the wrong upstream.
 */
function matchPath(route: RouteConfig, path: string): boolean {
  const value = route.path.value;
  if (route.path.kind === 'exact') return path === value;
  if (!path.startsWith(value)) return false;
  return value.endsWith('/') || path.length === value.length || path[value.length] === '/';
}

/** Host header without port, lower-cased; '' when absent. Handles `[v6]:port`. */
export function hostOf(header: string | undefined): string {
  if (!header) return '';
  // Clients send the same Host on every request; comparing it costs less than folding and splitting it.
  if (header === lastHostHeader) return lastHost;
  lastHost = parseHost(header);
  lastHostHeader = header;
  return lastHost;
}

let lastHostHeader = '';
let lastHost = '';

function parseHost(header: string): string {
  const h = header.toLowerCase();
  if (h.startsWith('[')) return h.slice(0, h.indexOf(']') + 1);
  const colon = h.lastIndexOf(':');
  return colon >= 0 ? h.slice(0, colon) : h;
}
