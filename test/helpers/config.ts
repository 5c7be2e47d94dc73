/** Compiled-config fixtures for unit tests that build runtime objects without a YAML file. */
import type { IssuerConfig, JwksPolicy } from '../../src/config/types.ts';

export const TEST_JWKS_POLICY: JwksPolicy = {
  timeoutMs: 2_000,
  minTtlMs: 60_000,
  maxTtlMs: 600_000,
  cooldownMs: 30_000,
  staleMaxMs: 300_000,
  retryAfterSeconds: 7,
  maxBytes: 16_384,
};

/** An issuer with no keys, no audience check and the default identity mapping; override what matters. */
export function testIssuerConfig(over: Partial<IssuerConfig> & Pick<IssuerConfig, 'id' | 'issuer'>): IssuerConfig {
  return {
    audiences: [],
    algorithms: ['RS256', 'ES256'],
    clockSkewSeconds: 0,
    requiredClaims: ['exp'],
    discoveryUrl: undefined,
    jwksUri: undefined,
    staticKeys: [],
    jwks: TEST_JWKS_POLICY,
    identity: { roles: [['roles']], scopes: [['scope']], groups: [['groups']] },
    environment: undefined,
    ...over,
  };
}
