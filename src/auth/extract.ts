/**
 * Finds the bearer token of a request in the locations a route allows (Envoy's extractors: header,
 * cookie, query). RFC 6750 §2: a client "MUST NOT use more than one method to transmit the token in each
 * request", so a token found twice is refused rather than picking one — the proxy and the upstream could
 * otherwise disagree about which credential was authorized.
 */
import type { IncomingMessage } from 'node:http';
import type { TokenLocation } from '../config/types.ts';
import { ProxyError } from '../errors.ts';

/** The token of a request and the location it came from (so the credential can be stripped upstream). */
export interface ExtractedToken {
  readonly token: string;
  readonly from: TokenLocation;
}

/**
 * Returns the one token of the request with its location, or undefined when no configured location
 * carries one.
 *
 * Headers are read from `req.rawHeaders` because Node keeps only the first `Authorization` in
 * `req.headers` and silently drops the rest. A header whose scheme differs from the configured prefix
 * (`Authorization: Basic ...` for a `Bearer ` prefix) carries no token. An empty cookie counts as absent
 * (servers clear a cookie by setting it empty and browsers keep sending `name=`).
 *
 * @throws ProxyError ERR_TOKEN_AMBIGUOUS (more than one token: two locations, a repeated header, query
 *   parameter or cookie), ERR_TOKEN_TOO_LARGE (over `maxTokenBytes`), ERR_TOKEN_MALFORMED (right scheme but
 *   an empty token or whitespace inside it).
 * @example
 *   const token = extractToken(req, url.search.slice(1), route.auth.from, config.limits.maxTokenBytes);
 */
export function extractToken(
  req: IncomingMessage,
  query: string,
  from: readonly TokenLocation[],
  maxTokenBytes: number,
): ExtractedToken | undefined {
  const found: ExtractedToken[] = [];
  // Parsed only when a query location is configured: most routes read a header.
  let params: URLSearchParams | undefined;
  for (let i = 0; i < from.length; i++) {
    const location = from[i]!;
    // The same location listed twice must not count its token twice.
    if (i > 0 && from.slice(0, i).some((earlier) => sameLocation(earlier, location))) continue;
    if (location.kind === 'header') collectFromHeader(req.rawHeaders, location, found);
    else if (location.kind === 'cookie') collectFromCookies(req.rawHeaders, location, found);
    else {
      params ??= new URLSearchParams(query);
      for (const token of params.getAll(location.name)) found.push({ token, from: location });
    }
  }
  const [only, second] = found;
  if (only === undefined) return undefined;
  if (second !== undefined) {
    throw new ProxyError('ERR_TOKEN_AMBIGUOUS', { detail: `tokens in ${found.map((f) => whereOf(f.from)).join(', ')}` });
  }
  checkToken(only, maxTokenBytes);
  return only;
}

function sameLocation(a: TokenLocation, b: TokenLocation): boolean {
  return a.kind === b.kind && a.name === b.name;
}

function collectFromHeader(
  rawHeaders: readonly string[],
  location: Extract<TokenLocation, { kind: 'header' }>,
  found: ExtractedToken[],
): void {
  const wanted = location.name;
  let occurrences = 0;
  let tokens = 0;
  for (let i = 0; i + 1 < rawHeaders.length; i += 2) {
    if (!equalsLowerCase(rawHeaders[i]!, wanted)) continue;
    occurrences += 1;
    const token = stripPrefix(rawHeaders[i + 1] ?? '', location.prefix);
    if (token !== undefined) {
      tokens += 1;
      found.push({ token, from: location });
    }
  }
  // Any repetition next to a token is ambiguous, even `Basic` + `Bearer`: RFC 9110 §11.6.2 makes
  // Authorization a single credential, and the upstream may read the other copy.
  if (tokens > 0 && occurrences > 1) {
    throw new ProxyError('ERR_TOKEN_AMBIGUOUS', { detail: `header ${wanted} repeated` });
  }
}

/** `name` equals `lower` (a lower-case header name) but for ASCII case, without building a lower-cased copy. */
function equalsLowerCase(name: string, lower: string): boolean {
  if (name.length !== lower.length) return false;
  for (let i = 0; i < name.length; i++) {
    const c = name.charCodeAt(i);
    if (c !== lower.charCodeAt(i) && (c < 65 || c > 90 || c + 32 !== lower.charCodeAt(i))) return false;
  }
  return true;
}

/** Where a token was found, for error details: `header authorization`, `cookie session`, `query token`. */
function whereOf(location: TokenLocation): string {
  return `${location.kind} ${location.name}`;
}

/**
 * The token part of a header value, or undefined when the value uses another scheme. A prefix ending in a
 * space is an auth-scheme (RFC 9110 §11.4: `credentials = auth-scheme [ 1*SP token68 ]`), matched
 * case-insensitively (RFC 6750 §2.1, RFC 9110 §11.1) and followed by one or more spaces; an empty prefix
 * means the whole value is the token.
 */
function stripPrefix(value: string, prefix: string): string | undefined {
  // The common spelling, exactly as configured and followed by the token: no case folding needed.
  if (prefix !== '' && value.startsWith(prefix) && value.charCodeAt(prefix.length) !== 32) return value.slice(prefix.length);
  const scheme = prefix.trimEnd();
  if (scheme === prefix) {
    return value.slice(0, prefix.length).toLowerCase() === prefix.toLowerCase() ? value.slice(prefix.length) : undefined;
  }
  const next = value.charAt(scheme.length);
  if (value.slice(0, scheme.length).toLowerCase() !== scheme.toLowerCase()) return undefined;
  if (next !== '' && next !== ' ' && next !== '\t') return undefined; // e.g. `Bearerish ...`: another scheme
  return value.slice(scheme.length).replace(/^ +/, '');
}

function collectFromCookies(
  rawHeaders: readonly string[],
  location: Extract<TokenLocation, { kind: 'cookie' }>,
  found: ExtractedToken[],
): void {
  const name = location.name;
  for (let i = 0; i + 1 < rawHeaders.length; i += 2) {
    if (!equalsLowerCase(rawHeaders[i]!, 'cookie')) continue;
    // RFC 6265 §5.4: `name=value` pairs separated by "; " (HTTP/2 may split them over several fields,
    // RFC 9113 §8.2.3, so every Cookie field is read).
    for (const pair of (rawHeaders[i + 1] ?? '').split(';')) {
      const eq = pair.indexOf('=');
      if (eq < 0 || pair.slice(0, eq).trim() !== name) continue;
      let token = pair.slice(eq + 1).trim();
      // RFC 6265 §4.1.1: a cookie-value may be wrapped in DQUOTEs that are not part of the value.
      if (token.length >= 2 && token.startsWith('"') && token.endsWith('"')) token = token.slice(1, -1);
      if (token !== '') found.push({ token, from: location });
    }
  }
}

function checkToken({ token, from }: ExtractedToken, maxTokenBytes: number): void {
  // UTF-8 takes 1 to 3 bytes per UTF-16 code unit, so the length alone settles every usual token.
  if (token.length > maxTokenBytes || (token.length * 3 > maxTokenBytes && Buffer.byteLength(token, 'utf8') > maxTokenBytes)) {
    throw new ProxyError('ERR_TOKEN_TOO_LARGE', { detail: `${whereOf(from)}: over ${maxTokenBytes} bytes` });
  }
  if (token === '') throw new ProxyError('ERR_TOKEN_MALFORMED', { detail: `${whereOf(from)}: empty token` });
  // RFC 6750 §2.1 b64token has no whitespace; "Bearer a b" or "Bearer a, Bearer b" is not one token. Space
  // and tab are what a header value can carry inside (RFC 9110 §5.5); searched for directly, a JWT's ~850
  // characters cost a fraction of a regular expression's walk. Any other whitespace (a decoded query or
  // cookie) fails the compact form's strict base64url check with the same code.
  if (token.includes(' ') || token.includes('\t')) throw new ProxyError('ERR_TOKEN_MALFORMED', { detail: `${whereOf(from)}: whitespace in the token` });
}
