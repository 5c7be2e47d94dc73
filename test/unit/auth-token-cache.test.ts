/**
 * The verified-token cache never answers differently from a fresh verification: expiry, key withdrawal and
 * route issuer restrictions are re-checked on every hit; failures are not cached; size is bounded.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import { once } from 'node:events';
import type { AddressInfo } from 'node:net';
import { createIssuerRegistry } from '../../src/auth/issuers.ts';
import { createTokenVerifier } from '../../src/auth/token-cache.ts';
import { ProxyError } from '../../src/errors.ts';
import type { IssuerConfig } from '../../src/config/types.ts';
import { createTestSigner } from '../helpers/keys.ts';
import { TEST_JWKS_POLICY, testIssuerConfig } from '../helpers/config.ts';

const ISS = 'https://cache.idp.test';
const T0 = 1_900_000_000; // seconds
let clock = T0 * 1000;
const now = () => clock;

function issuer(id: string, iss: string, jwksUri: string): IssuerConfig {
  return testIssuerConfig({ id, issuer: iss, algorithms: ['ES256'], jwksUri, jwks: { ...TEST_JWKS_POLICY, cooldownMs: 0 } });
}

const code = (c: string) => (e: unknown) => e instanceof ProxyError && e.code === c;

const signerA = await createTestSigner('ES256');
const signerB = await createTestSigner('ES256');
let published = [signerA.publicJwk];
const server = createServer((_req, res) => {
  res.writeHead(200, { 'content-type': 'application/json' });
  res.end(JSON.stringify({ keys: published }));
});
server.listen(0, '127.0.0.1');
await once(server, 'listening');
const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/jwks`;
const registry = await createIssuerRegistry([issuer('a', ISS, url), issuer('other', 'https://other.test', url)], { now });
await registry.start();
after(() => {
  registry.close();
  server.close();
});

test('a hit returns the verified result without verifying again; failures are never cached', async () => {
  const cache = createTokenVerifier(registry, { maxEntries: 10, maxTokenBytes: 4096, now });
  const token = await signerA.sign({ iss: ISS, exp: T0 + 60 });
  const first = await cache.verify(token, []);
  assert.equal(await cache.verify(token, []), first, 'the same object: served from the cache');
  const bad = token.slice(0, -4) + (token.endsWith('AAAA') ? 'BBBB' : 'AAAA');
  await assert.rejects(cache.verify(bad, []), code('ERR_TOKEN_SIGNATURE_INVALID'));
  await assert.rejects(cache.verify(bad, []), code('ERR_TOKEN_SIGNATURE_INVALID'));
  assert.equal(cache.size(), 1);
});

test('a token that shares a cached token\'s signature ending is verified on its own, and the cached one stays', async () => {
  const cache = createTokenVerifier(registry, { maxEntries: 10, maxTokenBytes: 4096, now });
  const token = await signerA.sign({ iss: ISS, exp: T0 + 60, sub: 'alice' });
  const first = await cache.verify(token, []);
  const [header, , signature] = token.split('.');
  const forged = `${header}.${Buffer.from(JSON.stringify({ iss: ISS, exp: T0 + 60, sub: 'mallory' })).toString('base64url')}.${signature}`;
  await assert.rejects(cache.verify(forged, []), code('ERR_TOKEN_SIGNATURE_INVALID'));
  assert.equal(await cache.verify(token, []), first, 'the genuine token is still served from the cache');
  assert.equal(cache.size(), 1);
});

test('check() answers without a promise while the key is at hand: a hit, a fresh verification, a forged token', async () => {
  const cache = createTokenVerifier(registry, { maxEntries: 10, maxTokenBytes: 4096, now });
  const token = await signerA.sign({ iss: ISS, exp: T0 + 60, sub: 'sync' });
  const fresh = cache.check(token, []);
  assert.ok(!(fresh instanceof Promise), 'a first verification with a known key is synchronous');
  assert.equal(cache.check(token, []), fresh, 'and the next one is a synchronous hit');
  const forged = token.slice(0, -4) + (token.endsWith('AAAA') ? 'BBBB' : 'AAAA');
  assert.throws(() => cache.check(forged, []), code('ERR_TOKEN_SIGNATURE_INVALID'));
  assert.throws(() => cache.check('not.a.jwt!', []), code('ERR_TOKEN_MALFORMED'));
});

test('an entry never outlives exp', async () => {
  const cache = createTokenVerifier(registry, { maxEntries: 10, maxTokenBytes: 4096, now });
  const token = await signerA.sign({ iss: ISS, exp: T0 + 30 });
  await cache.verify(token, []);
  clock = (T0 + 30) * 1000;
  try {
    await assert.rejects(cache.verify(token, []), code('ERR_TOKEN_EXPIRED'));
  } finally {
    clock = T0 * 1000;
  }
});

test('the route issuer restriction is checked on hits too', async () => {
  const cache = createTokenVerifier(registry, { maxEntries: 10, maxTokenBytes: 4096, now });
  const token = await signerA.sign({ iss: ISS, exp: T0 + 60 });
  await cache.verify(token, ['a']);
  await assert.rejects(cache.verify(token, ['other']), code('ERR_TOKEN_ISSUER_UNKNOWN'));
});

test('bounded: the oldest entries go first; oversized tokens are not held', async () => {
  const cache = createTokenVerifier(registry, { maxEntries: 2, maxTokenBytes: 4096, now });
  const tokens = await Promise.all([1, 2, 3].map((i) => signerA.sign({ iss: ISS, exp: T0 + 60, n: i })));
  for (const t of tokens) await cache.verify(t, []);
  assert.equal(cache.size(), 2);
  const big = await signerA.sign({ iss: ISS, exp: T0 + 60, pad: 'x'.repeat(5000) });
  const small = createTokenVerifier(registry, { maxEntries: 10, maxTokenBytes: 4096, now });
  await small.verify(big, []);
  assert.equal(small.size(), 0);
});

test('bounded under churn: exactly the newest maxEntries tokens are held, in insertion order', async () => {
  const cache = createTokenVerifier(registry, { maxEntries: 3, maxTokenBytes: 4096, now });
  const tokens = await Promise.all([1, 2, 3, 4, 5, 6, 7].map((i) => signerA.sign({ iss: ISS, exp: T0 + 60, n: i })));
  const first = new Map<string, unknown>();
  for (const t of tokens) first.set(t, await cache.verify(t, []));
  assert.equal(cache.size(), 3);
  for (const t of tokens.slice(4)) assert.equal(await cache.verify(t, []), first.get(t), 'held: served from the cache');
  const again = await cache.verify(tokens[3]!, []);
  assert.notEqual(again, first.get(tokens[3]!), 'evicted: verified afresh');
  assert.equal(cache.size(), 3);
  // tokens[3] took the oldest slot (tokens[4]'s): 5 and 6 are still held, 4 is not.
  assert.equal(await cache.verify(tokens[5]!, []), first.get(tokens[5]!));
  assert.notEqual(await cache.verify(tokens[4]!, []), first.get(tokens[4]!));
});

test('a key withdrawn from the JWKS invalidates the tokens it verified', async () => {
  const cache = createTokenVerifier(registry, { maxEntries: 10, maxTokenBytes: 4096, now });
  const oldToken = await signerA.sign({ iss: ISS, exp: T0 + 60 });
  await cache.verify(oldToken, []);
  // The IdP rotates and withdraws key A; a token with the new kid makes the proxy refetch.
  published = [signerB.publicJwk];
  await cache.verify(await signerB.sign({ iss: ISS, exp: T0 + 60 }), []);
  await assert.rejects(cache.verify(oldToken, []), code('ERR_TOKEN_KEY_UNKNOWN'));
});
