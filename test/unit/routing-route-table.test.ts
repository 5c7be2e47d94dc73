import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createRouteTable, hostOf } from '../../src/routing/route-table.ts';
import type { RouteConfig } from '../../src/config/types.ts';
import { ProxyError } from '../../src/errors.ts';

function route(id: string, path: string, kind: 'exact' | 'prefix', extra: Partial<RouteConfig> = {}): RouteConfig {
  return {
    id,
    host: undefined,
    path: { kind, value: path },
    methods: [],
    auth: { mode: 'required', issuers: [], from: [] },
    upstream: 'u',
    rewritePrefix: undefined,
    stripAuthorization: true,
    claimHeaders: [],
    headerTemplates: [],
    rules: undefined,
    environment: undefined,
    loki: undefined,
    auditApi: false,
    timeoutMs: 1000,
    websocket: true,
    ...extra,
  };
}

const table = createRouteTable([
  route('root', '/', 'prefix'),
  route('api', '/api', 'prefix'),
  route('api-v2', '/api/v2/', 'prefix'),
  route('health', '/api/health', 'exact'),
  route('admin-host', '/', 'prefix', { host: 'admin.example.com' }),
  route('wild-host', '/', 'prefix', { host: '*.example.com' }),
  route('post-only', '/submit', 'exact', { methods: ['POST'] }),
]);

const cases: Array<[host: string, method: string, path: string, expected: string]> = [
  ['x', 'GET', '/', 'root'],
  ['x', 'GET', '/api', 'api'],
  ['x', 'GET', '/api/users', 'api'],
  ['x', 'GET', '/apix', 'root'], // segment boundary: /api does not cover /apix
  ['x', 'GET', '/api/v2/things', 'api-v2'], // longest prefix wins
  ['x', 'GET', '/api/health', 'health'], // exact beats prefix
  ['x', 'GET', '/api/health/x', 'api'],
  ['admin.example.com', 'GET', '/api', 'admin-host'], // exact host beats any host
  ['a.example.com', 'GET', '/api', 'wild-host'],
  ['example.com', 'GET', '/api', 'api'], // *.example.com does not match the apex
  ['x', 'POST', '/submit', 'post-only'],
];

test('routes match by host, then exact path, then longest prefix', () => {
  for (const [host, method, path, expected] of cases) {
    assert.equal(table.match(host, method, path).route.id, expected, `${method} ${host}${path}`);
  }
});

test('no route is 404 and a wrong method on a matched path is 405', () => {
  const only = createRouteTable([route('a', '/a', 'prefix'), route('p', '/p', 'exact', { methods: ['POST'] })]);
  assert.throws(() => only.match('h', 'GET', '/b'), (e: unknown) => e instanceof ProxyError && e.code === 'ERR_ROUTE_NOT_FOUND');
  assert.throws(() => only.match('h', 'GET', '/p'), (e: unknown) => e instanceof ProxyError && e.code === 'ERR_METHOD_NOT_ALLOWED');
});

test('hostOf strips the port and lower-cases', () => {
  assert.equal(hostOf('Example.COM:8080'), 'example.com');
  assert.equal(hostOf('[::1]:8080'), '[::1]');
  assert.equal(hostOf(undefined), '');
});

test('path parameters: {name} matches one segment and is decoded', () => {
  const t = createRouteTable([
    route('logs', '/envs/{env}/logs', 'exact'),
    route('env-any', '/envs/{env}/', 'prefix'),
    route('literal', '/envs/prod/logs', 'exact'),
  ]);
  assert.deepEqual(t.match('h', 'GET', '/envs/staging/logs'), { route: t.match('h', 'GET', '/envs/staging/logs').route, params: { env: 'staging' } });
  assert.equal(t.match('h', 'GET', '/envs/staging/logs').route.id, 'logs');
  assert.equal(t.match('h', 'GET', '/envs/prod/logs').route.id, 'literal', 'a literal exact path beats a pattern');
  assert.deepEqual(t.match('h', 'GET', '/envs/a%20b/other').params, { env: 'a b' });
  assert.throws(() => t.match('h', 'GET', '/envs//logs'));
});
