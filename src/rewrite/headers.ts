/**
 * Builds the header set the upstream receives. The client's headers are copied from `rawHeaders` minus:
 * hop-by-hop fields and those named in Connection (RFC 9110 §7.6.1), the credentials the proxy consumed,
 * every header the proxy sets itself (so an identity header can never be spoofed by the client), and
 * X-Forwarded-* unless the proxy is told to trust the hop in front of it.
 */
import { randomBytes } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import { getClaim } from '../policy/claim-path.ts';
import { droppedByConnection, isHopByHop } from '../upstream/hop-by-hop.ts';
import type { HeaderTemplate, RouteConfig, TokenLocation } from '../config/types.ts';

export type HeaderMap = Record<string, string | string[]>;


/** Compiled once per route: names dropped from every request on it. */
export interface HeaderPolicy {
  readonly drop: ReadonlySet<string>;
  /** Prefixes of templated header names: every client header starting with one is dropped. */
  readonly dropPrefixes: readonly string[];
  readonly route: RouteConfig;
  readonly trustForwarded: boolean;
}

const FORWARDED = ['x-forwarded-for', 'x-forwarded-proto', 'x-forwarded-host', 'x-forwarded-port', 'forwarded'];
/** Longest claim value forwarded as a header; longer values are omitted rather than cut (a cut list lies). */
export const MAX_CLAIM_HEADER_BYTES = 4096;

/**
 * Every header name any route sets from claims or templates. These are stripped from client requests on
 * every route: an upstream shared by several routes may trust a header that only one of them sets.
 */
export function ownedHeaderNames(routes: readonly RouteConfig[]): { names: Set<string>; prefixes: string[] } {
  const names = new Set<string>();
  const prefixes = new Set<string>();
  for (const route of routes) {
    for (const h of route.claimHeaders) names.add(h.header);
    for (const h of route.headerTemplates) (h.nameParts === undefined ? names : prefixes).add(h.header);
  }
  return { names, prefixes: [...prefixes] };
}

export function createHeaderPolicy(route: RouteConfig, trustForwarded: boolean, owned: { names: ReadonlySet<string>; prefixes: readonly string[] }): HeaderPolicy {
  const drop = new Set<string>(['x-request-id', ...owned.names]);
  // Loki: the proxy owns the tenant header; X-Prom-Label-Policy would let a client ask a label proxy
  // further down for another policy.
  if (route.loki !== undefined) {
    drop.add('x-scope-orgid');
    drop.add('x-prom-label-policy');
  }
  if (!trustForwarded) for (const h of FORWARDED) drop.add(h);
  if (route.stripAuthorization) {
    for (const loc of route.auth.from) if (loc.kind === 'header') drop.add(loc.name);
    drop.add('authorization');
  }
  return { drop, dropPrefixes: owned.prefixes, route, trustForwarded };
}

export interface HeaderContext {
  readonly requestId: string;
  readonly clientIp: string;
  readonly claims: Record<string, unknown> | undefined;
  /** Where the token was found, so that a cookie carrying it is removed too. */
  readonly tokenFrom: TokenLocation | undefined;
  /** Path parameters, for `{{request.params.x}}` templates. */
  readonly params: Readonly<Record<string, string>>;
}

/** The request id to use: the client's when it is sane, otherwise a new one (see `newRequestId`). */
export function requestIdOf(req: IncomingMessage): string {
  const given = req.headers['x-request-id'];
  return typeof given === 'string' && /^[A-Za-z0-9._:-]{1,128}$/.test(given) ? given : newRequestId();
}

// Request ids are UUIDv8 (RFC 9562 §5.8: custom layout): 74 random bits drawn once per process, then a 48-bit
// counter. Unique across instances with overwhelming probability, ordered within one, and about a tenth of
// the cost of randomUUID() on the request path. They are correlation ids, not secrets.
let idPrefix = '';
let idCounter = 0;
const ID_COUNTER_LIMIT = 2 ** 48;

export function newRequestId(): string {
  if (idPrefix === '' || idCounter === ID_COUNTER_LIMIT) {
    const r = randomBytes(10);
    r[6] = 0x80 | (r[6]! & 0x0f); // version 8
    r[8] = 0x80 | (r[8]! & 0x3f); // variant 10
    const hex = r.toString('hex');
    idPrefix = `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-`;
    idCounter = 0;
  }
  return idPrefix + (idCounter++).toString(16).padStart(12, '0');
}

export function buildUpstreamHeaders(req: IncomingMessage, policy: HeaderPolicy, ctx: HeaderContext): HeaderMap {
  // A plain object (fast properties; null-prototype objects are dictionaries, ~3x slower to fill and for
  // undici to read). `__proto__` is therefore never copied: assigning it would set the prototype.
  const out: HeaderMap = {};
  const raw = req.rawHeaders;
  const named = droppedByConnection(req.headers.connection);
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i]!.toLowerCase();
    const value = raw[i + 1]!;
    if (isHopByHop(name) || policy.drop.has(name) || named?.has(name) === true || name === '__proto__') continue;
    if (policy.dropPrefixes.length > 0 && policy.dropPrefixes.some((p) => name.startsWith(p))) continue;
    // Own values only: `constructor`, `toString`... are valid header names and inherited functions here.
    const prev = out[name];
    if (typeof prev !== 'string' && !Array.isArray(prev)) out[name] = value;
    else if (Array.isArray(prev)) prev.push(value);
    else out[name] = [prev, value];
  }
  if (ctx.tokenFrom?.kind === 'cookie' && policy.route.stripAuthorization && out.cookie !== undefined) {
    const cookie = stripCookie(out.cookie, ctx.tokenFrom.name);
    if (cookie === '') delete out.cookie;
    else out.cookie = cookie;
  }

  out['x-request-id'] = ctx.requestId;
  const host = req.headers.host;
  if (policy.trustForwarded) {
    const prior = req.headers['x-forwarded-for'];
    out['x-forwarded-for'] = prior ? `${prior}, ${ctx.clientIp}` : ctx.clientIp;
    if (out['x-forwarded-proto'] === undefined) out['x-forwarded-proto'] = 'http';
    if (out['x-forwarded-host'] === undefined && host !== undefined) out['x-forwarded-host'] = host;
  } else {
    out['x-forwarded-for'] = ctx.clientIp;
    out['x-forwarded-proto'] = 'http';
    if (host !== undefined) out['x-forwarded-host'] = host;
  }

  if (ctx.claims !== undefined) {
    for (const { header, claim } of policy.route.claimHeaders) {
      const value = formatClaimHeader(getClaim(ctx.claims, claim));
      if (value !== undefined) out[header] = value;
    }
    for (const template of policy.route.headerTemplates) {
      const value = renderTemplate(template.parts, ctx.claims, ctx.params);
      if (value === undefined) continue;
      let name = template.header;
      if (template.nameParts !== undefined) {
        const suffix = renderTemplate(template.nameParts, ctx.claims, ctx.params)?.toLowerCase();
        // A rendered name must still be one header token; anything else (a claim with spaces, a list
        // that renders a comma) is skipped rather than forwarded under a mangled name.
        if (suffix === undefined || suffix === '' || !/^[!#$%&'*+.^_`|~0-9a-z-]{1,200}$/.test(suffix)) continue;
        name += suffix;
      }
      out[name] = value;
    }
  }
  return out;
}

/** A template renders only when every placeholder has a value: a half-filled identity header misleads. */
function renderTemplate(parts: HeaderTemplate['parts'], claims: Record<string, unknown>, params: Readonly<Record<string, string>>): string | undefined {
  let text = '';
  for (const part of parts) {
    if ('text' in part) text += part.text;
    else {
      const value = 'claim' in part ? getClaim(claims, part.claim) : params[part.param];
      if (value === undefined || value === null || (typeof value === 'object' && !Array.isArray(value))) return undefined;
      text += Array.isArray(value) ? value.join(',') : String(value);
    }
  }
  return formatClaimHeader(text);
}

/**
 * A claim as a header value: scalars as text, arrays joined with ',' (RFC 9110 §5.3 list syntax), objects as
 * JSON. Values with control characters (CR/LF would split the header) or over the size bound are omitted.
 * Non-ASCII text is sent as UTF-8 bytes, which Node writes through as latin1 code units.
 */
export function formatClaimHeader(value: unknown): string | undefined {
  let text: string;
  if (value === undefined || value === null) return undefined;
  if (typeof value === 'string') text = value;
  else if (typeof value === 'number' || typeof value === 'boolean') text = String(value);
  else if (Array.isArray(value)) {
    if (!value.every((v) => typeof v === 'string' || typeof v === 'number' || typeof v === 'boolean')) {
      text = JSON.stringify(value);
    } else text = value.join(',');
  } else text = JSON.stringify(value);
  // eslint-disable-next-line no-control-regex
  if (/[\u0000-\u0008\u000a-\u001f\u007f]/.test(text)) return undefined;
  const bytes = Buffer.from(text, 'utf8');
  if (bytes.length > MAX_CLAIM_HEADER_BYTES) return undefined;
  return bytes.length === text.length ? text : bytes.toString('latin1');
}

function stripCookie(header: string | string[], name: string): string {
  const all = Array.isArray(header) ? header.join('; ') : header;
  return all
    .split(';')
    .map((part) => part.trim())
    .filter((part) => part !== '' && part.slice(0, part.indexOf('=')).trim() !== name)
    .join('; ');
}

/** Removes the token's query parameter so the credential never reaches the upstream or its logs. */
export function stripQueryParam(query: string, name: string): string {
  if (query === '') return query;
  const params = new URLSearchParams(query);
  if (!params.has(name)) return query;
  params.delete(name);
  return params.toString();
}
