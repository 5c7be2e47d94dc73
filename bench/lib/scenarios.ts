/**
 * What the load sends. Every scenario is one token file that wrk cycles through, one token per request.
 */
import type { Alg } from './tokens.ts';

export type TokenKind = 'same' | 'distinct' | 'invalid' | 'invalid-same' | 'none';

/**
 * The token file's line for "send no Authorization header" (`none`): wrk's script and the drivers read it
 * as such. A JWT is three dot-separated segments, so no token is this line.
 */
export const NO_TOKEN = '-';

/** The request headers that carry `token`: none for NO_TOKEN. */
export function authHeaders(token: string): Record<string, string> {
  return token === NO_TOKEN ? {} : { authorization: `Bearer ${token}` };
}

/**
 * What the route does beyond authentication: nothing, an authorization policy (the same rules, written in
 * each contestant's own terms), or Loki's label-based access control (LogQL rewrite; Portcullis only).
 */
export type RouteKind = 'auth' | 'policy' | 'loki';

export interface Scenario {
  readonly id: string;
  readonly title: string;
  readonly alg: Alg;
  readonly tokens: TokenKind;
  /** Route copies sub, realm_access.roles and tenant into x-user-id, x-user-roles, x-tenant. */
  readonly claims: boolean;
  readonly route: RouteKind;
  /** Request target (path and query) every request of the scenario sends. */
  readonly path: string;
  /** What an authenticating contestant must answer (pass-through and direct always answer 200). */
  readonly expect: 200 | 401;
}

/**
 * The `policy` scenario's rules, the same for every contestant: deny a contractor (a role), allow a log
 * reader with the `logs:read` scope in tenant acme. The bench tokens pass them; `denied` tokens (the
 * contractor role) must get 403 before a contestant is measured.
 */
export const POLICY = {
  denyRole: 'contractor',
  role: 'log-reader',
  scope: 'logs:read',
  tenant: 'acme',
} as const;

/**
 * The `loki` scenario's query: a metric query over a log pipeline (line filter, parser, label filter) of the
 * kind a Grafana panel sends. Portcullis parses it, adds `env="staging"` (the token's env claim) to its
 * selector and re-serialises it on every request.
 */
export const LOKI_QUERY = 'sum by (level) (count_over_time({app="api", namespace=~"prod|staging"} |= "error" | json | level=~"error|warn" [5m]))';
export const LOKI_PATH = `/loki/api/v1/query_range?${new URLSearchParams({
  query: LOKI_QUERY,
  start: '1700000000000000000',
  end: '1700003600000000000',
  step: '60',
  limit: '100',
}).toString()}`;

const auth = { claims: false, route: 'auth', path: '/' } as const;

export const SCENARIOS: readonly Scenario[] = [
  { id: 'same', title: 'same valid RS256 token', alg: 'RS256', tokens: 'same', ...auth, expect: 200 },
  { id: 'distinct', title: 'every request a new valid RS256 token', alg: 'RS256', tokens: 'distinct', ...auth, expect: 200 },
  { id: 'invalid', title: 'every request a new bad RS256 signature', alg: 'RS256', tokens: 'invalid', ...auth, expect: 401 },
  { id: 'invalid-same', title: 'one bad RS256 signature, repeated', alg: 'RS256', tokens: 'invalid-same', ...auth, expect: 401 },
  { id: 'missing', title: 'no token (401 without a signature check)', alg: 'RS256', tokens: 'none', ...auth, expect: 401 },
  { id: 'claims', title: 'same valid RS256 token, 3 claims -> headers', alg: 'RS256', tokens: 'same', ...auth, claims: true, expect: 200 },
  { id: 'policy', title: 'same valid RS256 token, route policy (deny a role; allow role + scope + tenant)', alg: 'RS256', tokens: 'same', ...auth, route: 'policy', expect: 200 },
  { id: 'loki', title: 'same valid RS256 token, Loki query_range, LogQL enforced by the env claim', alg: 'RS256', tokens: 'same', ...auth, route: 'loki', path: LOKI_PATH, expect: 200 },
  { id: 'same-es256', title: 'same valid ES256 token', alg: 'ES256', tokens: 'same', ...auth, expect: 200 },
  { id: 'distinct-es256', title: 'every request a new valid ES256 token', alg: 'ES256', tokens: 'distinct', ...auth, expect: 200 },
  { id: 'same-eddsa', title: 'same valid EdDSA token', alg: 'EdDSA', tokens: 'same', ...auth, expect: 200 },
  { id: 'distinct-eddsa', title: 'every request a new valid EdDSA token', alg: 'EdDSA', tokens: 'distinct', ...auth, expect: 200 },
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
