/**
 * End to end through the real proxy: every bad token is refused with its precise code, the upstream
 * receives nothing, and the reason reaches the access log and metrics but the token never does.
 */
import { test, before, after, beforeEach } from 'node:test';
import assert from 'node:assert/strict';
import { createTestSigner, forgeToken } from '../helpers/keys.ts';
import type { TestSigner } from '../helpers/keys.ts';
import { startRecordingUpstream } from '../helpers/upstream.ts';
import { accessLogs, startProxy } from '../helpers/proxy.ts';
import type { RunningProxy } from '../helpers/proxy.ts';

const ISS_A = 'https://a.idp.test';
const ISS_B = 'https://b.idp.test';
const HMAC_SECRET = 'h'.repeat(48);

let upstream: Awaited<ReturnType<typeof startRecordingUpstream>>;
let proxy: RunningProxy;
let rsa: TestSigner;
let ec: TestSigner;
let ed: TestSigner;
let hs: TestSigner;

const now = () => Math.floor(Date.now() / 1000);
const good = (extra: Record<string, unknown> = {}) => ({ iss: ISS_A, aud: 'api', sub: 'alice', exp: now() + 300, iat: now(), ...extra });

before(async () => {
  rsa = await createTestSigner('RS256');
  ec = await createTestSigner('ES256');
  ed = await createTestSigner('EdDSA');
  hs = await createTestSigner('HS256', { secret: new TextEncoder().encode(HMAC_SECRET) });
  upstream = await startRecordingUpstream();
  proxy = await startProxy(
    `
realm: portcullis-test
issuers:
  a:
    issuer: ${ISS_A}
    keys: [{ jwks_file: a.jwks.json }, { jwks_file: a2.jwks.json }]
    audiences: [api, other-api]
    algorithms: [RS256, EdDSA]
    clock_skew: 10s
    required_claims: [exp, sub]
  b:
    issuer: ${ISS_B}
    keys: [{ jwks_file: b.jwks.json }]
    algorithms: [ES256]
  h:
    issuer: https://hmac.test
    keys: [{ hmac_secret_env: TEST_HS_SECRET }]
    algorithms: [HS256]
upstreams:
  up: { targets: ["${upstream.origin}"] }
routes:
  - id: public
    match: { path_prefix: /public/ }
    auth: { mode: off }
    upstream: up
  - id: optional
    match: { path_prefix: /optional/ }
    auth: { mode: optional }
    upstream: up
  - id: only-b
    match: { path_prefix: /b/ }
    auth: { issuers: [b] }
    upstream: up
  - id: cookie
    match: { path_prefix: /cookie/ }
    auth: { from: [{ cookie: jwt }] }
    upstream: up
  - id: query
    match: { path_prefix: /query/ }
    auth: { from: [{ query: access_token }] }
    upstream: up
  - id: custom-header
    match: { path_prefix: /custom/ }
    auth: { from: [{ header: X-Api-Token, prefix: "Token " }] }
    upstream: up
  - id: api
    match: { path_prefix: / }
    upstream: up
    claims_to_headers:
      x-user-id: sub
      x-roles: realm_access.roles
      x-tenant: "[https://example.com/tenant]"
`,
    {
      env: { TEST_HS_SECRET: HMAC_SECRET },
      files: { 'a.jwks.json': JSON.stringify(rsa.jwks), 'a2.jwks.json': JSON.stringify(ed.jwks), 'b.jwks.json': JSON.stringify(ec.jwks) },
    },
  );
});

after(async () => {
  await proxy.close();
  await upstream.close();
});

beforeEach(() => upstream.reset());

async function call(path: string, headers: Record<string, string> = {}) {
  const res = await fetch(proxy.url + path, { headers });
  const text = await res.text();
  return { status: res.status, headers: res.headers, text, body: text.startsWith('{') ? (JSON.parse(text) as Record<string, unknown>) : undefined };
}

const bearer = (token: string) => ({ authorization: `Bearer ${token}` });

test('a valid token is forwarded with claim headers, without the credential, with X-Forwarded-*', async () => {
  const token = await rsa.sign(good({ realm_access: { roles: ['reader', 'admin'] }, 'https://example.com/tenant': 'acme' }));
  const r = await call('/things?x=1', { ...bearer(token), 'x-user-id': 'mallory', 'x-roles': 'root' });
  assert.equal(r.status, 200, r.text);
  assert.equal(upstream.requests.length, 1);
  const seen = upstream.requests[0]!;
  assert.equal(seen.url, '/things?x=1');
  assert.equal(seen.headers['x-user-id'], 'alice', 'client copy replaced by the claim');
  assert.equal(seen.headers['x-roles'], 'reader,admin');
  assert.equal(seen.headers['x-tenant'], 'acme');
  assert.equal(seen.headers.authorization, undefined, 'credential stripped');
  assert.equal(seen.headers['x-forwarded-for'], '127.0.0.1');
  assert.equal(seen.headers['x-forwarded-proto'], 'http');
  assert.ok(seen.headers['x-request-id']);
  assert.equal(r.headers.get('x-request-id'), seen.headers['x-request-id']);
});

test('RS256, EdDSA, ES256 and HS256 tokens verify against their own issuer', async () => {
  assert.equal((await call('/x', bearer(await ed.sign(good())))).status, 200);
  assert.equal((await call('/b/x', bearer(await ec.sign({ iss: ISS_B, exp: now() + 60 })))).status, 200);
  assert.equal((await call('/x', bearer(await hs.sign({ iss: 'https://hmac.test', exp: now() + 60 })))).status, 200);
  assert.equal(upstream.requests.length, 3);
});

test('no token: 401 challenge without error=, and nothing forwarded', async () => {
  const r = await call('/x');
  assert.equal(r.status, 401);
  assert.equal(r.headers.get('www-authenticate'), 'Bearer realm="portcullis-test"');
  assert.equal(r.body?.code, 'ERR_TOKEN_MISSING');
  assert.ok(typeof r.body?.request_id === 'string');
  assert.equal(upstream.requests.length, 0);
});

interface BadCase {
  readonly name: string;
  readonly token: () => Promise<string> | string;
  readonly code: string;
  readonly path?: string;
}

const BAD: BadCase[] = [
  { name: 'alg none', token: () => forgeToken({ alg: 'none', typ: 'JWT' }, good(), ''), code: 'ERR_TOKEN_ALG_NOT_ALLOWED' },
  { name: 'alg None', token: () => forgeToken({ alg: 'None' }, good(), ''), code: 'ERR_TOKEN_ALG_NOT_ALLOWED' },
  { name: 'alg NONE with a signature', token: () => forgeToken({ alg: 'NONE' }, good(), 'c2ln'), code: 'ERR_TOKEN_ALG_NOT_ALLOWED' },
  { name: 'alg nOnE', token: () => forgeToken({ alg: 'nOnE' }, good()), code: 'ERR_TOKEN_ALG_NOT_ALLOWED' },
  { name: 'alg outside the allow-list (ES256 for issuer a)', token: () => ec.sign(good()), code: 'ERR_TOKEN_ALG_NOT_ALLOWED' },
  {
    name: 'key confusion: HS256 signed with the RSA public key',
    token: () => forgeToken({ alg: 'HS256', kid: rsa.kid }, good(), { hmacKey: Buffer.from(rsa.publicPem) }),
    code: 'ERR_TOKEN_ALG_NOT_ALLOWED',
  },
  { name: 'bad signature', token: async () => { const t = await rsa.sign(good()); return t.slice(0, -6) + (t.endsWith('AAAAAA') ? 'BBBBBB' : 'AAAAAA'); }, code: 'ERR_TOKEN_SIGNATURE_INVALID' },
  { name: 'signed by issuer b key but claims issuer a', token: () => ec.sign(good(), { alg: 'ES256' }), code: 'ERR_TOKEN_ALG_NOT_ALLOWED' },
  { name: 'two segments', token: async () => (await rsa.sign(good())).split('.').slice(0, 2).join('.'), code: 'ERR_TOKEN_MALFORMED' },
  { name: 'four segments', token: async () => (await rsa.sign(good())) + '.abc', code: 'ERR_TOKEN_MALFORMED' },
  { name: 'five segments (JWE shape)', token: () => 'eyJhbGciOiJSU0EtT0FFUCJ9.a.b.c.d', code: 'ERR_TOKEN_MALFORMED' },
  { name: 'garbage', token: () => 'not-a-jwt', code: 'ERR_TOKEN_MALFORMED' },
  { name: 'header not JSON', token: () => 'bm90IGpzb24.eyJhIjoxfQ.c2ln', code: 'ERR_TOKEN_MALFORMED' },
  { name: 'expired beyond leeway', token: () => rsa.sign(good({ exp: now() - 60 })), code: 'ERR_TOKEN_EXPIRED' },
  { name: 'not yet valid beyond leeway', token: () => rsa.sign(good({ nbf: now() + 120 })), code: 'ERR_TOKEN_NOT_YET_VALID' },
  { name: 'unknown issuer', token: () => rsa.sign(good({ iss: 'https://evil.test' })), code: 'ERR_TOKEN_ISSUER_UNKNOWN' },
  { name: 'no iss', token: () => rsa.sign(good({ iss: undefined })), code: 'ERR_TOKEN_ISSUER_UNKNOWN' },
  { name: 'issuer not allowed on the route', token: () => rsa.sign(good()), code: 'ERR_TOKEN_ISSUER_UNKNOWN', path: '/b/x' },
  { name: 'wrong audience', token: () => rsa.sign(good({ aud: 'someone-else' })), code: 'ERR_TOKEN_AUDIENCE_MISMATCH' },
  { name: 'missing required claim sub', token: () => rsa.sign(good({ sub: undefined })), code: 'ERR_TOKEN_CLAIM_MISSING' },
  { name: 'missing exp', token: () => rsa.sign(good({ exp: undefined })), code: 'ERR_TOKEN_CLAIM_MISSING' },
  { name: 'unknown crit header', token: () => rsa.sign(good(), { crit: ['x-unknown'], 'x-unknown': 1 }), code: 'ERR_TOKEN_CRIT_UNSUPPORTED' },
  { name: 'unknown kid', token: () => rsa.sign(good(), { kid: 'no-such-kid' }), code: 'ERR_TOKEN_KEY_UNKNOWN' },
  {
    name: 'attacker key embedded as jwk header is ignored',
    token: async () => {
      const attacker = await createTestSigner('RS256');
      return attacker.sign(good(), { jwk: attacker.publicJwk, kid: rsa.kid });
    },
    code: 'ERR_TOKEN_SIGNATURE_INVALID',
  },
  {
    name: 'jku pointing elsewhere is ignored',
    token: async () => {
      const attacker = await createTestSigner('RS256');
      return attacker.sign(good(), { jku: 'http://127.0.0.1:1/jwks', kid: attacker.kid });
    },
    code: 'ERR_TOKEN_KEY_UNKNOWN',
  },
  { name: 'over the size limit', token: () => rsa.sign(good({ pad: 'x'.repeat(9000) })), code: 'ERR_TOKEN_TOO_LARGE' },
];

test('every bad token is refused with 401 invalid_token, its precise code, and the upstream sees nothing', async () => {
  for (const c of BAD) {
    const token = await c.token();
    const r = await call(c.path ?? '/x', bearer(token));
    assert.equal(r.status, 401, `${c.name}: ${r.text}`);
    assert.equal(r.body?.code, c.code, c.name);
    assert.equal(r.body?.error, 'invalid_token', c.name);
    const challenge = r.headers.get('www-authenticate') ?? '';
    assert.match(challenge, /^Bearer realm="portcullis-test", error="invalid_token", error_description="[^"\\]*(\\.[^"\\]*)*"$/, c.name);
    assert.equal(upstream.requests.length, 0, `${c.name}: upstream must see nothing`);
  }
});

test('the reason code reaches the access log and metrics; the token never appears in logs', async () => {
  const expired = await rsa.sign(good({ exp: now() - 600 }));
  const wrongAud = await rsa.sign(good({ aud: 'nope' }));
  await call('/x', bearer(expired));
  await call('/x', bearer(wrongAud));
  const reasons = accessLogs(proxy).map((l) => l.reason);
  assert.ok(reasons.includes('ERR_TOKEN_EXPIRED'));
  assert.ok(reasons.includes('ERR_TOKEN_AUDIENCE_MISMATCH'));
  const metrics = await (await fetch(proxy.adminUrl + '/metrics')).text();
  assert.match(metrics, /portcullis_auth_failures_total\{reason="ERR_TOKEN_EXPIRED"\} [1-9]/);
  assert.match(metrics, /portcullis_auth_failures_total\{reason="ERR_TOKEN_AUDIENCE_MISMATCH"\} [1-9]/);
  const logs = proxy.logText();
  for (const t of [expired, wrongAud]) {
    assert.ok(!logs.includes(t), 'a token was logged');
    assert.ok(!logs.includes(t.split('.')[2]!), 'a signature was logged');
  }
  assert.ok(!/Bearer ey/.test(logs));
  assert.ok(!metrics.includes('alice'), 'no subject in metrics');
});

test('two tokens in one request: 400 invalid_request, nothing forwarded', async () => {
  const t = await rsa.sign(good());
  const viaQuery = await fetch(`${proxy.url}/query/x?access_token=${t}&access_token=${t}`);
  assert.equal(viaQuery.status, 400);
  const body = (await viaQuery.json()) as Record<string, unknown>;
  assert.equal(body.code, 'ERR_TOKEN_AMBIGUOUS');
  assert.equal(body.error, 'invalid_request');
  assert.match(viaQuery.headers.get('www-authenticate') ?? '', /error="invalid_request"/);
  // Two Authorization headers: Node keeps one in req.headers; the proxy counts raw headers.
  const { request } = await import('node:http');
  const status = await new Promise<number>((resolve, reject) => {
    const req = request(proxy.url + '/x', { headers: [['authorization', `Bearer ${t}`], ['authorization', `Bearer ${t}`]] as unknown as Record<string, string> }, (res) => {
      res.resume();
      resolve(res.statusCode ?? 0);
    });
    req.on('error', reject);
    req.end();
  });
  assert.equal(status, 400);
  assert.equal(upstream.requests.length, 0);
});

test('token locations per route: cookie, query, custom header (configured in mixed case); credentials stripped', async () => {
  const t = await rsa.sign(good());
  const viaCookie = await call('/cookie/x', { cookie: `theme=dark; jwt=${t}` });
  assert.equal(viaCookie.status, 200, viaCookie.text);
  assert.equal(upstream.requests[0]!.headers.cookie, 'theme=dark', 'the token cookie is removed, others kept');
  const viaQuery = await call(`/query/x?a=1&access_token=${t}`);
  assert.equal(viaQuery.status, 200);
  assert.equal(upstream.requests[1]!.url, '/query/x?a=1', 'the token query parameter is removed');
  const viaHeader = await call('/custom/x', { 'x-api-token': `Token ${t}` });
  assert.equal(viaHeader.status, 200);
  assert.equal(upstream.requests[2]!.headers['x-api-token'], undefined);
  // A bearer header on a cookie-only route is not a token there.
  assert.equal((await call('/cookie/x', bearer(t))).status, 401);
});

test('auth off and optional routes', async () => {
  assert.equal((await call('/public/x')).status, 200);
  assert.equal((await call('/optional/x')).status, 200, 'anonymous allowed on optional');
  const bad = await call('/optional/x', bearer(await rsa.sign(good({ exp: now() - 600 }))));
  assert.equal(bad.status, 401, 'a present but invalid token is still refused');
  const ok = await call('/optional/x', bearer(await rsa.sign(good())));
  assert.equal(ok.status, 200);
  assert.equal(upstream.requests.length, 3);
});

test('a path that tries to escape its route is normalised or refused', async () => {
  const r = await call('/public/../secret');
  // fetch normalises dot segments itself; send raw to be sure.
  const { request } = await import('node:http');
  const raw = (path: string) =>
    new Promise<number>((resolve, reject) => {
      const req = request(proxy.url, { path }, (res) => {
        res.resume();
        resolve(res.statusCode ?? 0);
      });
      req.on('error', reject);
      req.end();
    });
  assert.equal(r.status, 401);
  assert.equal(await raw('/public/../secret'), 401, 'dot segments resolved before matching: /secret needs a token');
  assert.equal(await raw('/public/%2e%2e/secret'), 401);
  assert.equal(await raw('/public%2f..%2fsecret'), 400);
  assert.equal(upstream.requests.length, 0);
});
