/**
 * Authorization through the real proxy: 403 insufficient_scope vs 403 denied, rule ids in log and
 * metrics, environment binding, identity headers that cannot be spoofed, and explain (admin + CLI).
 */
import { test, before, after, beforeEach } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createTestSigner } from '../helpers/keys.ts';
import type { TestSigner } from '../helpers/keys.ts';
import { startRecordingUpstream } from '../helpers/upstream.ts';
import type { RecordingUpstream } from '../helpers/upstream.ts';
import { accessLogs, startProxy } from '../helpers/proxy.ts';
import type { RunningProxy } from '../helpers/proxy.ts';
import { runCli } from '../helpers/cli.ts';
import { KEYCLOAK } from '../fixtures/idp-claims.ts';

const ISS = 'https://sso.example.com/realms/corp';
let signer: TestSigner;
let upstream: RecordingUpstream;
let proxy: RunningProxy;

const CONFIG = (origin: string) => `
realm: logs
issuers:
  corp:
    issuer: ${ISS}
    keys: [{ jwks_file: jwks.json }]
    identity: { roles: [realm_access.roles, "resource_access.logs-api.roles"] }
    environment: { claim: env }
upstreams:
  up: { targets: ["${origin}"] }
routes:
  - id: read
    match: { path_prefix: /read/ }
    require: { roles: [log-reader], scopes: ["logs:read"] }
    upstream: up
  - id: admin
    match: { path_prefix: /admin/ }
    rules:
      - { id: no-contractors, effect: deny, require: { groups: [/contractors] } }
      - { id: sre, require: { groups: [/platform/sre] } }
    upstream: up
  - id: envs
    match: { path: "/envs/{env}/logs" }
    allow: 'request.params.env in claims.envs'
    upstream: up
    set_headers: { x-env: "{{request.params.env}}", x-who: "{{claims.preferred_username}}@{{request.params.env}}" }
  - id: prod
    match: { path_prefix: /prod/ }
    environment: production
    upstream: up
  - id: staging
    match: { path_prefix: /staging/ }
    environment: staging
    upstream: up
    claims_to_headers: { x-user: sub, x-roles: realm_access.roles }
    set_headers: { "x-team-{{claims.team}}": "member", "x-env-of-{{request.params.missing}}": "never" }
`;

const now = () => Math.floor(Date.now() / 1000);
const token = (extra: Record<string, unknown> = {}) => signer.sign({ ...KEYCLOAK, iss: ISS, aud: undefined, exp: now() + 600, iat: now(), ...extra });

before(async () => {
  signer = await createTestSigner('RS256');
  upstream = await startRecordingUpstream();
  proxy = await startProxy(CONFIG(upstream.origin), { files: { 'jwks.json': JSON.stringify(signer.jwks) } });
});
after(async () => {
  await proxy.close();
  await upstream.close();
});
beforeEach(() => upstream.reset());

async function get(path: string, jwt: string, headers: Record<string, string> = {}) {
  const res = await fetch(proxy.url + path, { headers: { authorization: `Bearer ${jwt}`, ...headers } });
  const text = await res.text();
  return { status: res.status, challenge: res.headers.get('www-authenticate'), body: text.startsWith('{') ? (JSON.parse(text) as Record<string, unknown>) : {} };
}

test('shorthand require: roles and scopes must both hold; a missing scope is 403 insufficient_scope', async () => {
  assert.equal((await get('/read/x', await token())).status, 200);
  const noScope = await get('/read/x', await token({ scope: 'openid' }));
  assert.equal(noScope.status, 403);
  assert.equal(noScope.challenge, 'Bearer realm="logs", error="insufficient_scope", error_description="insufficient scope", scope="logs:read"');
  assert.equal(noScope.body.code, 'ERR_INSUFFICIENT_SCOPE');
  const noRole = await get('/read/x', await token({ realm_access: { roles: ['other'] } }));
  assert.equal(noRole.status, 403);
  assert.equal(noRole.challenge, null, 'a non-scope denial carries no challenge');
  assert.equal(noRole.body.code, 'ERR_ACCESS_DENIED');
  assert.equal(upstream.requests.length, 1);
});

test('a client role from resource_access counts through the issuer identity mapping', async () => {
  const t = await token({ realm_access: { roles: [] }, resource_access: { 'logs-api': { roles: ['log-reader'] } } });
  assert.equal((await get('/read/x', t)).status, 200);
});

test('deny rules win; the deciding rule id reaches the access log and metrics', async () => {
  assert.equal((await get('/admin/x', await token())).status, 200);
  const contractor = await get('/admin/x', await token({ groups: ['/platform/sre', '/contractors'] }));
  assert.equal(contractor.status, 403);
  const logs = accessLogs(proxy).filter((l) => l.route === 'admin');
  assert.ok(logs.some((l) => l.status === 200 && l.rule === 'sre'));
  assert.ok(logs.some((l) => l.status === 403 && l.rule === 'no-contractors' && l.reason === 'ERR_ACCESS_DENIED'));
  const metrics = await (await fetch(proxy.adminUrl + '/metrics')).text();
  assert.match(metrics, /portcullis_policy_decisions_total\{route="admin",rule="no-contractors",decision="deny"\} 1/);
  assert.match(metrics, /portcullis_policy_decisions_total\{route="admin",rule="sre",decision="allow"\} 1/);
});

test('CEL over path parameters and claims; templated headers from params and claims', async () => {
  const t = await token({ envs: ['staging', 'dev'] });
  assert.equal((await get('/envs/staging/logs', t)).status, 200);
  assert.equal(upstream.requests[0]!.headers['x-env'], 'staging');
  assert.equal(upstream.requests[0]!.headers['x-who'], 'alice@staging');
  assert.equal((await get('/envs/production/logs', t)).status, 403);
  assert.equal(upstream.requests.length, 1);
});

test('environment binding: a staging token never reaches production and the reverse', async () => {
  const staging = await token({ env: 'staging' });
  const production = await token({ env: 'production' });
  const none = await token({ env: undefined });
  assert.equal((await get('/staging/x', staging)).status, 200);
  const cross = await get('/prod/x', staging);
  assert.equal(cross.status, 403);
  assert.equal(cross.body.code, 'ERR_ENVIRONMENT_MISMATCH');
  assert.equal((await get('/staging/x', production)).status, 403);
  assert.equal((await get('/prod/x', production)).status, 200);
  assert.equal((await get('/prod/x', none)).status, 403, 'a token naming no environment is refused');
  assert.equal(upstream.requests.length, 2);
});

test('client-sent identity headers never reach the upstream', async () => {
  const spoof = { 'x-user': 'root', 'X-Roles': 'admin', 'x-env': 'production', 'x-who': 'root@prod', 'x-request-id': 'bad id with spaces' };
  await get('/staging/x', await token({ env: 'staging' }), spoof);
  const seen = upstream.requests[0]!;
  assert.equal(seen.headers['x-user'], KEYCLOAK.sub);
  assert.equal(seen.headers['x-roles'], 'log-reader,offline_access,uma_authorization');
  assert.equal(seen.headers['x-env'], undefined, 'a header set by another route is still stripped here');
  assert.equal(seen.headers['x-who'], undefined);
  assert.notEqual(seen.headers['x-request-id'], 'bad id with spaces');
  // And a claim that would inject a header line is dropped, not forwarded.
  upstream.reset();
  await get('/staging/x', await token({ env: 'staging', sub: 'eve\r\nx-admin: 1' }));
  assert.equal(upstream.requests[0]!.headers['x-user'], undefined);
  assert.equal(upstream.requests[0]!.headers['x-admin'], undefined);
});

test('templated header names render under a fixed prefix; client headers under that prefix never pass', async () => {
  await get('/staging/x', await token({ env: 'staging', team: 'Payments' }), { 'x-team-admins': 'member', 'x-team-payments': 'forged' });
  const seen = upstream.requests[0]!.headers;
  assert.equal(seen['x-team-payments'], 'member', 'rendered from the claim, lower-cased');
  assert.equal(seen['x-team-admins'], undefined, 'a client header under the prefix is stripped');
  upstream.reset();
  await get('/staging/x', await token({ env: 'staging', team: 'has space' }));
  assert.deepEqual(Object.keys(upstream.requests[0]!.headers).filter((h) => h.startsWith('x-team-')), [], 'a name that does not render to one token is skipped');
  for (const bad of ['"{{claims.team}}": x', '"x{{claims.team}}": x', '"host": x', '"x-forwarded-{{claims.team}}": x']) {
    const file = join(proxy.dir, 'bad-header.yaml');
    writeFileSync(file, CONFIG(upstream.origin).replace('set_headers: { x-env:', `set_headers: { ${bad}, x-env:`));
    const r = await runCli(['check', '-c', file]);
    assert.equal(r.code, 2, `${bad} must be refused`);
    assert.match(r.stderr, /bad-header\.yaml:\d+:\d+: /);
  }
});

test('admin POST /explain shows route, verification, rules and decision; the token is not logged', async () => {
  const t = await token({ groups: ['/contractors'] });
  const res = await fetch(proxy.adminUrl + '/explain', { method: 'POST', body: JSON.stringify({ method: 'GET', url: 'https://logs.example.com/admin/x', token: t }) });
  assert.equal(res.status, 200);
  const e = (await res.json()) as { steps: { stage: string; ok: boolean }[]; rules: { id: string; matched: boolean }[]; decision: { allowed: boolean; status: number; rule: string } };
  assert.deepEqual(e.steps.map((s) => s.stage), ['route', 'token', 'verify', 'policy']);
  assert.deepEqual(e.rules.map((r) => [r.id, r.matched]), [['no-contractors', true], ['sre', false]]);
  assert.deepEqual([e.decision.allowed, e.decision.status, e.decision.rule], [false, 403, 'no-contractors']);
  assert.equal(upstream.requests.length, 0, 'explain forwards nothing');
  assert.ok(!proxy.logText().includes(t));
});

test('portcullis explain (CLI) prints each step and the decision; exit 0 allow, 1 deny', async () => {
  const file = join(proxy.dir, 'portcullis.yaml');
  writeFileSync(join(proxy.dir, 'explain.yaml'), CONFIG(upstream.origin));
  const allowTok = await token({ env: 'staging' });
  const ok = await runCli(['explain', '-c', join(proxy.dir, 'explain.yaml'), '--token', allowTok, '--url', 'https://x/staging/logs']);
  assert.equal(ok.code, 0, ok.stderr);
  assert.match(ok.stdout, /ok\s+route\s+route staging/);
  assert.match(ok.stdout, /ok\s+verify\s+issuer corp/);
  assert.match(ok.stdout, /ok\s+environment\s+token environment is staging/);
  assert.match(ok.stdout, /decision: ALLOW 200/);
  assert.match(ok.stdout, /x-user: f:3c1b:alice/);
  const denied = await runCli(['explain', '-c', file, '--url', 'https://x/read/x'], { env: { PORTCULLIS_TOKEN: await token({ scope: 'openid' }) } });
  assert.equal(denied.code, 1);
  assert.match(denied.stdout, /no\s+allow require\s+— needs a scope of \[logs:read\]/);
  assert.match(denied.stdout, /decision: DENY 403 ERR_INSUFFICIENT_SCOPE/);
  const expired = await runCli(['explain', '-c', file, '--url', '/read/x', '--token', await token({ exp: now() - 3600 })]);
  assert.equal(expired.code, 1);
  assert.match(expired.stdout, /FAIL verify\s+ERR_TOKEN_EXPIRED/);
});

test('a typo or type error in an expression fails check with file, line and reason', async () => {
  const bad = join(proxy.dir, 'bad.yaml');
  writeFileSync(bad, CONFIG(upstream.origin).replace("allow: 'request.params.env in claims.envs'", "allow: 'request.parms.env in claims.envs &&'"));
  const r = await runCli(['check', '-c', bad]);
  assert.equal(r.code, 2);
  assert.match(r.stderr, /bad\.yaml:\d+:\d+: invalid expression: /);
});
