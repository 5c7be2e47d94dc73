import { test } from 'node:test';
import assert from 'node:assert/strict';
import { compilePolicy, evaluatePolicy } from '../../src/policy/evaluate.ts';
import { identityOf } from '../../src/policy/identity.ts';
import { checkEnvironment } from '../../src/policy/environment.ts';
import { parseClaimPath } from '../../src/policy/claim-path.ts';
import { ProxyError } from '../../src/errors.ts';
import type { IdentityMapping, PolicyRule, Requirement } from '../../src/config/types.ts';
import { AUTH0, ENTRA, KEYCLOAK, OKTA } from '../fixtures/idp-claims.ts';

const DEFAULT_MAPPING: IdentityMapping = {
  roles: [['roles'], ['realm_access', 'roles']],
  scopes: [['scope'], ['scp'], ['permissions']],
  groups: [['groups']],
};
const AUTH0_MAPPING: IdentityMapping = { ...DEFAULT_MAPPING, roles: [['https://example.com/roles']] };
const KEYCLOAK_CLIENT: IdentityMapping = { ...DEFAULT_MAPPING, roles: [['realm_access', 'roles'], ['resource_access', 'logs-api', 'roles']] };

const req = (r: Partial<Requirement>): Requirement => ({ roles: [], scopes: [], groups: [], claims: [], ...r });
const allow = (id: string, require?: Partial<Requirement>, when?: string): PolicyRule => ({ id, effect: 'allow', require: require ? req(require) : undefined, when });
const deny = (id: string, require?: Partial<Requirement>, when?: string): PolicyRule => ({ id, effect: 'deny', require: require ? req(require) : undefined, when });
const claim = (path: string, ...values: (string | number | boolean)[]) => ({ claim: parseClaimPath(path), values });

interface Case {
  readonly name: string;
  readonly claims: Record<string, unknown>;
  readonly mapping?: IdentityMapping;
  readonly rules: PolicyRule[];
  readonly allowed: boolean;
  readonly rule?: string;
  readonly code?: string;
  readonly scope?: string;
  readonly params?: Record<string, string>;
}

const CASES: Case[] = [
  // Keycloak
  { name: 'keycloak realm role', claims: KEYCLOAK, rules: [allow('r', { roles: ['log-reader'] })], allowed: true, rule: 'r' },
  { name: 'keycloak missing role', claims: KEYCLOAK, rules: [allow('r', { roles: ['admin'] })], allowed: false, code: 'ERR_ACCESS_DENIED' },
  { name: 'keycloak client role via mapping', claims: KEYCLOAK, mapping: KEYCLOAK_CLIENT, rules: [allow('r', { roles: ['staging-reader'] })], allowed: true },
  { name: 'keycloak client role not in default mapping', claims: KEYCLOAK, rules: [allow('r', { roles: ['staging-reader'] })], allowed: false },
  { name: 'keycloak scope string', claims: KEYCLOAK, rules: [allow('r', { scopes: ['logs:read'] })], allowed: true },
  { name: 'keycloak group path', claims: KEYCLOAK, rules: [allow('r', { groups: ['/platform/sre'] })], allowed: true },
  { name: 'keycloak nested claim path', claims: KEYCLOAK, rules: [allow('r', { claims: [claim('resource_access.logs-api.roles', 'staging-reader')] })], allowed: true },
  { name: 'keycloak env any-of', claims: KEYCLOAK, rules: [allow('r', { claims: [claim('env', 'staging', 'dev')] })], allowed: true },
  { name: 'keycloak env wrong', claims: KEYCLOAK, rules: [allow('r', { claims: [claim('env', 'production')] })], allowed: false },
  { name: 'all keys must hold (role ok, scope missing)', claims: KEYCLOAK, rules: [allow('r', { roles: ['log-reader'], scopes: ['logs:write'] })], allowed: false, code: 'ERR_INSUFFICIENT_SCOPE', scope: 'logs:write' },
  // Auth0
  { name: 'auth0 permissions as scopes', claims: AUTH0, rules: [allow('r', { scopes: ['read:logs'] })], allowed: true },
  { name: 'auth0 namespaced roles via mapping', claims: AUTH0, mapping: AUTH0_MAPPING, rules: [allow('r', { roles: ['log-reader'] })], allowed: true },
  { name: 'auth0 namespaced claim by bracket path', claims: AUTH0, rules: [allow('r', { claims: [claim('[https://example.com/env]', 'production')] })], allowed: true },
  { name: 'auth0 namespaced list claim', claims: AUTH0, rules: [allow('r', { claims: [claim('[https://example.com/teams]', 'search')] })], allowed: true },
  { name: 'auth0 missing permission -> insufficient_scope', claims: AUTH0, rules: [allow('r', { scopes: ['write:logs', 'admin:logs'] })], allowed: false, code: 'ERR_INSUFFICIENT_SCOPE', scope: 'write:logs admin:logs' },
  // Okta
  { name: 'okta scp array', claims: OKTA, rules: [allow('r', { scopes: ['logs.read'] })], allowed: true },
  { name: 'okta groups', claims: OKTA, rules: [allow('r', { groups: ['SRE'] })], allowed: true },
  { name: 'okta env as a list claim', claims: OKTA, rules: [allow('r', { claims: [claim('env', 'staging')] })], allowed: true },
  // Entra ID
  { name: 'entra app roles', claims: ENTRA, rules: [allow('r', { roles: ['Logs.Reader'] })], allowed: true },
  { name: 'entra scp space-delimited string', claims: ENTRA, rules: [allow('r', { scopes: ['Logs.Read'] })], allowed: true },
  { name: 'entra tenant id', claims: ENTRA, rules: [allow('r', { claims: [claim('tid', '72f988bf-86f1-41af-91ab-2d7cd011db47')] })], allowed: true },
  { name: 'entra wrong tenant', claims: ENTRA, rules: [allow('r', { claims: [claim('tid', 'another')] })], allowed: false },
  // rule semantics
  { name: 'default deny with no matching rule', claims: OKTA, rules: [allow('a', { roles: ['x'] }), allow('b', { groups: ['y'] })], allowed: false, code: 'ERR_ACCESS_DENIED' },
  { name: 'first matching allow decides', claims: OKTA, rules: [allow('a', { roles: ['x'] }), allow('b', { groups: ['SRE'] }), allow('c', { scopes: ['logs.read'] })], allowed: true, rule: 'b' },
  { name: 'deny wins over allow', claims: OKTA, rules: [allow('a', { groups: ['SRE'] }), deny('no-everyone', { groups: ['Everyone'] })], allowed: false, rule: 'no-everyone', code: 'ERR_ACCESS_DENIED' },
  { name: 'deny not matching lets allow through', claims: OKTA, rules: [deny('d', { groups: ['Contractors'] }), allow('a', { groups: ['SRE'] })], allowed: true, rule: 'a' },
  { name: 'empty claims: nothing matches', claims: {}, rules: [allow('a', { roles: ['x'] })], allowed: false },
  { name: 'claim of object type never equals a value', claims: KEYCLOAK, rules: [allow('a', { claims: [claim('realm_access', 'x')] })], allowed: false },
  { name: 'numeric and boolean claim values', claims: { level: 3, mfa: true }, rules: [allow('a', { claims: [claim('level', 3), claim('mfa', true)] })], allowed: true },
  { name: 'string "3" is not the number 3', claims: { level: '3' }, rules: [allow('a', { claims: [claim('level', 3)] })], allowed: false },
  // CEL rules
  { name: 'cel keycloak role', claims: KEYCLOAK, rules: [allow('c', undefined, '"log-reader" in claims.realm_access.roles')], allowed: true, rule: 'c' },
  { name: 'cel path param in claim list', claims: { envs: ['staging', 'dev'] }, rules: [allow('c', undefined, 'request.params.env in claims.envs')], allowed: true, params: { env: 'staging' } },
  { name: 'cel path param not in claim list', claims: { envs: ['dev'] }, rules: [allow('c', undefined, 'request.params.env in claims.envs')], allowed: false, params: { env: 'production' } },
  { name: 'cel missing claim is false, not an error escaping', claims: {}, rules: [allow('c', undefined, '"x" in claims.realm_access.roles')], allowed: false, code: 'ERR_ACCESS_DENIED' },
  { name: 'cel error in a deny rule denies (fail closed)', claims: OKTA, rules: [allow('a', { groups: ['SRE'] }), deny('d', undefined, 'claims.nope.deeper == "x"')], allowed: false, rule: 'd' },
  { name: 'cel and shorthand in one rule: both must hold', claims: OKTA, rules: [allow('a', { groups: ['SRE'] }, 'claims.cid == "other"')], allowed: false },
];

test('policy engine: IdP claim layouts, shorthand, CEL, deny-over-allow, default deny', () => {
  for (const c of CASES) {
    const policy = compilePolicy(c.rules);
    const d = evaluatePolicy(policy, {
      claims: c.claims as Record<string, unknown>,
      identity: identityOf(c.claims as Record<string, unknown>, c.mapping ?? DEFAULT_MAPPING),
      request: { method: 'GET', path: '/', host: 'h', params: c.params ?? {}, headers: {}, query: {} },
    });
    assert.equal(d.allowed, c.allowed, c.name);
    if (c.rule !== undefined) assert.equal(d.ruleId, c.rule, c.name);
    if (c.code !== undefined) assert.equal(d.error?.code, c.code, c.name);
    if (c.scope !== undefined) assert.equal(d.error?.scope, c.scope, c.name);
    assert.equal(d.trace.length, c.rules.length, `${c.name}: every rule is traced`);
  }
});

test('environment binding: by claim, by audience, none, several', () => {
  const byClaim = { kind: 'claim', claim: ['env'] } as const;
  const byAud = { kind: 'audience', audiences: { 'logs-staging': 'staging', 'logs-prod': 'production' } } as const;
  const ok = (claims: Record<string, unknown>, source: Parameters<typeof checkEnvironment>[1], env: string) => checkEnvironment(claims, source, env);
  const refused = (claims: Record<string, unknown>, source: Parameters<typeof checkEnvironment>[1], env: string) =>
    assert.throws(() => checkEnvironment(claims, source, env), (e: unknown) => e instanceof ProxyError && e.code === 'ERR_ENVIRONMENT_MISMATCH');
  ok({ env: 'staging' }, byClaim, 'staging');
  refused({ env: 'staging' }, byClaim, 'production');
  refused({ env: 'production' }, byClaim, 'staging');
  refused({}, byClaim, 'staging');
  refused({ env: ['staging', 'production'] }, byClaim, 'staging');
  ok({ aud: 'logs-staging' }, byAud, 'staging');
  ok({ aud: ['logs-prod', 'account'] }, byAud, 'production');
  refused({ aud: ['logs-prod', 'logs-staging'] }, byAud, 'production');
  refused({ aud: 'other' }, byAud, 'production');
  refused({ env: 'staging' }, undefined, 'staging');
});
