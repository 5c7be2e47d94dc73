import { test } from 'node:test';
import assert from 'node:assert/strict';
import { CelCompileError, MAX_CEL_SOURCE_BYTES, compileCel } from '../../src/policy/cel.ts';
import type { CelCompileErrorCode, CelRequest, CelResult, CompiledCel } from '../../src/policy/cel.ts';

// ---- fixtures: payloads shaped like the IdPs issue them (JSON.parse, as the verifier hands them over) ----

const keycloak = JSON.parse(`{
  "iss": "https://idp.example.com/realms/corp", "sub": "7d3f0b8e", "exp": 1767225600, "iat": 1767222000,
  "aud": ["logs-api", "account"], "azp": "grafana", "email": "ada@example.com", "email_verified": true,
  "realm_access": { "roles": ["offline_access", "log-reader"] },
  "resource_access": { "logs-api": { "roles": ["admin"] } },
  "groups": ["/team/platform", "/team/sre"], "envs": ["dev", "staging"], "level": 2
}`) as Record<string, unknown>;

const auth0 = JSON.parse(`{
  "iss": "https://acme.eu.auth0.com/", "sub": "auth0|123", "exp": 1767225600,
  "https://example.com/roles": ["admin", "viewer"], "https://example.com/tenant": "acme",
  "permissions": ["read:logs"], "scope": "openid profile read:logs"
}`) as Record<string, unknown>;

const okta = JSON.parse(`{
  "iss": "https://acme.okta.com/oauth2/default", "sub": "00u1", "ver": 1, "exp": 1767225600,
  "scp": ["openid", "logs.read"], "cid": "0oa1", "uid": "00u1"
}`) as Record<string, unknown>;

const entra = JSON.parse(`{
  "iss": "https://login.microsoftonline.com/72f9/v2.0", "sub": "AAAA", "oid": "0c1d", "tid": "72f9",
  "exp": 1767225600, "roles": ["Logs.Reader", "Metrics.Reader"], "level": 2.5, "big": 1e20
}`) as Record<string, unknown>;

/** A claim literally named "__proto__" (JSON.parse makes it an own property) must not pollute anything. */
const proto = JSON.parse(`{ "__proto__": { "admin": true }, "n": 1 }`) as Record<string, unknown>;

const deep: Record<string, unknown> = {};
{
  let node: Record<string, unknown> = deep;
  for (let i = 0; i < 40; i++) node = (node.a = {}) as Record<string, unknown>;
}

function request(overrides: Partial<CelRequest> = {}): CelRequest {
  return {
    method: 'GET',
    path: '/envs/staging/logs',
    host: 'logs.example.com',
    params: { env: 'staging' },
    headers: { 'x-scope-orgid': 'acme', accept: 'application/json' },
    query: { limit: '100', q: 'abc' },
    ...overrides,
  };
}
const get = request();
const post = request({ method: 'POST' });
const prod = request({ params: { env: 'prod' }, path: '/envs/prod/logs' });
const otherTenant = request({ headers: { 'x-scope-orgid': 'globex' } });

// ---- evaluation table ----

type Expected = boolean | RegExp; // RegExp: {ok: false} with a matching error (the caller denies)
const cases: Array<[source: string, claims: Record<string, unknown>, req: CelRequest, expected: Expected]> = [
  // Keycloak
  [`'log-reader' in claims.realm_access.roles`, keycloak, get, true],
  [`'log-writer' in claims.realm_access.roles`, keycloak, get, false],
  [`'log-reader' in claims.realm_access.roles`, auth0, get, /no such key: realm_access/i],
  [`'admin' in claims.resource_access['logs-api'].roles`, keycloak, get, true],
  [`request.params.env in claims.envs`, keycloak, get, true],
  [`request.params.env in claims.envs`, keycloak, prod, false],
  [`request.method == 'GET' ? 'log-reader' in claims.realm_access.roles : 'admin' in claims.realm_access.roles`, keycloak, post, false],
  [`request.method == 'GET' ? 'log-reader' in claims.realm_access.roles : 'admin' in claims.realm_access.roles`, keycloak, get, true],
  // Auth0 namespaced claims: index syntax
  [`claims["https://example.com/roles"].exists(r, r == 'admin')`, auth0, get, true],
  [`'viewer' in claims['https://example.com/roles'] && claims['https://example.com/tenant'] == request.headers['x-scope-orgid']`, auth0, get, true],
  [`'viewer' in claims['https://example.com/roles'] && claims['https://example.com/tenant'] == request.headers['x-scope-orgid']`, auth0, otherTenant, false],
  [`'read:logs' in claims.permissions && 'read:logs' in claims.scope.split(' ')`, auth0, get, true],
  // Okta scp, Entra roles
  [`'logs.read' in claims.scp`, okta, get, true],
  [`claims.scp.exists(s, s.startsWith('logs.'))`, okta, get, true],
  [`claims.scp.all(s, s.size() > 0) && claims.ver == 1`, okta, get, true],
  [`'Logs.Reader' in claims.roles`, entra, get, true],
  [`claims.roles.all(r, r.endsWith('.Reader'))`, entra, get, true],
  [`claims.roles.exists(r, r == 'Logs.Writer')`, entra, get, false],
  // numbers: safe integers are int, others double; comparisons cross int/double
  [`claims.exp > 0`, keycloak, get, true],
  [`claims.exp + 60 > claims.exp && claims.exp - claims.iat == 3600`, keycloak, get, true],
  [`claims.level >= 2`, keycloak, get, true],
  [`claims.level >= 2`, entra, get, true],
  [`claims.level >= 3`, entra, get, false],
  [`claims.level == 2 && claims.level == 2.0`, keycloak, get, true],
  [`type(claims.exp) == int && type(claims.level) == double`, entra, get, true],
  [`claims.level * 2.0 > 4.0`, entra, get, true],
  [`claims.level * 2 > 4`, entra, get, /no such overload/], // int x double has no overload in CEL
  [`claims.big > 9007199254740991`, entra, get, true], // beyond 2^53: stays double
  [`dyn(claims.exp) == 1767225600`, keycloak, get, true],
  // missing claims deny, and && / || absorb errors as the CEL spec says
  [`claims.missing == 'x'`, keycloak, get, /no such key: missing/i],
  [`claims.missing == 'x' || true`, keycloak, get, true],
  [`true || claims.missing == 'x'`, keycloak, get, true],
  [`claims.missing == 'x' && false`, keycloak, get, false],
  [`claims.missing == 'x' || false`, keycloak, get, /no such key/i],
  [`claims.missing ? true : true`, keycloak, get, /no such key/i],
  [`has(claims.missing)`, keycloak, get, false],
  [`has(claims.email) && claims.email.endsWith('@example.com')`, keycloak, get, true],
  [`!has(claims.realm_access) || 'x' in claims.realm_access.roles`, auth0, get, true],
  [`claims.realm_access.roles[10] == 'x'`, keycloak, get, /index out of bounds/],
  // macros
  [`claims.groups.exists_one(g, g.startsWith('/team/'))`, keycloak, get, false],
  [`claims.groups.exists_one(g, g == '/team/sre')`, keycloak, get, true],
  [`claims.groups.filter(g, g.startsWith('/team/')).size() == 2`, keycloak, get, true],
  [`claims.groups.map(g, g.substring(6)) == ['platform', 'sre']`, keycloak, get, true],
  [`size(claims.groups) == 2 && claims.groups.size() == 2`, keycloak, get, true],
  [`['admin', 'viewer'].exists(r, r in claims['https://example.com/roles'])`, auth0, get, true],
  [`cel.bind(roles, claims.realm_access.roles, 'log-reader' in roles && !('admin' in roles))`, keycloak, get, true],
  // strings and regex
  [`request.path.matches('^/envs/[a-z]+/logs$')`, keycloak, get, true],
  [`request.path.matches('^/envs/(dev|staging)/')`, keycloak, prod, false],
  [`matches(request.path, 'logs$')`, keycloak, get, true],
  [`request.path.matches('(?i:/ENVS/)')`, keycloak, get, true],
  [`claims.email.contains('@') && claims.email.size() > 3 && request.host.endsWith('.example.com')`, keycloak, get, true],
  // request maps
  [`'x-scope-orgid' in request.headers`, keycloak, get, true],
  [`request.headers['x-missing'] == 'a'`, keycloak, get, /no such key: x-missing/i],
  [`request.query.limit == '100' && int(request.query.limit) <= 1000`, keycloak, get, true],
  [`int(request.query.q) > 0`, keycloak, get, /.+/],
  [`request.method in ['GET', 'HEAD']`, keycloak, post, false],
  // non-bool results
  [`claims.sub`, keycloak, get, /^expression returned string, not bool$/],
  [`claims.realm_access`, keycloak, get, /^expression returned map, not bool$/],
  [`claims.exp`, keycloak, get, /^expression returned int, not bool$/],
  [`claims.email_verified`, keycloak, get, true],
  // no prototype: inherited names never resolve; a "__proto__" claim is just a claim
  [`claims.constructor == 'x'`, keycloak, get, /no such key: constructor/i],
  [`has(claims.toString)`, keycloak, get, false],
  [`claims['__proto__'].admin && !has(claims.admin) && claims.n == 1`, proto, get, true],
  // bounded input
  [`has(claims.a)`, deep, get, /nest deeper than 32/],
];

const compiledBySource = new Map<string, CompiledCel>();
function compiled(source: string): CompiledCel {
  let rule = compiledBySource.get(source);
  if (rule === undefined) compiledBySource.set(source, (rule = compileCel(source)));
  return rule;
}

test('the evaluation table has at least 40 cases', () => {
  assert.ok(cases.length >= 40, `${cases.length} cases`);
});

for (const [source, claims, req, expected] of cases) {
  const who = claims === keycloak ? 'keycloak' : claims === auth0 ? 'auth0' : claims === okta ? 'okta' : claims === entra ? 'entra' : 'other';
  test(`evaluate ${source} [${who} ${req.method} ${req.path}]`, () => {
    const result = compiled(source).evaluate({ claims, request: req });
    if (typeof expected === 'boolean') {
      assert.deepEqual(result, { ok: true, value: expected });
    } else {
      assert.equal(result.ok, false, `expected an error, got ${JSON.stringify(result)}`);
      assert.match((result as Extract<CelResult, { ok: false }>).error, expected);
    }
  });
}

test('a compiled rule is frozen, keeps its source and is reusable across activations', () => {
  const rule = compileCel(`request.params.env in claims.envs`);
  assert.equal(rule.source, `request.params.env in claims.envs`);
  assert.ok(Object.isFrozen(rule));
  assert.deepEqual(rule.evaluate({ claims: keycloak, request: get }), { ok: true, value: true });
  assert.deepEqual(rule.evaluate({ claims: keycloak, request: prod }), { ok: true, value: false });
  assert.deepEqual(rule.evaluate({ claims: keycloak, request: get }), { ok: true, value: true });
});

test('evaluation does not mutate the claims it is given', () => {
  const claims = JSON.parse(`{"exp": 5, "nested": {"n": [1, 2.5]}, "s": "x"}`) as Record<string, unknown>;
  const before = JSON.stringify(claims);
  assert.deepEqual(compileCel(`claims.exp == 5 && claims.nested.n[0] == 1`).evaluate({ claims, request: get }), { ok: true, value: true });
  assert.equal(JSON.stringify(claims), before);
  assert.equal(typeof claims.exp, 'number');
});

test('evaluation never throws, whatever the activation holds', () => {
  const rule = compileCel(`claims.x == 1 && request.method == 'GET' && request.params.env == 'staging'`);
  assert.deepEqual(rule.evaluate({ claims: { x: 1 }, request: get }), { ok: true, value: true });
  const bad: Array<[string, unknown, unknown]> = [
    ['null claims', null, get],
    ['array claims', [], get],
    ['a function in claims', { x: () => 1 }, get],
    ['a symbol in claims', { x: Symbol('s') }, get],
    ['empty request', { x: 1 }, {}],
    ['null request maps', { x: 1 }, { ...get, params: null }],
  ];
  for (const [name, claims, req] of bad) {
    const result = rule.evaluate({ claims: claims as Record<string, unknown>, request: req as CelRequest });
    assert.equal(result.ok, false, name);
  }
});

// ---- compile errors ----

const longSource = `claims.sub == '${'x'.repeat(MAX_CEL_SOURCE_BYTES)}'`;
const literal101 = `[${Array.from({ length: 101 }, (_, i) => i).join(', ')}]`;
const compileErrors: Array<[source: string, code: CelCompileErrorCode, message: RegExp, position?: { line: number; column: number }]> = [
  // syntax
  [`claims.sub ==`, 'ERR_CEL_SYNTAX', /^syntax error: unexpected token: EOF/i, { line: 1, column: 14 }],
  [`claims.sub == 'a' &&\n  request.method ==`, 'ERR_CEL_SYNTAX', /^syntax error/, { line: 2, column: 20 }],
  [`claims.a b`, 'ERR_CEL_SYNTAX', /^syntax error: unexpected character: 'b'/i, { line: 1, column: 10 }],
  [`(claims.x == 1`, 'ERR_CEL_SYNTAX', /^syntax error/],
  [`'unterminated`, 'ERR_CEL_SYNTAX', /^syntax error/],
  [``, 'ERR_CEL_SYNTAX', /^syntax error/],
  // unknown variables and functions
  [`user.roles.exists(r, r == 'admin')`, 'ERR_CEL_UNKNOWN_VARIABLE', /^unknown variable "user": only claims and request are defined/, { line: 1, column: 1 }],
  [`claims.sub == 'a' || token.sub == 'a'`, 'ERR_CEL_UNKNOWN_VARIABLE', /unknown variable "token"/, { line: 1, column: 22 }],
  [`foo(claims)`, 'ERR_CEL_UNKNOWN_FUNCTION', /^unknown function "foo"/],
  [`request.path.lower() == '/x'`, 'ERR_CEL_UNKNOWN_FUNCTION', /^unknown function "lower"/],
  // static type errors
  [`request.method == 1`, 'ERR_CEL_TYPE', /^type error: no such overload: string == int/],
  [`request.method + 1 == 'x'`, 'ERR_CEL_TYPE', /^type error: no such overload: string \+ int/],
  [`size(request.method) + 'a' == 'b'`, 'ERR_CEL_TYPE', /^type error: no such overload: int \+ string/],
  [`request.path.startsWith(1)`, 'ERR_CEL_TYPE', /^type error: found no matching overload for 'string\.startsWith\(int\)'/],
  [`request.method == 'GET' &&\n  request.verb == 'x'`, 'ERR_CEL_TYPE', /^type error: no field "verb"/, { line: 2, column: 11 }],
  [`request.params.env == 1`, 'ERR_CEL_TYPE', /string == int/],
  [`1 == 1.0`, 'ERR_CEL_TYPE', /int == double/],
  // statically non-bool
  [`request.method`, 'ERR_CEL_NOT_BOOL', /^expression returns string, not bool$/],
  [`size(claims.groups)`, 'ERR_CEL_NOT_BOOL', /^expression returns int, not bool$/],
  // bounds
  [longSource, 'ERR_CEL_TOO_LONG', /^expression is 4112 bytes, over the 4096-byte limit$/],
  [`claims.a.exists(x, claims.b.exists(y, x == y))`, 'ERR_CEL_COST', /nested inside another such comprehension/, { line: 1, column: 20 }],
  [`request.headers.all(k, request.query.exists(q, q == k))`, 'ERR_CEL_COST', /square of attacker-influenced sizes/],
  [`${literal101}.all(x, ${literal101}.all(y, x + y >= 0))`, 'ERR_CEL_COST', /iterate up to 10201 times/],
  [`${'('.repeat(40)}true${')'.repeat(40)}`, 'ERR_CEL_COST', /^too complex: exceeded maxDepth/i],
  // regular expressions: literal, valid, same meaning in RE2 and JavaScript, no obvious catastrophic backtracking
  [`request.path.matches(claims.pattern)`, 'ERR_CEL_REGEX', /needs a string literal pattern/, { line: 1, column: 22 }],
  [`matches(request.path, claims.pattern)`, 'ERR_CEL_REGEX', /needs a string literal pattern/],
  [`request.path.matches('(')`, 'ERR_CEL_REGEX', /\/\(\/: invalid/],
  [`request.path.matches('(a+)+$')`, 'ERR_CEL_REGEX', /nested unbounded quantifiers/],
  [`request.headers['user-agent'].matches('^(\\\\w+\\\\s?)*$')`, 'ERR_CEL_REGEX', /nested unbounded quantifiers/],
  [`request.path.matches('(?i)/envs/')`, 'ERR_CEL_REGEX', /write \(\?i:\.\.\.\)/],
  [`request.path.matches('^/envs\\\\z')`, 'ERR_CEL_REGEX', /escape \\z means different things/],
  [`request.path.matches('(?=x)')`, 'ERR_CEL_REGEX', /lookaround/],
  [`request.path.matches('(a)\\\\1')`, 'ERR_CEL_REGEX', /backreferences/],
  [`request.path.matches('[[:alpha:]]')`, 'ERR_CEL_REGEX', /POSIX classes/],
];

for (const [source, code, message, position] of compileErrors) {
  test(`compile error ${code}: ${source.length > 60 ? source.slice(0, 57) + '...' : source}`, () => {
    assert.throws(
      () => compileCel(source),
      (error: unknown) => {
        assert.ok(error instanceof CelCompileError, `not a CelCompileError: ${String(error)}`);
        assert.ok(error instanceof Error);
        assert.equal(error.name, 'CelCompileError');
        assert.equal(error.code, code, error.message);
        assert.match(error.message, message);
        assert.doesNotMatch(error.message, /\n/, 'one line, no source excerpt');
        if (position) assert.deepEqual(error.position, position);
        return true;
      },
    );
  });
}

test('the size limit counts UTF-8 bytes and admits exactly 4096', () => {
  const fits = `claims.sub == '${'x'.repeat(MAX_CEL_SOURCE_BYTES - 16)}'`;
  assert.equal(Buffer.byteLength(fits), MAX_CEL_SOURCE_BYTES);
  assert.doesNotThrow(() => compileCel(fits));
  const multibyte = `claims.sub == '${'é'.repeat((MAX_CEL_SOURCE_BYTES - 16) / 2 + 1)}'`; // fewer chars than bytes
  assert.ok(multibyte.length <= MAX_CEL_SOURCE_BYTES);
  assert.throws(() => compileCel(multibyte), { code: 'ERR_CEL_TOO_LONG' });
});

test('safe comprehension shapes and long || chains compile', () => {
  for (const source of [
    `claims.groups.map(g, g.lowerAscii()).exists(g, g == '/team/sre')`, // chained, not nested
    `['admin', 'viewer'].exists(r, claims.roles.exists(x, x == r))`, // literal outside data: linear
    `claims.roles.exists(x, ['a', 'b'].exists(r, x == r))`, // literal inside data: linear
    Array.from({ length: 150 }, (_, i) => `claims.sub == 'user-${i}'`).join(' || '),
    `request.path.matches('^/api/v[0-9]+/(query|query_range)$') && request.host.matches('^[a-z0-9.-]+$')`,
  ]) {
    assert.doesNotThrow(() => compileCel(source), source.slice(0, 80));
  }
});
