/**
 * What the load sends. Every scenario is one token file that wrk cycles through, one token per request.
 */
import type { Alg } from './tokens.ts';

export type TokenKind = 'same' | 'distinct' | 'invalid' | 'invalid-same';

export interface Scenario {
  readonly id: string;
  readonly title: string;
  readonly alg: Alg;
  readonly tokens: TokenKind;
  /** Route copies sub, realm_access.roles and tenant into x-user-id, x-user-roles, x-tenant. */
  readonly claims: boolean;
  /** What an authenticating contestant must answer (pass-through and direct always answer 200). */
  readonly expect: 200 | 401;
}

export const SCENARIOS: readonly Scenario[] = [
  { id: 'same', title: 'same valid RS256 token', alg: 'RS256', tokens: 'same', claims: false, expect: 200 },
  { id: 'distinct', title: 'every request a new valid RS256 token', alg: 'RS256', tokens: 'distinct', claims: false, expect: 200 },
  { id: 'invalid', title: 'every request a new bad RS256 signature', alg: 'RS256', tokens: 'invalid', claims: false, expect: 401 },
  { id: 'invalid-same', title: 'one bad RS256 signature, repeated', alg: 'RS256', tokens: 'invalid-same', claims: false, expect: 401 },
  { id: 'claims', title: 'same valid RS256 token, 3 claims -> headers', alg: 'RS256', tokens: 'same', claims: true, expect: 200 },
  { id: 'same-es256', title: 'same valid ES256 token', alg: 'ES256', tokens: 'same', claims: false, expect: 200 },
  { id: 'distinct-es256', title: 'every request a new valid ES256 token', alg: 'ES256', tokens: 'distinct', claims: false, expect: 200 },
  { id: 'same-eddsa', title: 'same valid EdDSA token', alg: 'EdDSA', tokens: 'same', claims: false, expect: 200 },
  { id: 'distinct-eddsa', title: 'every request a new valid EdDSA token', alg: 'EdDSA', tokens: 'distinct', claims: false, expect: 200 },
];

/** The compact default set: the three scenarios the targets are stated for. */
export const DEFAULT_SCENARIOS: readonly string[] = ['same', 'distinct', 'invalid'];

/** Resolves `--scenario a,b` / `all` / `default` into scenarios, or throws naming the unknown ones. */
export function selectScenarios(spec: string): Scenario[] {
  const ids = spec === 'all' ? SCENARIOS.map((s) => s.id) : spec === 'default' ? [...DEFAULT_SCENARIOS] : spec.split(',');
  const unknown = ids.filter((id) => !SCENARIOS.some((s) => s.id === id));
  if (unknown.length > 0) {
    throw new Error(`unknown scenario ${unknown.join(', ')}; known: ${SCENARIOS.map((s) => s.id).join(', ')}, all, default`);
  }
  return SCENARIOS.filter((s) => ids.includes(s.id));
}
