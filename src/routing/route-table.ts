/**
 * The route table, compiled once: routes sorted most-specific first (exact host before wildcard host before
 * any host; exact path before prefix; longer prefix first), so a request is matched by one linear scan that
 * stops at the first hit. Declaration order breaks ties, as users expect from Envoy and nginx.
 */
import { ProxyError } from '../errors.ts';
import type { RouteConfig } from '../config/types.ts';

export interface RouteTable {
  /** Throws ERR_ROUTE_NOT_FOUND, or ERR_METHOD_NOT_ALLOWED when only the method differs. */
  match(host: string, method: string, path: string): RouteConfig;
}

export function createRouteTable(routes: readonly RouteConfig[]): RouteTable {
  const sorted = routes
    .map((route, order) => ({ route, order }))
    .sort((a, b) => specificity(b.route) - specificity(a.route) || a.order - b.order)
    .map((entry) => entry.route);
  return {
    match(host, method, path) {
      let pathMatched = false;
      for (const route of sorted) {
        if (!matchHost(route.host, host) || !matchPath(route, path)) continue;
        if (route.methods.length === 0 || route.methods.includes(method)) return route;
        pathMatched = true;
      }
      throw new ProxyError(pathMatched ? 'ERR_METHOD_NOT_ALLOWED' : 'ERR_ROUTE_NOT_FOUND');
    },
  };
}

function specificity(route: RouteConfig): number {
  const host = route.host === undefined ? 0 : route.host.startsWith('*.') ? 1 : 2;
  const path = route.path.kind === 'exact' ? 100_000 : route.path.value.length;
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
  const h = header.toLowerCase();
  if (h.startsWith('[')) return h.slice(0, h.indexOf(']') + 1);
  const colon = h.lastIndexOf(':');
  return colon >= 0 ? h.slice(0, colon) : h;
}
