/**
 * Label-based access control for Grafana Loki (DESIGN.md §4). Every read endpoint carries a selector
 * somewhere; each one is parsed and enforced, and the upstream request is rebuilt from ONE canonical
 * parameter set, so that what the proxy checked is exactly what Loki reads:
 *
 * - parameters come from the URL and, for form-encoded POSTs, the body (Loki reads both); a parameter
 *   given twice anywhere is refused, except `match[]`/`match` which are each enforced and unioned;
 * - a query that cannot be parsed is refused (400), never forwarded; a missing or empty enforcing claim is
 *   403 (never `label=""`, which would match streams without the label);
 * - endpoints the proxy does not know are denied, push only when the route allows it;
 * - the proxy owns X-Scope-OrgID: a client asking for a tenant outside its set is refused, not overwritten.
 */
import type { IncomingMessage } from 'node:http';
import { ProxyError } from '../errors.ts';
import { compileEnforcement } from '../logql/enforce.ts';
import { createEnforceMemo } from '../logql/enforce-memo.ts';
import { LogqlError } from '../logql/errors.ts';
import { quoteString } from '../logql/serializer.ts';
import { getClaim } from '../policy/claim-path.ts';
import type { LokiRouteConfig } from '../config/types.ts';

type EndpointKind = 'query' | 'query-optional' | 'series' | 'labels' | 'push';

/** Loki's HTTP API (and the legacy /api/prom aliases) by what carries the selector. */
const ENDPOINTS: readonly (readonly [RegExp, EndpointKind])[] = [
  [/^\/loki\/api\/v1\/(?:query|query_range|tail)$/, 'query'],
  [/^\/api\/prom\/(?:query|tail)$/, 'query'],
  [/^\/loki\/api\/v1\/(?:index\/stats|index\/volume|index\/volume_range|patterns|detected_labels|detected_fields)$/, 'query-optional'],
  [/^\/loki\/api\/v1\/detected_field\/[^/]+\/values$/, 'query-optional'],
  [/^\/loki\/api\/v1\/series$/, 'series'],
  [/^\/api\/prom\/series$/, 'series'],
  [/^\/loki\/api\/v1\/(?:labels|label)$/, 'labels'],
  [/^\/loki\/api\/v1\/label\/[^/]+\/values$/, 'labels'],
  [/^\/api\/prom\/label$/, 'labels'],
  [/^\/api\/prom\/label\/[^/]+\/values$/, 'labels'],
  [/^\/loki\/api\/v1\/push$/, 'push'],
  [/^\/api\/prom\/push$/, 'push'],
  [/^\/otlp\/v1\/logs$/, 'push'],
];

export interface LokiRewrite {
  /** Upstream path and query. */
  readonly path: string;
  /** A rebuilt form body for POSTs; undefined for GET (and push, which streams through). */
  readonly body: Buffer | undefined;
  /** Headers the proxy sets (X-Scope-OrgID). */
  readonly headers: Record<string, string>;
  /** For the access log and audit: never for metrics labels. */
  readonly log: { readonly endpoint: string; readonly original?: string; readonly enforced?: string; readonly tenant?: string; readonly start?: string; readonly end?: string };
}

const FORM = 'application/x-www-form-urlencoded';

// One per process: an enforced query depends only on its text and the enforced labels (enforce-memo.ts), not
// on the route or the config generation, so reloads need not drop it.
const memo = createEnforceMemo();

/**
 * Synchronous for GET; a promise only when a POSTed form body must be read first (like every stage of the
 * request path, pipeline.ts). Refusals are thrown, or reject the promise.
 *
 * @throws ProxyError ERR_LOKI_ENDPOINT_DENIED, ERR_LOKI_QUERY_INVALID, ERR_LOKI_PARAM_INVALID,
 *   ERR_LOKI_BODY_INVALID, ERR_LOKI_BODY_TOO_LARGE, ERR_LOKI_CLAIM_MISSING, ERR_LOKI_TENANT_DENIED
 */
export function rewriteLokiRequest(
  req: IncomingMessage,
  config: LokiRouteConfig,
  claims: Record<string, unknown>,
  path: string,
  query: string,
): LokiRewrite | Promise<LokiRewrite> {
  const endpointPath = path.length > 1 && path.endsWith('/') ? path.slice(0, -1) : path;
  const kind = ENDPOINTS.find(([re]) => re.test(endpointPath))?.[1];
  if (kind === undefined || (kind === 'push' && !config.allowPush)) {
    throw new ProxyError('ERR_LOKI_ENDPOINT_DENIED', { detail: `endpoint ${endpointPath}` });
  }
  const headers: Record<string, string> = {};
  const tenant = config.tenant === undefined ? undefined : selectTenant(req, claims, config);
  if (tenant !== undefined) headers['x-scope-orgid'] = tenant;
  // Push streams through untouched: writers are admitted by the route's rules, and the body is protobuf.
  if (kind === 'push') return { path: query ? `${endpointPath}?${query}` : endpointPath, body: undefined, headers, log: { endpoint: endpointPath, tenant } };

  const enforce = enforcedValues(claims, config);
  const method = req.method ?? 'GET';
  const params: [string, string][] = [...new URLSearchParams(query)];
  if (method === 'POST') {
    return readForm(req, config.maxBodyBytes).then((form) => rebuild(kind, endpointPath, method, params.concat(form), enforce, headers, tenant));
  }
  if (method !== 'GET' && method !== 'HEAD') {
    throw new ProxyError('ERR_LOKI_ENDPOINT_DENIED', { detail: `method ${method} on ${endpointPath}` });
  }
  return rebuild(kind, endpointPath, method, params, enforce, headers, tenant);
}

/** Enforces every selector-carrying parameter and rebuilds ONE canonical parameter set from the rest. */
function rebuild(
  kind: Exclude<EndpointKind, 'push'>,
  endpointPath: string,
  method: string,
  params: readonly [string, string][],
  enforce: Map<string, string[]>,
  headers: Record<string, string>,
  tenant: string | undefined,
): LokiRewrite {
  const out: [string, string][] = [];
  const seen = new Set<string>();
  const selectors: string[] = [];
  let original: string | undefined;
  let enforced: string | undefined;
  for (const [name, value] of params) {
    if (kind === 'series' && (name === 'match[]' || name === 'match')) {
      selectors.push(enforce1(() => memo.selector(value, enforce)));
      continue;
    }
    if (seen.has(name)) throw new ProxyError('ERR_LOKI_PARAM_INVALID', { detail: `parameter ${name} given more than once` });
    seen.add(name);
    if (name === 'query') {
      original = value;
      enforced = enforce1(() => (kind === 'labels' ? memo.selector(value, enforce) : memo.logql(value, enforce)));
      out.push(['query', enforced]);
    } else {
      out.push([name, value]);
    }
  }
  if (kind === 'series') {
    // No selector means "all series" to Loki: the proxy narrows it to the caller's streams.
    if (selectors.length === 0) selectors.push(bareSelector(enforce));
    for (const s of selectors) out.push(['match[]', s]);
    enforced = selectors.join(' ');
  } else if (original === undefined) {
    if (kind === 'query') throw new ProxyError('ERR_LOKI_PARAM_INVALID', { detail: 'parameter query is required' });
    enforced = bareSelector(enforce);
    out.push(['query', enforced]);
  }

  const canonical = new URLSearchParams(out).toString();
  const range = new Map(out);
  const log = { endpoint: endpointPath, original, enforced, tenant, start: range.get('start'), end: range.get('end') };
  if (method === 'POST') return { path: endpointPath, body: Buffer.from(canonical), headers, log };
  return { path: `${endpointPath}?${canonical}`, body: undefined, headers, log };
}

/** Label -> allowed values from the token; a missing, empty or non-string claim is refused. */
function enforcedValues(claims: Record<string, unknown>, config: LokiRouteConfig): Map<string, string[]> {
  const out = new Map<string, string[]>();
  for (const { label, claim } of config.enforce) {
    const values = stringValues(getClaim(claims, claim));
    if (values === undefined) {
      throw new ProxyError('ERR_LOKI_CLAIM_MISSING', { detail: `claim ${claim.join('.')} for label ${label} is missing or empty` });
    }
    out.set(label, values);
  }
  return out;
}

function stringValues(value: unknown): string[] | undefined {
  const list = typeof value === 'string' ? [value] : Array.isArray(value) ? value : undefined;
  if (list === undefined || list.length === 0) return undefined;
  if (!list.every((v): v is string => typeof v === 'string' && v !== '')) return undefined;
  return list;
}

function enforce1(run: () => string): string {
  try {
    return run();
  } catch (error) {
    if (error instanceof LogqlError) {
      throw new ProxyError(error.code === 'ERR_LOGQL_ENFORCE' ? 'ERR_LOKI_CLAIM_MISSING' : 'ERR_LOKI_QUERY_INVALID', {
        message: error.code === 'ERR_LOGQL_ENFORCE' ? undefined : `the log query cannot be parsed: ${error.message}`,
        detail: error.code,
      });
    }
    throw error;
  }
}

/** `{l1="v", l2=~"^(?:a|b)$"}` — the caller's whole allowed set, for endpoints given no selector. */
function bareSelector(enforce: ReadonlyMap<string, readonly string[]>): string {
  return `{${compileEnforcement(enforce).map((m) => `${m.name}${m.op}${quoteString(m.value)}`).join(', ')}}`;
}

/**
 * The tenant(s) from the token; a client may narrow to a subset with X-Scope-OrgID but never widen.
 * Several tenants are joined with `|` (Loki's multi-tenant query syntax) only when the route allows it.
 */
function selectTenant(req: IncomingMessage, claims: Record<string, unknown>, config: LokiRouteConfig): string {
  const allowed = stringValues(getClaim(claims, config.tenant!));
  if (allowed === undefined) throw new ProxyError('ERR_LOKI_CLAIM_MISSING', { detail: 'tenant claim is missing or empty' });
  const asked = req.headers['x-scope-orgid'];
  let tenants = allowed;
  if (asked !== undefined) {
    const requested = (Array.isArray(asked) ? asked.join('|') : asked).split('|').map((t) => t.trim());
    const outside = requested.filter((t) => !allowed.includes(t));
    if (outside.length > 0) throw new ProxyError('ERR_LOKI_TENANT_DENIED', { detail: `requested tenant outside the token's set` });
    tenants = requested;
  }
  if (tenants.length > 1 && !config.multiTenant) {
    throw new ProxyError('ERR_LOKI_TENANT_DENIED', { message: 'several tenants are allowed; choose one with X-Scope-OrgID', detail: 'multi-tenant queries not enabled' });
  }
  return tenants.join('|');
}

/** Reads a form-encoded body up to the limit. Another content type is refused: it cannot be enforced. */
async function readForm(req: IncomingMessage, maxBytes: number): Promise<[string, string][]> {
  const type = (req.headers['content-type'] ?? '').split(';')[0]!.trim().toLowerCase();
  const declared = Number(req.headers['content-length'] ?? 0);
  if (declared > maxBytes) throw new ProxyError('ERR_LOKI_BODY_TOO_LARGE', { detail: `content-length ${declared}` });
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    size += (chunk as Buffer).length;
    if (size > maxBytes) throw new ProxyError('ERR_LOKI_BODY_TOO_LARGE', { detail: `body over ${maxBytes} bytes` });
    chunks.push(chunk as Buffer);
  }
  if (size === 0) return [];
  if (type !== FORM) throw new ProxyError('ERR_LOKI_BODY_INVALID', { detail: `content-type ${type || 'none'}` });
  return [...new URLSearchParams(Buffer.concat(chunks).toString('utf8'))];
}
