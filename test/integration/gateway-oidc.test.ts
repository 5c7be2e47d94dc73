/**
 * Interop with a real OpenID provider (oidc-provider): discovery, JWT access tokens from client_credentials
 * with a resource indicator, key rotation through the unknown-kid refetch, and IdP claim layouts forwarded.
 */
import { test, before, after, beforeEach } from 'node:test';
import assert from 'node:assert/strict';
import { DEFAULT_AUDIENCE, startIdp } from '../helpers/idp.ts';
import type { TestIdp } from '../helpers/idp.ts';
import { startRecordingUpstream } from '../helpers/upstream.ts';
import { accessLogs, startProxy } from '../helpers/proxy.ts';
import type { RunningProxy } from '../helpers/proxy.ts';

let idp: TestIdp;
let upstream: Awaited<ReturnType<typeof startRecordingUpstream>>;
let proxy: RunningProxy;

before(async () => {
  idp = await startIdp();
  upstream = await startRecordingUpstream();
  proxy = await startProxy(`
issuers:
  corp:
    issuer: ${idp.issuer}
    discovery: true
    audiences: [${DEFAULT_AUDIENCE}]
    algorithms: [RS256]
    jwks: { cooldown: 0s }
upstreams:
  up: { targets: ["${upstream.origin}"] }
routes:
  - id: api
    match: { path_prefix: / }
    upstream: up
    claims_to_headers:
      x-sub: sub
      x-scope: scope
      x-keycloak-roles: realm_access.roles
      x-client-roles: resource_access.portcullis.roles
      x-auth0-roles: "[https://portcullis.test/roles]"
      x-permissions: permissions
      x-okta-scp: scp
      x-entra-roles: roles
      x-entra-tid: tid
`);
});

after(async () => {
  await proxy.close();
  await upstream.close();
  await idp.close();
});

beforeEach(() => upstream.reset());

async function get(token: string | undefined, path = '/data') {
  const res = await fetch(proxy.url + path, { headers: token ? { authorization: `Bearer ${token}` } : {} });
  const body = (await res.json()) as Record<string, unknown>;
  return { status: res.status, body };
}

test('the proxy finds the IdP by discovery and is ready once it has keys', async () => {
  const ready = await fetch(proxy.adminUrl + '/readyz');
  assert.equal(ready.status, 200);
  const metrics = await (await fetch(proxy.adminUrl + '/metrics')).text();
  assert.match(metrics, /portcullis_jwks_fetches_total\{issuer="corp",outcome="ok",reason=""\} [1-9]/);
  assert.match(metrics, /portcullis_issuer_ready\{issuer="corp"\} 1/);
});

test('an access token issued by the IdP (client_credentials + resource indicator) passes end to end', async () => {
  const token = await idp.getAccessToken({ scope: 'logs:read' });
  const r = await get(token);
  assert.equal(r.status, 200, JSON.stringify(r.body));
  assert.equal(upstream.requests.length, 1);
  assert.equal(upstream.requests[0]!.headers['x-sub'], idp.clientId);
  assert.equal(upstream.requests[0]!.headers['x-scope'], 'logs:read');
  assert.equal(upstream.requests[0]!.headers.authorization, undefined);
});

test('a token for another resource (audience) is refused', async () => {
  const token = await idp.getAccessToken({ resource: 'https://other.portcullis.test' });
  const r = await get(token);
  assert.equal(r.status, 401);
  assert.equal(r.body.code, 'ERR_TOKEN_AUDIENCE_MISMATCH');
  assert.equal(upstream.requests.length, 0);
});

test('Keycloak, Auth0, Okta and Entra ID claim layouts verify and are forwarded', async () => {
  const shapes: Array<[string, Record<string, unknown>, Record<string, string>]> = [
    ['keycloak', { realm_access: { roles: ['log-reader', 'offline_access'] }, resource_access: { portcullis: { roles: ['viewer'] } } }, { 'x-keycloak-roles': 'log-reader,offline_access', 'x-client-roles': 'viewer' }],
    ['auth0', { 'https://portcullis.test/roles': ['admin'], permissions: ['read:logs', 'write:logs'] }, { 'x-auth0-roles': 'admin', 'x-permissions': 'read:logs,write:logs' }],
    ['okta', { scp: ['logs.read', 'openid'] }, { 'x-okta-scp': 'logs.read,openid' }],
    ['entra', { roles: ['Logs.Reader'], tid: '72f988bf-86f1-41af-91ab-2d7cd011db47' }, { 'x-entra-roles': 'Logs.Reader', 'x-entra-tid': '72f988bf-86f1-41af-91ab-2d7cd011db47' }],
  ];
  for (const [name, claims, expected] of shapes) {
    upstream.reset();
    const token = await idp.getAccessToken({ claims });
    const r = await get(token);
    assert.equal(r.status, 200, `${name}: ${JSON.stringify(r.body)}`);
    for (const [header, value] of Object.entries(expected)) {
      assert.equal(upstream.requests[0]!.headers[header], value, `${name} ${header}`);
    }
  }
});

test('after key rotation new tokens are accepted via the unknown-kid refetch; old ones follow the JWKS', async () => {
  const before = await idp.getAccessToken();
  assert.equal((await get(before)).status, 200);
  const fetchesBefore = await jwksFetchCount();

  // Rollover: the old key stays published.
  await idp.rotateKeys({ keepOld: true });
  const afterRollover = await idp.getAccessToken();
  assert.equal((await get(afterRollover)).status, 200, 'new kid accepted after one refetch');
  assert.equal((await get(before)).status, 200, 'old kid still published, still accepted');
  assert.ok((await jwksFetchCount()) > fetchesBefore, 'the unknown kid triggered a refetch');

  // Emergency rotation: the old keys are withdrawn. The next unknown kid refetches, and the withdrawn
  // keys are dropped with it.
  await idp.rotateKeys({ keepOld: false });
  const fresh = await idp.getAccessToken();
  assert.equal((await get(fresh)).status, 200);
  const old = await get(afterRollover);
  assert.equal(old.status, 401);
  assert.equal(old.body.code, 'ERR_TOKEN_KEY_UNKNOWN');
  assert.ok(accessLogs(proxy).some((l) => l.reason === 'ERR_TOKEN_KEY_UNKNOWN'));
});

async function jwksFetchCount(): Promise<number> {
  const text = await (await fetch(proxy.adminUrl + '/metrics')).text();
  let total = 0;
  for (const m of text.matchAll(/^portcullis_jwks_fetches_total\{issuer="corp",outcome="ok"[^}]*\} (\d+)/gm)) total += Number(m[1]);
  return total;
}

test('an IdP that is down at start: 503 with Retry-After, not ready; nothing forwarded', async () => {
  const dead = await startProxy(`
issuers:
  gone:
    issuer: http://127.0.0.1:9/realm
    discovery: true
    jwks: { timeout: 2s, retry_after: 7s }
upstreams:
  up: { targets: ["${upstream.origin}"] }
routes:
  - { id: api, match: { path_prefix: / }, upstream: up }
`);
  try {
    const token = await idp.getAccessToken();
    // The token names another issuer; forge one naming the dead issuer with the live IdP's key shape.
    const [h, p, s] = token.split('.') as [string, string, string];
    const payload = JSON.parse(Buffer.from(p, 'base64url').toString()) as Record<string, unknown>;
    payload.iss = 'http://127.0.0.1:9/realm';
    const forged = `${h}.${Buffer.from(JSON.stringify(payload)).toString('base64url')}.${s}`;
    const res = await fetch(dead.url + '/x', { headers: { authorization: `Bearer ${forged}` } });
    assert.equal(res.status, 503);
    assert.equal(res.headers.get('retry-after'), '7');
    assert.equal(((await res.json()) as Record<string, unknown>).code, 'ERR_KEYS_UNAVAILABLE');
    assert.equal((await fetch(dead.adminUrl + '/readyz')).status, 503);
    assert.equal(upstream.requests.length, 0);
  } finally {
    await dead.close();
  }
});
