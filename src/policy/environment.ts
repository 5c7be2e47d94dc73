/**
 * Environment binding: a route (or the whole proxy) serves one environment, and a token names the
 * environment it was issued for — by a claim, or by its audience. A token of another environment, or one
 * that names none, is refused, so a staging token never reaches production and the reverse.
 */
import { ProxyError } from '../errors.ts';
import { getClaim } from './claim-path.ts';
import type { EnvironmentSource } from '../config/types.ts';

/** The environments a token names (several when its audience maps to several). */
export function environmentsOf(claims: Record<string, unknown>, source: EnvironmentSource): string[] {
  if (source.kind === 'claim') {
    const value = getClaim(claims, source.claim);
    if (typeof value === 'string') return [value];
    if (Array.isArray(value)) return value.filter((v): v is string => typeof v === 'string');
    return [];
  }
  const aud = claims.aud;
  const audiences = typeof aud === 'string' ? [aud] : Array.isArray(aud) ? aud : [];
  const out: string[] = [];
  for (const a of audiences) {
    if (typeof a === 'string' && Object.hasOwn(source.audiences, a)) out.push(source.audiences[a]!);
  }
  return out;
}

/** @throws ProxyError ERR_ENVIRONMENT_MISMATCH unless the token's environments are exactly `expected`. */
export function checkEnvironment(claims: Record<string, unknown>, source: EnvironmentSource | undefined, expected: string): void {
  const found = source === undefined ? [] : environmentsOf(claims, source);
  // A token naming several environments, one of them ours, is still refused: it is not bound to this one.
  if (found.length !== 1 || found[0] !== expected) {
    throw new ProxyError('ERR_ENVIRONMENT_MISMATCH', {
      detail: found.length === 0 ? `token names no environment; route serves ${expected}` : `token environment ${found.join(',')}; route serves ${expected}`,
    });
  }
}
