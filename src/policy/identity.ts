/**
 * Roles, scopes and groups as one normalised view over the claim layouts of real IdPs: Keycloak
 * (`realm_access.roles`, `resource_access.<client>.roles`), Auth0 (`permissions`, namespaced claims), Okta
 * (`scp` array), Entra ID (`roles`), and the RFC 8693 / RFC 9068 `scope` string (space-delimited).
 * Which claim paths feed each list is per issuer (`issuers.<id>.identity`).
 */
import { getClaim } from './claim-path.ts';
import type { IdentityMapping } from '../config/types.ts';

export interface Identity {
  readonly roles: ReadonlySet<string>;
  readonly scopes: ReadonlySet<string>;
  readonly groups: ReadonlySet<string>;
}

export function identityOf(claims: Record<string, unknown>, mapping: IdentityMapping): Identity {
  return {
    roles: collect(claims, mapping.roles),
    scopes: collect(claims, mapping.scopes),
    groups: collect(claims, mapping.groups),
  };
}

/** Strings, arrays of strings, and space-delimited strings (RFC 6749 §3.3 scope syntax) all count. */
function collect(claims: Record<string, unknown>, paths: IdentityMapping['roles']): Set<string> {
  const out = new Set<string>();
  for (const path of paths) {
    const value = getClaim(claims, path);
    if (typeof value === 'string') {
      for (const item of value.split(' ')) if (item !== '') out.add(item);
    } else if (Array.isArray(value)) {
      for (const item of value) if (typeof item === 'string' && item !== '') out.add(item);
    }
  }
  return out;
}
