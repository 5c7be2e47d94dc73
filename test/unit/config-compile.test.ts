import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { compileConfig } from '../../src/config/compile.ts';
import { ConfigError, formatProblem, loadConfigText } from '../../src/config/load.ts';

async function compileText(text: string, env: NodeJS.ProcessEnv = {}) {
  return compileConfig(loadConfigText(text, '/cfg/p.yaml', env), env);
}

async function problemsOf(text: string, env: NodeJS.ProcessEnv = {}): Promise<string[]> {
  try {
    await compileText(text, env);
  } catch (error) {
    assert.ok(error instanceof ConfigError, `expected ConfigError, got ${String(error)}`);
    return error.problems.map(formatProblem);
  }
  assert.fail('config compiled but should not have');
}

const VALID = `
issuers:
  corp:
    issuer: https://idp.example.com/realms/corp
    jwks_uri: https://idp.example.com/jwks
    audiences: [api]
upstreams:
  api: { targets: ["http://127.0.0.1:3000"] }
routes:
  - id: api
    match: { path_prefix: /api/ }
    upstream: api
    claims_to_headers: { X-User: sub, x-roles: "realm_access.roles", x-ns: "[https://example.com/roles]" }
`;

test('a token header name is compiled lower-case, as the extractor compares it', async () => {
  const c = await compileText(VALID.replace('    upstream: api\n', '    upstream: api\n    auth: { from: [{ header: X-Api-Token, prefix: "" }] }\n'));
  assert.deepEqual(c.routes[0]!.auth.from, [{ kind: 'header', name: 'x-api-token', prefix: '' }]);
});

test('a valid config compiles with documented defaults, frozen', async () => {
  const c = await compileText(VALID);
  assert.deepEqual(c.listen, { host: '127.0.0.1', port: 8080 });
  assert.deepEqual(c.admin, { host: '127.0.0.1', port: 9090 });
  const issuer = c.issuers[0]!;
  assert.equal(issuer.clockSkewSeconds, 30);
  assert.deepEqual(issuer.requiredClaims, ['exp']);
  assert.ok(!issuer.algorithms.some((a) => a.startsWith('HS')), 'HMAC is never a default without a secret');
  assert.ok(!issuer.algorithms.map((a) => a.toLowerCase()).includes('none'));
  assert.equal(issuer.jwks.cooldownMs, 30_000);
  assert.equal(issuer.jwks.maxTtlMs, 86_400_000);
  const route = c.routes[0]!;
  assert.equal(route.auth.mode, 'required');
  assert.deepEqual(route.auth.from, [{ kind: 'header', name: 'authorization', prefix: 'Bearer ' }]);
  assert.equal(route.stripAuthorization, true);
  assert.deepEqual(route.claimHeaders, [
    { header: 'x-user', claim: ['sub'] },
    { header: 'x-roles', claim: ['realm_access', 'roles'] },
    { header: 'x-ns', claim: ['https://example.com/roles'] },
  ]);
  assert.equal(route.timeoutMs, 30_000);
  assert.ok(Object.isFrozen(c) && Object.isFrozen(c.routes[0]) && Object.isFrozen(c.issuers[0]!.algorithms));
});

test('every problem is reported at once with file:line:col', async () => {
  const text = [
    'listen: 127.0.0.1:8080', //          1
    'colour: blue', //                    2 unknown top-level key
    'issuers:', //                         3
    '  corp:', //                          4
    '    issuer: https://idp', //          5
    '    jwks_uri: https://idp/jwks', //   6
    '    clock_skew: 30 parsecs', //       7 bad duration
    '    algoritms: [RS256]', //           8 unknown key (typo)
    'upstreams:', //                       9
    '  api: { targets: ["http://127.0.0.1:1"], timeout: fast }', // 10 bad duration
    'routes:', //                          11
    '  - id: r1', //                       12
    '    match: { path_prefix: /x/ }', //  13
    '    upstream: nope', //               14 unknown upstream
    '    auth: { issuers: [corp, other] }', // 15 unknown issuer
    '  - id: r2', //                       16
    '    match: { path_prefix: /y/ }', //  17
    '    upstream: api', //                18
    '    strip_authorization: "yes"', //   19 wrong type
  ].join('\n');
  const problems = await problemsOf(text);
  const has = (prefix: string, fragment: string) =>
    assert.ok(problems.some((p) => p.startsWith(prefix) && p.includes(fragment)), `missing ${prefix} ${fragment} in\n${problems.join('\n')}`);
  has('/cfg/p.yaml:2:1:', 'unknown key "colour"');
  has('/cfg/p.yaml:7:17:', 'invalid duration');
  has('/cfg/p.yaml:8:5:', 'unknown key "algoritms"');
  has('/cfg/p.yaml:10:', 'invalid duration');
  has('/cfg/p.yaml:19:26:', 'expected boolean');
});

test('cross references, key files and algorithms are checked at compile time', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'pc-cfg-'));
  try {
    const file = join(dir, 'p.yaml');
    const text = [
      'issuers:', //                                    1
      '  a:', //                                        2
      '    issuer: https://a', //                       3
      '    keys: [{ pem_file: missing.pem }]', //      4 unreadable key file
      '  b:', //                                        5
      '    issuer: https://b', //                       6
      '    jwks_uri: https://b/jwks', //                7
      '    algorithms: [HS256]', //                     8 HMAC without secret
      '  c:', //                                        9
      '    issuer: https://c', //                       10 no key source
      'upstreams:', //                                  11
      '  api: { targets: ["http://127.0.0.1:1"] }', //  12
      'routes:', //                                     13
      '  - id: r', //                                   14
      '    match: { path_prefix: /x/ }', //             15
      '    upstream: nope', //                          16
      '    auth: { issuers: [a, zz] }', //              17
      '  - id: r', //                                   18 duplicate id
      '    match: { path: /y }', //                     19
      '    upstream: api', //                           20
      '    claims_to_headers: { authorization: sub }', // 21 reserved header
    ].join('\n');
    writeFileSync(file, text);
    let problems: string[] = [];
    try {
      await compileConfig(loadConfigText(text, file, {}), {});
      assert.fail('should not compile');
    } catch (error) {
      assert.ok(error instanceof ConfigError);
      problems = error.problems.map(formatProblem);
    }
    const has = (line: number, fragment: string) =>
      assert.ok(problems.some((p) => p.startsWith(`${file}:${line}:`) && p.includes(fragment)), `missing line ${line} "${fragment}" in\n${problems.join('\n')}`);
    has(4, 'missing.pem');
    has(8, 'HS256 needs an HMAC secret');
    has(10, 'has no keys');
    has(16, 'unknown upstream "nope"');
    has(17, 'unknown issuer "zz"');
    has(18, 'duplicate route id');
    has(21, 'owned by the proxy');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('__proto__ is refused as a header name, with its position', async () => {
  const text = [
    'issuers: { a: { issuer: https://a, jwks_uri: https://a/jwks } }',
    'upstreams: { api: { targets: ["http://127.0.0.1:1"] } }',
    'routes:',
    '  - id: r',
    '    match: { path_prefix: / }',
    '    upstream: api',
    '    set_headers: { __proto__: "{{claims.sub}}" }',
    '  - id: s',
    '    match: { path_prefix: /s/ }',
    '    upstream: api',
    '    auth: { from: [{ header: __proto__ }] }',
    '  - id: t',
    '    match: { path_prefix: /t/ }',
    '    upstream: api',
    '    auth: { from: [{ header: __PROTO__ }] }',
  ].join('\n');
  const problems = await problemsOf(text);
  assert.ok(problems.some((p) => /^\/cfg\/p\.yaml:7:.*__proto__ is not supported/.test(p)), problems.join('\n'));
  assert.ok(problems.some((p) => /^\/cfg\/p\.yaml:11:.*__proto__ is not supported/.test(p)), problems.join('\n'));
  // Header names are case-insensitive, and the schema folds them after the check.
  assert.ok(problems.some((p) => /^\/cfg\/p\.yaml:15:.*__proto__ is not supported/.test(p)), problems.join('\n'));
});

test('${ENV} is substituted; an unset variable is an error with its position', async () => {
  const text = VALID.replace('https://idp.example.com/jwks', '${JWKS_URL}');
  const c = await compileText(text, { JWKS_URL: 'https://other.example.com/keys' });
  assert.equal(c.issuers[0]!.jwksUri, 'https://other.example.com/keys');
  const problems = await problemsOf(text, {});
  assert.equal(problems.length, 1);
  assert.match(problems[0]!, /^\/cfg\/p\.yaml:5:15: environment variable JWKS_URL is not set$/);
  const escaped = await compileText(VALID.replace('realms/corp', () => 'realms/$${literal}'));
  assert.equal(escaped.issuers[0]!.issuer, 'https://idp.example.com/realms/${literal}');
});

test('YAML syntax errors and duplicate keys are reported with positions', async () => {
  const problems = await problemsOf('routes:\n  - id: a\n    id: b\n');
  assert.ok(problems.some((p) => /^\/cfg\/p\.yaml:3:5: .*[Uu]nique/.test(p)), problems.join('\n'));
  const syntax = await problemsOf('routes: [\n');
  assert.ok(syntax[0]!.startsWith('/cfg/p.yaml:'), syntax.join('\n'));
});

test('HMAC algorithms are allowed only with a configured secret', async () => {
  const text = VALID.replace('jwks_uri: https://idp.example.com/jwks', 'keys: [{ hmac_secret_env: SECRET }]');
  const c = await compileText(text, { SECRET: 'x'.repeat(48) });
  assert.ok(c.issuers[0]!.algorithms.includes('HS256'));
});

test('${NAME:-default} falls back when the variable is unset', async () => {
  const text = VALID.replace('https://idp.example.com/jwks', '${JWKS_URL:-https://fallback.example.com/jwks}');
  assert.equal((await compileText(text, {})).issuers[0]!.jwksUri, 'https://fallback.example.com/jwks');
  assert.equal((await compileText(text, { JWKS_URL: 'https://set.example.com/k' })).issuers[0]!.jwksUri, 'https://set.example.com/k');
});

test('audit.batch_wait: 10ms by default, 0 turns it off, more than a second is refused with its line', async () => {
  const audit = (extra: string) => `${VALID}audit:\n  store: sqlite:./audit.db\n  signing_key: { env: AUDIT_KEY }\n${extra}`;
  assert.equal((await compileText(audit('')))?.audit?.batchWaitMs, 10);
  assert.equal((await compileText(audit('  batch_wait: 0\n')))?.audit?.batchWaitMs, 0);
  assert.equal((await compileText(audit('  batch_wait: 250ms\n')))?.audit?.batchWaitMs, 250);
  const problems = await problemsOf(audit('  batch_wait: 2s\n'));
  assert.equal(problems.length, 1);
  assert.match(problems[0]!, /p\.yaml:\d+.*batch_wait must be at most 1s/);
});
