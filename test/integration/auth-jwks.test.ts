/**
 * Remote JWK Sets against a real loopback IdP that counts every hit: cache lifetime, single-flight
 * refetch on unknown kids under a cooldown, stale-if-error, never-had-keys answers, classified failures,
 * discovery checks and key-set reuse across reloads. Time is an injected clock; nothing sleeps, and the
 * only waits are on real events (a fetch settling, reported by the observer or a joined promise).
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import type { Server, ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { generateKeyPairSync } from 'node:crypto';
import type { IssuerConfig, JwksPolicy } from '../../src/config/types.ts';
import { createRemoteJwks, isTrustedKeyUrl } from '../../src/auth/jwks-remote.ts';
import type { RemoteJwks, RemoteJwksOptions } from '../../src/auth/jwks-remote.ts';
import { createIssuerRegistry } from '../../src/auth/issuers.ts';
import type { IssuerRegistry } from '../../src/auth/issuers.ts';
import type { KeySourceObserver } from '../../src/auth/key-source.ts';
import { verifyToken } from '../../src/auth/verify.ts';
import { isProxyError } from '../../src/errors.ts';
import { createTestSigner } from '../helpers/keys.ts';
import type { TestSigner } from '../helpers/keys.ts';
import { TEST_JWKS_POLICY, testIssuerConfig } from '../helpers/config.ts';

const POLICY: JwksPolicy = TEST_JWKS_POLICY;
const T0 = 1_800_000_000_000;

// ---------------------------------------------------------------------------------------------- fixture

interface Answer {
  status?: number;
  headers?: Record<string, string>;
  body?: string | Buffer;
  /** Never answer (the client must time out). */
  hang?: boolean;
  /** Send the body in chunks without Content-Length. */
  chunked?: boolean;
}

let server: Server;
let origin: string;
const answers = new Map<string, () => Answer>();
const hits = new Map<string, number>();
const hanging: ServerResponse[] = [];
const opened: { close(): void }[] = [];
let a: TestSigner;
let b: TestSigner;
let clock = T0;
const now = () => clock;

before(async () => {
  [a, b] = await Promise.all([createTestSigner('RS256'), createTestSigner('ES256')]);
  server = createServer((req, res) => {
    const path = req.url ?? '/';
    hits.set(path, (hits.get(path) ?? 0) + 1);
    const answer = answers.get(path)?.() ?? { status: 404 };
    if (answer.hang) {
      hanging.push(res);
      return;
    }
    const body = answer.body ?? '';
    if (answer.chunked) {
      res.writeHead(answer.status ?? 200, { 'content-type': 'application/json', ...answer.headers });
      const bytes = Buffer.from(body);
      for (let i = 0; i < bytes.length; i += 1024) res.write(bytes.subarray(i, i + 1024));
      res.end();
      return;
    }
    res.writeHead(answer.status ?? 200, { 'content-type': 'application/json', ...answer.headers });
    res.end(body);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  origin = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

after(async () => {
  for (const source of opened) source.close();
  for (const res of hanging) res.destroy();
  server.closeAllConnections();
  await new Promise<void>((resolve) => server.close(() => resolve()));
});

let pathCounter = 0;
/** A fresh path on the test IdP with its own answer and hit counter. */
function serve(answer: () => Answer): { path: string; url: string; hits: () => number } {
  const path = `/p${++pathCounter}`;
  answers.set(path, answer);
  return { path, url: origin + path, hits: () => hits.get(path) ?? 0 };
}

const jwksAnswer = (keys: object[], headers: Record<string, string> = {}) => (): Answer => ({
  body: JSON.stringify({ keys }),
  headers,
});

/** Records observer calls; `next()` resolves on the next one (a real event, not a timer). */
function createProbe() {
  const events: { issuerId: string; outcome: string; reason: string | undefined }[] = [];
  let waiters: ((event: (typeof events)[number]) => void)[] = [];
  const observer: KeySourceObserver = {
    jwksFetch(issuerId, outcome, reason) {
      const event = { issuerId, outcome, reason };
      events.push(event);
      const current = waiters;
      waiters = [];
      for (const wake of current) wake(event);
    },
  };
  return { events, observer, next: () => new Promise<(typeof events)[number]>((resolve) => waiters.push(resolve)) };
}

function remote(opts: Partial<RemoteJwksOptions>): RemoteJwks {
  const source = createRemoteJwks({ issuerId: 'idp', expectedIssuer: 'https://idp.test', policy: POLICY, now, ...opts });
  opened.push(source);
  return source;
}

function issuerConfig(over: Partial<IssuerConfig>): IssuerConfig {
  return testIssuerConfig({ id: 'idp', issuer: 'https://idp.test', jwks: POLICY, ...over });
}

async function registryFor(configs: IssuerConfig[], opts: Parameters<typeof createIssuerRegistry>[1] = {}): Promise<IssuerRegistry> {
  const registry = await createIssuerRegistry(configs, { now, ...opts });
  opened.push(registry);
  return registry;
}

const tokenOf = (signer: TestSigner, kid?: string) =>
  signer.sign({ iss: 'https://idp.test', exp: Math.floor(clock / 1000) + 60 }, kid === undefined ? {} : { kid });

async function codeOf(promise: Promise<unknown> | unknown): Promise<string> {
  try {
    await promise;
    return 'ok';
  } catch (error) {
    if (isProxyError(error)) return error.code;
    throw error;
  }
}

// ---------------------------------------------------------------------------------------------- cache

const TTL_CASES: { name: string; headers: Record<string, string>; ttl: number }[] = [
  { name: 'max-age inside the bounds is honoured', headers: { 'cache-control': 'max-age=120' }, ttl: 120_000 },
  { name: 'max-age below the minimum is raised', headers: { 'cache-control': 'public, max-age=5' }, ttl: 60_000 },
  { name: 'max-age above the maximum is lowered', headers: { 'cache-control': 'max-age=100000' }, ttl: 600_000 },
  { name: 'no Cache-Control means the maximum', headers: {}, ttl: 600_000 },
  { name: 'no-store means the minimum', headers: { 'cache-control': 'no-store' }, ttl: 60_000 },
  { name: 'Age is subtracted (RFC 9111 §4.2.3)', headers: { 'cache-control': 'max-age=300', age: '100' }, ttl: 200_000 },
];

for (const c of TTL_CASES) {
  test(`JWKS cache: ${c.name}`, async () => {
    clock = T0;
    const idp = serve(jwksAnswer([a.publicJwk], c.headers));
    const jwks = remote({ jwksUri: idp.url });
    await jwks.start();
    const status = jwks.status();
    assert.equal(status.ready, true);
    assert.equal(status.lastSuccessAt, T0);
    assert.equal(status.expiresAt, T0 + c.ttl);
    assert.equal(idp.hits(), 1);
  });
}

test('JWKS cache: keys are refreshed once the TTL elapses, not before, and keep serving meanwhile', async () => {
  clock = T0;
  let keys: object[] = [a.publicJwk];
  const idp = serve(() => jwksAnswer(keys, { 'cache-control': 'max-age=120' })());
  const jwks = remote({ jwksUri: idp.url });
  await jwks.start();
  keys = [a.publicJwk, b.publicJwk];

  clock = T0 + 119_999;
  assert.equal((await jwks.getKey({ alg: 'RS256', kid: a.kid })).kid, a.kid);
  assert.equal(jwks.status().refreshing, false, 'no refresh before the TTL');

  clock = T0 + 120_000;
  const served = jwks.getKey({ alg: 'RS256', kid: a.kid });
  assert.ok(!(served instanceof Promise), 'the current key is served synchronously while refreshing');
  assert.equal(jwks.status().refreshing, true, 'the TTL started a background refresh');
  await jwks.refresh(); // joins the refresh in flight
  assert.equal(idp.hits(), 2);
  assert.deepEqual(jwks.status().kids, [a.kid, b.kid]);
  assert.equal(jwks.status().expiresAt, T0 + 240_000);
});

// ---------------------------------------------------------------------------------------------- unknown kid

test('unknown kid: one refetch per cooldown, shared by 20 concurrent requests', async () => {
  clock = T0;
  let keys: object[] = [a.publicJwk];
  const idp = serve(() => jwksAnswer(keys, { 'cache-control': 'max-age=600' })());
  const registry = await registryFor([issuerConfig({ jwksUri: idp.url })]);
  await registry.start();
  assert.equal(idp.hits(), 1);
  keys = [a.publicJwk, b.publicJwk]; // the IdP rotates in key b

  clock = T0 + 1_000; // within the cooldown of the first fetch: no refetch
  assert.equal(await codeOf(verifyToken(tokenOf(b), registry, [], clock / 1000)), 'ERR_TOKEN_KEY_UNKNOWN');
  assert.equal(idp.hits(), 1);

  clock = T0 + POLICY.cooldownMs;
  const twenty = await Promise.all(Array.from({ length: 20 }, () => codeOf(verifyToken(tokenOf(b), registry, [], clock / 1000))));
  assert.deepEqual(new Set(twenty), new Set(['ok']));
  assert.equal(idp.hits(), 2, '20 concurrent unknown kids made one fetch');

  const unknown = () => codeOf(verifyToken(tokenOf(b, 'never-published'), registry, [], clock / 1000));
  const again = await Promise.all(Array.from({ length: 20 }, unknown));
  assert.deepEqual(new Set(again), new Set(['ERR_TOKEN_KEY_UNKNOWN']));
  assert.equal(idp.hits(), 2, 'still within the cooldown: no fetch');

  clock += POLICY.cooldownMs;
  const later = await Promise.all(Array.from({ length: 20 }, unknown));
  assert.deepEqual(new Set(later), new Set(['ERR_TOKEN_KEY_UNKNOWN']));
  assert.equal(idp.hits(), 3, 'one more fetch after the cooldown');
});

// ---------------------------------------------------------------------------------------------- failures

test('stale-if-error: keys keep verifying while the IdP fails, until staleMaxMs, then the issuer is unavailable', async () => {
  clock = T0;
  let down = false;
  const idp = serve(() => (down ? { status: 500 } : jwksAnswer([a.publicJwk], { 'cache-control': 'max-age=60' })()));
  const probe = createProbe();
  const registry = await registryFor([issuerConfig({ jwksUri: idp.url })], { observer: probe.observer });
  await registry.start();
  assert.deepEqual(probe.events, [{ issuerId: 'idp', outcome: 'ok', reason: undefined }]);
  down = true;

  clock = T0 + 61_000; // TTL elapsed: the request is served and a refresh starts (and fails)
  let failed = probe.next();
  assert.equal(await codeOf(verifyToken(tokenOf(a), registry, [], clock / 1000)), 'ok');
  assert.deepEqual(await failed, { issuerId: 'idp', outcome: 'error', reason: 'http_500' });
  const status = registry.byId('idp')!.keys.status();
  assert.equal(status.ready, true);
  assert.equal(status.lastError, 'http_500');
  assert.equal(status.lastSuccessAt, T0);

  clock = T0 + POLICY.staleMaxMs; // last moment of the stale window
  failed = probe.next();
  assert.equal(await codeOf(verifyToken(tokenOf(a), registry, [], clock / 1000)), 'ok');
  await failed;
  assert.equal(registry.ready(), true);

  clock = T0 + POLICY.staleMaxMs + 1; // past it: the keys are dropped (this refetch is within the cooldown)
  const error = await verifyToken(tokenOf(a), registry, [], clock / 1000).catch((e: unknown) => e);
  assert.ok(isProxyError(error) && error.code === 'ERR_KEYS_UNAVAILABLE', String(error));
  assert.equal(error.retryAfter, POLICY.retryAfterSeconds);
  assert.equal(registry.ready(), false);
  assert.equal(registry.byId('idp')!.keys.status().keyCount, 0);
  const hitsWhileDown = idp.hits();

  down = false; // the IdP recovers; the next request after the cooldown fetches and succeeds
  clock += POLICY.cooldownMs;
  assert.equal(await codeOf(verifyToken(tokenOf(a), registry, [], clock / 1000)), 'ok');
  assert.equal(idp.hits(), hitsWhileDown + 1);
  assert.equal(registry.ready(), true);
});

test('never had keys: ERR_KEYS_UNAVAILABLE with Retry-After, and a fetch at most once per cooldown', async () => {
  clock = T0;
  let up = false;
  const idp = serve(() => (up ? jwksAnswer([a.publicJwk])() : { status: 503 }));
  const registry = await registryFor([issuerConfig({ jwksUri: idp.url })]);
  await registry.start(); // resolves although the fetch failed
  assert.equal(registry.ready(), false);
  assert.equal(registry.byId('idp')!.keys.status().lastError, 'http_503');

  const error = await verifyToken(tokenOf(a), registry, [], clock / 1000).catch((e: unknown) => e);
  assert.ok(isProxyError(error) && error.code === 'ERR_KEYS_UNAVAILABLE');
  assert.equal(error.retryAfter, 7);
  assert.equal(idp.hits(), 1, 'within the cooldown no fetch is made');

  clock += POLICY.cooldownMs;
  assert.equal(await codeOf(verifyToken(tokenOf(a), registry, [], clock / 1000)), 'ERR_KEYS_UNAVAILABLE');
  assert.equal(idp.hits(), 2, 'after the cooldown the request kicks one fetch');

  up = true;
  clock += POLICY.cooldownMs;
  assert.equal(await codeOf(verifyToken(tokenOf(a), registry, [], clock / 1000)), 'ok');
  assert.equal(registry.ready(), true);
});

const weakRsa = () => ({ ...generateKeyPairSync('rsa', { modulusLength: 1024 }).publicKey.export({ format: 'jwk' }), kid: 'weak' });

const FAILURES: { name: string; answer: () => Answer; reason: string; policy?: Partial<JwksPolicy>; url?: () => string }[] = [
  { name: '404', answer: () => ({ status: 404 }), reason: 'http_404' },
  { name: '500', answer: () => ({ status: 500, body: '{"keys":[]}' }), reason: 'http_500' },
  { name: 'redirect (not followed)', answer: () => ({ status: 302, headers: { location: '/elsewhere' } }), reason: 'http_302' },
  { name: 'invalid JSON', answer: () => ({ body: '{"keys": [' }), reason: 'invalid_json' },
  { name: 'invalid UTF-8', answer: () => ({ body: Buffer.from([0x7b, 0x22, 0xff, 0x22, 0x3a, 0x31, 0x7d]) }), reason: 'invalid_json' },
  { name: 'oversized body with Content-Length', answer: () => ({ body: JSON.stringify({ keys: [], pad: 'x'.repeat(20_000) }) }), reason: 'too_large' },
  { name: 'oversized chunked body', answer: () => ({ body: JSON.stringify({ keys: [], pad: 'x'.repeat(20_000) }), chunked: true }), reason: 'too_large' },
  { name: 'JSON without keys', answer: () => ({ body: '{"kid":"x"}' }), reason: 'invalid_jwks' },
  { name: 'keys not an array', answer: () => ({ body: '{"keys":{}}' }), reason: 'invalid_jwks' },
  { name: 'a JSON array', answer: () => ({ body: '[]' }), reason: 'invalid_jwks' },
  { name: 'no usable key', answer: () => jwksAnswer([{ ...a.publicJwk, use: 'enc' }, { kty: 'oct', k: 'c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LXNlY3JldA' }, weakRsa()])(), reason: 'no_usable_keys' },
  { name: 'timeout', answer: () => ({ hang: true }), reason: 'timeout', policy: { timeoutMs: 300 } },
  {
    name: 'connection refused',
    answer: () => ({}),
    reason: 'network',
    url: () => 'http://127.0.0.1:1/jwks',
  },
];

for (const c of FAILURES) {
  test(`JWKS failure is classified: ${c.name} -> ${c.reason}`, async () => {
    clock = T0;
    const idp = serve(c.answer);
    const probe = createProbe();
    const jwks = remote({ jwksUri: c.url?.() ?? idp.url, observer: probe.observer, policy: { ...POLICY, ...c.policy } });
    await jwks.start();
    assert.deepEqual(probe.events, [{ issuerId: 'idp', outcome: 'error', reason: c.reason }]);
    const status = jwks.status();
    assert.equal(status.lastError, c.reason);
    assert.equal(status.ready, false);
    assert.equal(status.lastSuccessAt, undefined);
    assert.equal(await codeOf(jwks.getKey({ alg: 'RS256', kid: a.kid })), 'ERR_KEYS_UNAVAILABLE');
  });
}

test('unusable keys in a set are skipped and counted; the usable ones serve', async () => {
  clock = T0;
  const x25519 = { ...generateKeyPairSync('x25519').publicKey.export({ format: 'jwk' }), kid: 'ecdh' };
  const idp = serve(jwksAnswer([{ ...b.publicJwk, kid: 'enc', use: 'enc' }, a.publicJwk, x25519, weakRsa(), { kty: 'oct', k: 'AAAA', kid: 'sym' }]));
  const jwks = remote({ jwksUri: idp.url });
  await jwks.start();
  const status = jwks.status();
  assert.deepEqual([status.keyCount, status.skippedKeys, status.kids], [1, 4, [a.kid]]);
});

// ---------------------------------------------------------------------------------------------- discovery

test('discovery: jwks_uri is taken from a document whose issuer matches exactly', async () => {
  clock = T0;
  const keys = serve(jwksAnswer([a.publicJwk]));
  const doc = serve(() => ({ body: JSON.stringify({ issuer: 'https://idp.test', jwks_uri: keys.url }) }));
  const registry = await registryFor([issuerConfig({ discoveryUrl: doc.url })]);
  await registry.start();
  assert.equal(await codeOf(verifyToken(tokenOf(a), registry, [], clock / 1000)), 'ok');
  assert.deepEqual([doc.hits(), keys.hits()], [1, 1]);
});

const DISCOVERY_FAILURES: { name: string; doc: (jwksUrl: string) => object; reason: string }[] = [
  { name: 'another issuer', doc: (jwks_uri) => ({ issuer: 'https://evil.test', jwks_uri }), reason: 'issuer_mismatch' },
  { name: 'issuer with a trailing slash', doc: (jwks_uri) => ({ issuer: 'https://idp.test/', jwks_uri }), reason: 'issuer_mismatch' },
  { name: 'issuer missing', doc: (jwks_uri) => ({ jwks_uri }), reason: 'issuer_mismatch' },
  { name: 'jwks_uri over plain http to a remote host', doc: () => ({ issuer: 'https://idp.test', jwks_uri: 'http://idp.example.com/jwks' }), reason: 'insecure_jwks_uri' },
  { name: 'jwks_uri missing', doc: () => ({ issuer: 'https://idp.test' }), reason: 'invalid_discovery' },
];

for (const c of DISCOVERY_FAILURES) {
  test(`discovery refused: ${c.name} -> ${c.reason}`, async () => {
    clock = T0;
    const keys = serve(jwksAnswer([a.publicJwk]));
    const doc = serve(() => ({ body: JSON.stringify(c.doc(keys.url)) }));
    const jwks = remote({ discoveryUrl: doc.url });
    await jwks.start();
    assert.equal(jwks.status().lastError, c.reason);
    assert.equal(jwks.status().ready, false);
    assert.equal(keys.hits(), 0, 'the keys of a refused document are never fetched');
  });
}

test('key URLs must be https, or http on loopback only', () => {
  const table: [string, boolean][] = [
    ['https://idp.example.com/jwks', true],
    ['http://127.0.0.1:8080/jwks', true],
    ['http://127.8.9.10/jwks', true],
    ['http://localhost:3000/jwks', true],
    ['http://[::1]:3000/jwks', true],
    ['http://idp.example.com/jwks', false],
    ['http://128.0.0.1/jwks', false],
    ['http://127.0.0.1.evil.test/jwks', false],
    ['http://localhost.evil.test/jwks', false],
    ['http://[::2]/jwks', false],
    ['file:///etc/jwks.json', false],
    ['not a url', false],
  ];
  for (const [url, trusted] of table) assert.equal(isTrustedKeyUrl(url), trusted, url);
  assert.throws(() => createRemoteJwks({ issuerId: 'x', jwksUri: 'http://idp.example.com/jwks', expectedIssuer: 'x', policy: POLICY }), /x: http:\/\/idp\.example\.com\/jwks must use https/);
  assert.throws(() => createRemoteJwks({ issuerId: 'x', expectedIssuer: 'x', policy: POLICY }), /a jwks_uri or a discovery URL is required/);
});

// ---------------------------------------------------------------------------------------------- reload

test('registry reload: an unchanged remote set is shared (no refetch) and survives closing the old registry', async () => {
  clock = T0;
  let keys: object[] = [a.publicJwk];
  const idp = serve(() => jwksAnswer(keys)());
  const config = issuerConfig({ jwksUri: idp.url });
  const first = await registryFor([config]);
  await first.start();
  assert.equal(idp.hits(), 1);

  // Audiences change, fetch settings do not: the set is shared.
  const second = await registryFor([{ ...config, audiences: ['api'] }], { previous: first });
  assert.equal(second.ready(), true, 'ready before start: the keys came along');
  await second.start();
  assert.equal(idp.hits(), 1, 'no refetch on reload');
  first.close();
  first.close(); // idempotent: must not release the shared set twice

  keys = [a.publicJwk, b.publicJwk];
  clock += POLICY.cooldownMs;
  const withAud = (signer: TestSigner) => signer.sign({ iss: 'https://idp.test', aud: 'api', exp: Math.floor(clock / 1000) + 60 });
  assert.equal(await codeOf(verifyToken(withAud(b), second, [], clock / 1000)), 'ok', 'the shared set still fetches after the old registry closed');
  assert.equal(idp.hits(), 2);

  // A fetch setting changes: a new set, fetched on start.
  const third = await registryFor([{ ...config, jwks: { ...POLICY, cooldownMs: 10_000 } }], { previous: second });
  await third.start();
  assert.equal(idp.hits(), 3);

  // Closing the last registry using the shared set closes it: it no longer fetches.
  second.close();
  clock += POLICY.cooldownMs;
  assert.equal(await codeOf(verifyToken(withAud(a), second, [], clock / 1000)), 'ok', 'known keys still verify');
  assert.equal(await codeOf(verifyToken(tokenOf(a, 'rotated-away'), second, [], clock / 1000)), 'ERR_TOKEN_KEY_UNKNOWN');
  assert.equal(idp.hits(), 3, 'a closed set does not fetch');
  assert.equal(await codeOf(verifyToken(tokenOf(a, 'rotated-away'), third, [], clock / 1000)), 'ERR_TOKEN_KEY_UNKNOWN');
  assert.equal(idp.hits(), 4, 'the new set fetches');
});
