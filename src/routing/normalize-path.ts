/**
 * Normalises a request path before routing, so that the path the proxy matched and authorized is the path
 * the upstream receives. Without it `/public/../admin` matches a public prefix and the upstream serves
 * `/admin` (the classic path-confusion bypass Envoy guards with normalize_path + merge_slashes).
 *
 * - percent-encoded unreserved characters are decoded (RFC 3986 §6.2.2.2), hex upper-cased (§6.2.2.1);
 * - encoded `/` and `\` are refused: backends disagree on whether they separate segments;
 * - repeated slashes are merged and dot segments removed (RFC 3986 §5.2.4);
 * - the result always starts with `/`. The query string is returned untouched.
 */
import { ProxyError } from '../errors.ts';

export interface NormalizedTarget {
  readonly path: string;
  /** Query string without the leading `?`, or '' */
  readonly query: string;
}

const UNRESERVED = /[A-Za-z0-9\-._~]/;

export function normalizeRequestTarget(target: string): NormalizedTarget {
  let raw = target;
  if (!raw.startsWith('/')) {
    // absolute-form (RFC 9112 §3.2.2) is only for forward proxies; asterisk-form only for OPTIONS.
    throw new ProxyError('ERR_REQUEST_INVALID', { message: 'request target must be a path', detail: 'non-origin-form target' });
  }
  const hash = raw.indexOf('#');
  if (hash >= 0) raw = raw.slice(0, hash);
  const q = raw.indexOf('?');
  const rawPath = q >= 0 ? raw.slice(0, q) : raw;
  const query = q >= 0 ? raw.slice(q + 1) : '';
  // Fast path: nothing to normalise in the common case.
  if (!/%|\/\/|\/\.|\\/.test(rawPath)) return { path: rawPath, query };

  let decoded = '';
  for (let i = 0; i < rawPath.length; i++) {
    const ch = rawPath[i]!;
    if (ch === '\\') throw invalidPath('backslash in path');
    if (ch !== '%') {
      decoded += ch;
      continue;
    }
    const hex = rawPath.slice(i + 1, i + 3);
    if (!/^[0-9A-Fa-f]{2}$/.test(hex)) throw invalidPath('bad percent-encoding');
    const char = String.fromCharCode(parseInt(hex, 16));
    if (char === '/' || char === '\\') throw invalidPath('encoded slash in path');
    decoded += UNRESERVED.test(char) ? char : '%' + hex.toUpperCase();
    i += 2;
  }
  return { path: removeDotSegments(decoded.replace(/\/{2,}/g, '/')), query };
}

function invalidPath(detail: string): ProxyError {
  return new ProxyError('ERR_REQUEST_INVALID', { message: 'invalid request path', detail });
}

/** RFC 3986 §5.2.4, on a path that has no empty segments left. */
function removeDotSegments(path: string): string {
  const out: string[] = [];
  const segments = path.split('/');
  for (let i = 1; i < segments.length; i++) {
    const segment = segments[i]!;
    const last = i === segments.length - 1;
    if (segment === '.') {
      if (last) out.push('');
    } else if (segment === '..') {
      out.pop();
      if (last) out.push('');
    } else {
      out.push(segment);
    }
  }
  return '/' + out.join('/');
}
