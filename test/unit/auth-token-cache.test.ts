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
import type { TokenVerifier } from '../../src/auth/token-cache.ts';
import type { VerifiedToken } from '../../src/auth/verify.ts';
import { ProxyError, isProxyError } from '../../src/errors.ts';
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

/** Verifies `token` until it is admitted (second success) and returns the cached result, proven a hit. */
async function cached(cache: TokenVerifier, token: string, issuers: readonly string[] = []): Promise<VerifiedToken> {
  await cache.verify(token, issuers);
  const admitted = await cache.verify(token, issuers);
  assert.equal(await cache.verify(token, issuers), admitted, 'the same object: served from the cache');
  return admitted;
}

test('a token is admitted on its second verification, then served without verifying; failures are never cached', async () => {
  const cache = createTokenVerifier(registry, { maxEntries: 10, maxTokenBytes: 4096, now });
  const token = await signerA.sign({ iss: ISS, exp: T0 + 60 });
  const first = await cache.verify(token, []);
  assert.equal(cache.size(), 0, 'a token seen once is not held');
  const second = await cache.verify(token, []);
  assert.notEqual(second, first, 'the second use is verified again, and admitted');
  assert.equal(await cache.verify(token, []), second, 'the third is a hit');
  const bad = token.slice(0, -4) + (token.endsWith('AAAA') ? 'BBBB' : 'AAAA');
  for (let i = 0; i < 3; i++) await assert.rejects(cache.verify(bad, []), code('ERR_TOKEN_SIGNATURE_INVALID'));
  assert.equal(cache.size(), 1);
});

test('tokens used once never enter the cache, so they cannot push out a reused one', async () => {
  const cache = createTokenVerifier(registry, { maxEntries: 2, maxTokenBytes: 4096, now });
  const hot = await signerA.sign({ iss: ISS, exp: T0 + 60, sub: 'hot' });
  const held = await cached(cache, hot);
  for (let i = 0; i < 20; i++) await cache.verify(await signerA.sign({ iss: ISS, exp: T0 + 60, n: i }), []);
  assert.equal(cache.size(), 1);
  assert.equal(await cache.verify(hot, []), held);
});

test('a token that shares a cached token\'s signature ending is verified on its own, and the cached one stays', async () => {
  const cache = createTokenVerifier(registry, { maxEntries: 10, maxTokenBytes: 4096, now });
  const token = await signerA.sign({ iss: ISS, exp: T0 + 60, sub: 'alice' });
  const held = await cached(cache, token);
  const [header, , signature] = token.split('.');
  const forged = `${header}.${Buffer.from(JSON.stringify({ iss: ISS, exp: T0 + 60, sub: 'mallory' })).toString('base64url')}.${signature}`;
  await assert.rejects(cache.verify(forged, []), code('ERR_TOKEN_SIGNATURE_INVALID'));
  assert.equal(await cache.verify(token, []), held, 'the genuine token is still served from the cache');
  assert.equal(cache.size(), 1);
});

test('check() answers without a promise while the key is at hand, and returns refusals rather than throwing them', async () => {
  const cache = createTokenVerifier(registry, { maxEntries: 10, maxTokenBytes: 4096, now });
  const token = await signerA.sign({ iss: ISS, exp: T0 + 60, sub: 'sync' });
  assert.ok(!(cache.check(token, []) instanceof Promise), 'a first verification with a known key is synchronous');
  const admitted = cache.check(token, []);
  assert.equal(cache.check(token, []), admitted, 'and a hit is synchronous too');
  const forged = token.slice(0, -4) + (token.endsWith('AAAA') ? 'BBBB' : 'AAAA');
  const expired = await signerA.sign({ iss: ISS, exp: T0 - 600 });
  // Refusals before the signature check (thrown inside, caught), after it (returned), and on a hit.
  for (const [label, refused, wanted, allowed] of [
    ['forged', forged, 'ERR_TOKEN_SIGNATURE_INVALID', []],
    ['malformed', 'not.a.jwt!', 'ERR_TOKEN_MALFORMED', []],
    ['expired', expired, 'ERR_TOKEN_EXPIRED', []],
    ['cached, issuer not allowed on the route', token, 'ERR_TOKEN_ISSUER_UNKNOWN', ['other']],
  ] as const) {
    const result = cache.check(refused, allowed);
    assert.ok(isProxyError(result), `${label}: returned as a ProxyError`);
    assert.equal(result.code, wanted, label);
    await assert.rejects(cache.verify(refused, allowed), code(wanted), `${label}: verify() rejects with it`);
  }
});

test('an entry never outlives exp', async () => {
  const cache = createTokenVerifier(registry, { maxEntries: 10, maxTokenBytes: 4096, now });
  const token = await signerA.sign({ iss: ISS, exp: T0 + 30 });
  await cached(cache, token);
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
  await cached(cache, token, ['a']);
  await assert.rejects(cache.verify(token, ['other']), code('ERR_TOKEN_ISSUER_UNKNOWN'));
});

test('bounded: the oldest entries go first; oversized tokens are not held', async () => {
  const cache = createTokenVerifier(registry, { maxEntries: 2, maxTokenBytes: 4096, now });
  const tokens = await Promise.all([1, 2, 3].map((i) => signerA.sign({ iss: ISS, exp: T0 + 60, n: i })));
  for (const t of tokens) await cached(cache, t);
  assert.equal(cache.size(), 2);
  const big = await signerA.sign({ iss: ISS, exp: T0 + 60, pad: 'x'.repeat(5000) });
  const small = createTokenVerifier(registry, { maxEntries: 10, maxTokenBytes: 4096, now });
  for (let i = 0; i < 3; i++) await small.verify(big, []);
  assert.equal(small.size(), 0);
});

test('bounded under churn: exactly the newest maxEntries tokens are held, in insertion order', async () => {
  const cache = createTokenVerifier(registry, { maxEntries: 3, maxTokenBytes: 4096, now });
  const tokens = await Promise.all([1, 2, 3, 4, 5, 6, 7].map((i) => signerA.sign({ iss: ISS, exp: T0 + 60, n: i })));
  const held = new Map<string, unknown>();
  for (const t of tokens) held.set(t, await cached(cache, t));
  assert.equal(cache.size(), 3);
  for (const t of tokens.slice(4)) assert.equal(await cache.verify(t, []), held.get(t), 'held: served from the cache');
  const again = await cache.verify(tokens[3]!, []);
  assert.notEqual(again, held.get(tokens[3]!), 'evicted: verified afresh (and admitted at once: the doorkeeper remembers it)');
  assert.equal(cache.size(), 3);
  // tokens[3] took the oldest slot (tokens[4]'s): 5 and 6 are still held, 4 is not.
  assert.equal(await cache.verify(tokens[5]!, []), held.get(tokens[5]!));
  assert.notEqual(await cache.verify(tokens[4]!, []), held.get(tokens[4]!));
});

test('a key withdrawn from the JWKS invalidates the tokens it verified', async () => {
  const cache = createTokenVerifier(registry, { maxEntries: 10, maxTokenBytes: 4096, now });
  const oldToken = await signerA.sign({ iss: ISS, exp: T0 + 60 });
  await cached(cache, oldToken);
  // The IdP rotates and withdraws key A; a token with the new kid makes the proxy refetch.
  published = [signerB.publicJwk];
  await cache.verify(await signerB.sign({ iss: ISS, exp: T0 + 60 }), []);
  await assert.rejects(cache.verify(oldToken, []), code('ERR_TOKEN_KEY_UNKNOWN'));
});
