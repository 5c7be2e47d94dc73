/**
 * Loki label-based access control through the real proxy. The recording upstream receives the rewritten
 * requests; every test re-parses what arrived and asserts that EVERY selector carries the enforced matchers.
 */
import { test, before, after, beforeEach } from 'node:test';
import assert from 'node:assert/strict';
import { request } from 'node:http';
import type { IncomingMessage } from 'node:http';
import { once } from 'node:events';
import { WebSocket } from 'ws';
import { createTestSigner } from '../helpers/keys.ts';
import type { TestSigner } from '../helpers/keys.ts';
import { startRecordingUpstream } from '../helpers/upstream.ts';
import type { RecordedRequest, RecordingUpstream } from '../helpers/upstream.ts';
import { accessLogs, startProxy } from '../helpers/proxy.ts';
import type { RunningProxy } from '../helpers/proxy.ts';
import { parseLogql, selectors } from '../../src/logql/index.ts';
import type { LabelMatcher } from '../../src/logql/index.ts';

const ISS = 'https://idp.loki.test';
let signer: TestSigner;
let upstream: RecordingUpstream;
let proxy: RunningProxy;
let staging: string;

before(async () => {
  signer = await createTestSigner('ES256');
  upstream = await startRecordingUpstream();
  proxy = await startProxy(
    `
issuers:
  corp: { issuer: ${ISS}, keys: [{ jwks_file: jwks.json }] }
upstreams:
  loki: { targets: ["${upstream.origin}"] }
routes:
  - id: loki-push
    match: { path: /loki/api/v1/push }
    upstream: loki
    require: { roles: [log-writer] }
    loki: { allow_push: true, tenant: claims.tenant }
  - id: loki
    match: { path_prefix: /loki/ }
    upstream: loki
    loki: { enforce: { env: claims.env, team: claims.teams }, tenant: claims.tenant }
  - id: legacy
    match: { path_prefix: /api/prom/ }
    upstream: loki
    loki: { enforce: { env: claims.env } }
`,
    { files: { 'jwks.json': JSON.stringify(signer.jwks) } },
  );
  staging = await tokenFor({ env: 'staging', teams: ['payments'], tenant: 'acme' });
});
after(async () => {
  await proxy.close();
  await upstream.close();
});
beforeEach(() => upstream.reset());

async function tokenFor(claims: Record<string, unknown>): Promise<string> {
  return signer.sign({ iss: ISS, sub: 'reader', exp: Math.floor(Date.now() / 1000) + 600, ...claims });
}

interface Answer {
  status: number;
  body: Record<string, unknown>;
}

/** Raw HTTP so that paths and bodies reach the proxy exactly as written. */
function send(method: string, path: string, opts: { token?: string; headers?: Record<string, string>; body?: string } = {}): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const headers: Record<string, string> = { ...opts.headers };
    if (opts.token !== undefined) headers.authorization = `Bearer ${opts.token}`;
    if (opts.body !== undefined) headers['content-length'] = String(Buffer.byteLength(opts.body));
    const req = request(proxy.url, { method, path, headers }, (res) => {
      let text = '';
      res.on('data', (d: Buffer) => (text += d.toString()));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: text.startsWith('{') ? (JSON.parse(text) as Record<string, unknown>) : {} }));
    });
    req.on('error', reject);
    req.end(opts.body);
  });
}

const q = (query: string) => encodeURIComponent(query);

/** Every selector of `query` holds env="staging" and team="payments" (the staging token's claims). */
function assertEnforced(query: string, expected: LabelMatcher[] = [{ name: 'env', op: '=', value: 'staging' }, { name: 'team', op: '=', value: 'payments' }]): LabelMatcher[][] {
  const all = selectors(parseLogql(query));
  assert.ok(all.length > 0, `no selector in ${query}`);
  for (const sel of all) {
    for (const m of expected) {
      assert.ok(sel.some((x) => x.name === m.name && x.op === m.op && x.value === m.value), `selector ${JSON.stringify(sel)} lacks ${m.name}${m.op}"${m.value}" in ${query}`);
    }
  }
  return all;
}

function arrivedParams(r: RecordedRequest): URLSearchParams {
  const url = new URL(r.url, 'http://x');
  if (r.method === 'POST') return new URLSearchParams(r.body.toString());
  return url.searchParams;
}

test('query and query_range: every selector in every position is enforced; user matchers stay', async () => {
  const queries = [
    '{app="api"}',
    '{env!="staging"}',
    '{env!~"staging"}',
    '{env=~".*"}',
    '{env="production", env="production"}',
    '{app="api"} |= "{env=\\"prod\\"}" |~ `}{` # comment with { braces }',
    'sum by (app) (rate({app="api"} |= "error" [5m])) / on(app) group_left sum by (app) (rate({app=~".+"}[5m]))',
    'count_over_time({app="a"}[1h]) or count_over_time({app="b"}[1h]) and count_over_time({app="c"}[1h]) unless count_over_time({app="d"}[1h])',
    'label_replace(rate({app="x"}[1m]), "dst", "$1", "app", "(.*)")',
    'quantile_over_time(0.99, {app="api"} | json | unwrap latency | __error__="" [5m] offset 1h) by (app)',
    'SUM(COUNT_OVER_TIME({app="api"}[5m])) > bool 10',
    'topk(3, sum by (app) (bytes_over_time({app="api"}[5m])))',
    '((((({app="api"})))))',
  ];
  for (const query of queries) {
    upstream.reset();
    const r = await send('GET', `/loki/api/v1/query_range?query=${q(query)}&start=1&end=2&limit=10`, { token: staging });
    assert.equal(r.status, 200, `${query}: ${JSON.stringify(r.body)}`);
    const arrived = arrivedParams(upstream.requests[0]!);
    assertEnforced(arrived.get('query')!);
    assert.equal(arrived.get('limit'), '10', 'other parameters are kept');
  }
  // The user's negative matcher stays next to the enforced one: Loki ANDs them, so nothing escapes.
  upstream.reset();
  await send('GET', `/loki/api/v1/query?query=${q('{env!="staging"}')}`, { token: staging });
  const sel = assertEnforced(arrivedParams(upstream.requests[0]!).get('query')!)[0]!;
  assert.ok(sel.some((m) => m.name === 'env' && m.op === '!=' && m.value === 'staging'));
});

test('several allowed values become an escaped, anchored alternation', async () => {
  const t = await tokenFor({ env: ['a.b', 'c|d', 'e"f'], teams: ['x'], tenant: 'acme' });
  await send('GET', `/loki/api/v1/query?query=${q('{app="api"}')}`, { token: t });
  const sel = selectors(parseLogql(arrivedParams(upstream.requests[0]!).get('query')!))[0]!;
  const env = sel.find((m) => m.name === 'env' && m.op === '=~');
  assert.ok(env, JSON.stringify(sel));
  const re = new RegExp(`^(?:${env.value})$`);
  for (const v of ['a.b', 'c|d', 'e"f']) assert.ok(re.test(v), `${v} allowed`);
  for (const v of ['axb', 'c', 'd', 'a.b|x', '']) assert.ok(!re.test(v), `${v} not allowed`);
});

test('a missing or empty claim is 403, never label=""', async () => {
  for (const claims of [{ teams: ['p'], tenant: 'acme' }, { env: '', teams: ['p'], tenant: 'acme' }, { env: [], teams: ['p'], tenant: 'acme' }, { env: 'staging', teams: [], tenant: 'acme' }, { env: 'staging', teams: ['p'] }]) {
    const r = await send('GET', `/loki/api/v1/query?query=${q('{app="api"}')}`, { token: await tokenFor(claims) });
    assert.equal(r.status, 403, JSON.stringify(claims));
    assert.equal(r.body.code, 'ERR_LOKI_CLAIM_MISSING');
  }
  assert.equal(upstream.requests.length, 0);
});

test('an unparseable query is refused with 400 and a reason, never forwarded', async () => {
  for (const query of ['{app="api"', '{}', 'sum(', '{app="api"} |= `unterminated', 'no_such_fn({app="a"}[5m])', 'app="api"']) {
    const r = await send('GET', `/loki/api/v1/query?query=${q(query)}`, { token: staging });
    assert.equal(r.status, 400, query);
    assert.equal(r.body.code, 'ERR_LOKI_QUERY_INVALID');
    assert.match(String(r.body.message), /cannot be parsed/);
  }
  assert.equal(upstream.requests.length, 0);
});

test('POST form body is enforced; URL + body or repeated query is refused', async () => {
  const form = { 'content-type': 'application/x-www-form-urlencoded' };
  const ok = await send('POST', '/loki/api/v1/query_range', { token: staging, headers: form, body: `query=${q('{app="api"}')}&limit=5` });
  assert.equal(ok.status, 200);
  const arrived = upstream.requests[0]!;
  assert.equal(arrived.method, 'POST');
  assert.equal(new URL(arrived.url, 'http://x').search, '', 'parameters travel in the rebuilt body only');
  assertEnforced(arrivedParams(arrived).get('query')!);
  upstream.reset();
  const both = await send('POST', `/loki/api/v1/query_range?query=${q('{app="a"}')}`, { token: staging, headers: form, body: `query=${q('{app="b"}')}` });
  assert.equal(both.status, 400);
  assert.equal(both.body.code, 'ERR_LOKI_PARAM_INVALID');
  const twice = await send('GET', `/loki/api/v1/query?query=${q('{app="a"}')}&query=${q('{app="b"}')}`, { token: staging });
  assert.equal(twice.status, 400);
  const json = await send('POST', '/loki/api/v1/query', { token: staging, headers: { 'content-type': 'application/json' }, body: '{"query":"{app=\\"a\\"}"}' });
  assert.equal(json.status, 400);
  assert.equal(json.body.code, 'ERR_LOKI_BODY_INVALID');
  assert.equal(upstream.requests.length, 0);
});

test('series: match[] and match are unioned and each enforced; none means all, so the proxy adds one', async () => {
  await send('GET', `/loki/api/v1/series?match[]=${q('{app="a"}')}&match=${q('{app="b"}')}&start=1`, { token: staging });
  const arrived = arrivedParams(upstream.requests[0]!);
  assert.equal(arrived.getAll('match').length, 0);
  const matches = arrived.getAll('match[]');
  assert.equal(matches.length, 2);
  for (const m of matches) assertEnforced(m);
  upstream.reset();
  await send('GET', '/loki/api/v1/series', { token: staging });
  const none = arrivedParams(upstream.requests[0]!).getAll('match[]');
  assert.equal(none.length, 1);
  assertEnforced(none[0]!);
});

test('labels and label values: the proxy always sets query', async () => {
  for (const path of ['/loki/api/v1/labels', '/loki/api/v1/label', '/loki/api/v1/label/app/values', `/loki/api/v1/label/app/values?query=${q('{app=~"a.*"}')}`]) {
    upstream.reset();
    assert.equal((await send('GET', path, { token: staging })).status, 200, path);
    assertEnforced(arrivedParams(upstream.requests[0]!).get('query')!);
  }
});

test('index stats/volume, patterns, detected labels/fields are enforced', async () => {
  for (const endpoint of ['index/stats', 'index/volume', 'index/volume_range', 'patterns', 'detected_labels', 'detected_fields']) {
    upstream.reset();
    assert.equal((await send('GET', `/loki/api/v1/${endpoint}?query=${q('{app="api"}')}`, { token: staging })).status, 200, endpoint);
    assertEnforced(arrivedParams(upstream.requests[0]!).get('query')!);
    upstream.reset();
    assert.equal((await send('GET', `/loki/api/v1/${endpoint}`, { token: staging })).status, 200, `${endpoint} without query`);
    assertEnforced(arrivedParams(upstream.requests[0]!).get('query')!);
  }
});

test('legacy /api/prom aliases and odd path encodings are enforced the same way', async () => {
  const envOnly: LabelMatcher[] = [{ name: 'env', op: '=', value: 'staging' }];
  for (const path of [`/api/prom/query?query=${q('{app="a"}')}`, `/api/prom/label/app/values`, `/api/prom/series?match[]=${q('{app="a"}')}`]) {
    upstream.reset();
    assert.equal((await send('GET', path, { token: staging })).status, 200, path);
    const p = arrivedParams(upstream.requests[0]!);
    assertEnforced(p.get('query') ?? p.get('match[]')!, envOnly);
  }
  for (const path of ['//loki/api/v1/query', '/loki/api/v1/./query', '/loki/api/x/../v1/query', '/loki/api/v1/query/', '/loki/api/v1/%71uery']) {
    upstream.reset();
    assert.equal((await send('GET', `${path}?query=${q('{app="a"}')}`, { token: staging })).status, 200, path);
    assert.equal(new URL(upstream.requests[0]!.url, 'http://x').pathname, '/loki/api/v1/query', path);
    assertEnforced(arrivedParams(upstream.requests[0]!).get('query')!);
  }
  upstream.reset();
  assert.equal((await send('GET', `/loki/api/v1%2Fquery?query=${q('{app="a"}')}`, { token: staging })).status, 400);
  assert.equal(upstream.requests.length, 0);
});

test('default deny: push, delete, rules, config, ring, flush, unknown endpoints', async () => {
  for (const [method, path] of [
    ['POST', '/loki/api/v1/push'.replace('push', 'push/')], ['POST', '/otlp/v1/logs'], ['POST', '/loki/api/v1/delete'], ['DELETE', '/loki/api/v1/delete'],
    ['GET', '/loki/api/v1/rules'], ['GET', '/loki/api/v1/alerts'], ['GET', '/loki/config'], ['GET', '/loki/ring'], ['POST', '/loki/flush'],
    ['GET', '/loki/api/v1/status/buildinfo'], ['POST', '/loki/api/v1/query'.replace('query', 'format_query')],
  ] as const) {
    const r = await send(method, path, { token: staging });
    assert.ok(r.status === 403 || r.status === 404, `${method} ${path}: ${r.status}`);
  }
  const del = await send('DELETE', `/loki/api/v1/query?query=${q('{a="b"}')}`, { token: staging });
  assert.equal(del.status, 403);
  assert.equal(upstream.requests.length, 0);
});

test('push is allowed only on a route that allows it, for writer tokens', async () => {
  const body = '{"streams":[]}';
  const reader = await send('POST', '/loki/api/v1/push', { token: staging, headers: { 'content-type': 'application/json' }, body });
  assert.equal(reader.status, 403);
  const writer = await tokenFor({ roles: ['log-writer'], tenant: 'acme' });
  const ok = await send('POST', '/loki/api/v1/push', { token: writer, headers: { 'content-type': 'application/json' }, body });
  assert.equal(ok.status, 200);
  assert.equal(upstream.requests[0]!.body.toString(), body, 'the push body streams through unchanged');
  assert.equal(upstream.requests[0]!.headers['x-scope-orgid'], 'acme');
});

test('tenancy: the proxy owns X-Scope-OrgID; a tenant outside the set is refused, not overwritten', async () => {
  const multi = await tokenFor({ env: 'staging', teams: ['payments'], tenant: ['acme', 'globex'] });
  const path = `/loki/api/v1/query?query=${q('{app="a"}')}`;
  const own = await send('GET', path, { token: staging, headers: { 'x-prom-label-policy': 'acme:{env="production"}' } });
  assert.equal(own.status, 200);
  assert.equal(upstream.requests[0]!.headers['x-scope-orgid'], 'acme');
  assert.equal(upstream.requests[0]!.headers['x-prom-label-policy'], undefined);
  const outside = await send('GET', path, { token: staging, headers: { 'x-scope-orgid': 'globex' } });
  assert.equal(outside.status, 403);
  assert.equal(outside.body.code, 'ERR_LOKI_TENANT_DENIED');
  const widen = await send('GET', path, { token: staging, headers: { 'x-scope-orgid': 'acme|globex' } });
  assert.equal(widen.status, 403);
  const choose = await send('GET', path, { token: multi });
  assert.equal(choose.status, 403, 'several tenants without multi_tenant: the client must choose');
  upstream.reset();
  const chosen = await send('GET', path, { token: multi, headers: { 'x-scope-orgid': 'globex' } });
  assert.equal(chosen.status, 200);
  assert.equal(upstream.requests[0]!.headers['x-scope-orgid'], 'globex');
  assert.equal(upstream.requests.length, 1);
});

test('tail over WebSocket: enforced before the upgrade, then piped', async () => {
  const ws = new WebSocket(`${proxy.url.replace('http', 'ws')}/loki/api/v1/tail?query=${q('{app="api"} |= "x"')}`, { headers: { authorization: `Bearer ${staging}` } });
  await once(ws, 'open');
  ws.send('ping');
  const [msg] = (await once(ws, 'message')) as [Buffer];
  assert.equal(msg.toString(), 'ping');
  ws.close();
  await once(ws, 'close');
  assertEnforced(new URL(upstream.requests[0]!.url, 'http://x').searchParams.get('query')!);
  const bad = new WebSocket(`${proxy.url.replace('http', 'ws')}/loki/api/v1/tail?query=${q('{app="api"')}`, { headers: { authorization: `Bearer ${staging}` } });
  bad.on('error', () => {});
  const [, res] = (await once(bad, 'unexpected-response')) as [unknown, IncomingMessage];
  assert.equal(res.statusCode, 400);
  res.resume();
  bad.terminate();
  assert.equal(upstream.requests.length, 1);
});

test('the access log has the original and enforced query and the tenant; metrics never the query', async () => {
  await send('GET', `/loki/api/v1/query?query=${q('{app="needle-in-query"}')}`, { token: staging });
  const line = accessLogs(proxy).find((l) => (l.loki as { original?: string } | undefined)?.original === '{app="needle-in-query"}');
  assert.ok(line, 'logged');
  const loki = line.loki as { enforced: string; tenant: string; endpoint: string };
  assertEnforced(loki.enforced);
  assert.equal(loki.tenant, 'acme');
  assert.equal(loki.endpoint, '/loki/api/v1/query');
  const metrics = await (await fetch(proxy.adminUrl + '/metrics')).text();
  assert.ok(!metrics.includes('needle-in-query'));
});
