/**
 * The issuer registry over static keys: lookup by exact iss and by id, readiness, load errors naming the
 * issuer, and reloads re-reading key files (a reload is often made because a key file changed).
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { IssuerConfig, JwksPolicy } from '../../src/config/types.ts';
import { createIssuerRegistry } from '../../src/auth/issuers.ts';
import { verifyToken } from '../../src/auth/verify.ts';
import { isProxyError } from '../../src/errors.ts';
import { createTestSigner } from '../helpers/keys.ts';
import type { TestSigner } from '../helpers/keys.ts';
import { TEST_JWKS_POLICY, testIssuerConfig } from '../helpers/config.ts';

const POLICY: JwksPolicy = { ...TEST_JWKS_POLICY, timeoutMs: 1000, retryAfterSeconds: 5, maxBytes: 65_536 };
const NOW = 1_700_000_000;

let dir: string;
let one: TestSigner;
let two: TestSigner;

function config(id: string, iss: string, over: Partial<IssuerConfig> = {}): IssuerConfig {
  return testIssuerConfig({ id, issuer: iss, algorithms: ['ES256'], jwks: POLICY, ...over });
}

function pemFile(name: string, signer: TestSigner): { kind: 'pem_file'; path: string } {
  const path = join(dir, name);
  writeFileSync(path, signer.publicPem);
  return { kind: 'pem_file', path };
}

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'portcullis-issuers-'));
  [one, two] = await Promise.all([createTestSigner('ES256'), createTestSigner('ES256')]);
});

after(() => rmSync(dir, { recursive: true, force: true }));

test('lookup by exact iss and by id; list keeps config order; ready when every issuer has keys', async () => {
  const registry = await createIssuerRegistry([
    config('x', 'https://x.test', { staticKeys: [pemFile('x.pem', one)] }),
    config('y', 'https://y.test/', { staticKeys: [pemFile('y.pem', two)] }),
  ]);
  assert.equal(registry.byIssuer('https://x.test')?.config.id, 'x');
  assert.equal(registry.byIssuer('https://y.test/')?.config.id, 'y');
  for (const iss of ['https://y.test', 'https://X.test', 'https://x.test/', ' https://x.test', '']) {
    assert.equal(registry.byIssuer(iss), undefined, iss);
  }
  assert.equal(registry.byId('y')?.config.issuer, 'https://y.test/');
  assert.equal(registry.byId('z'), undefined);
  assert.deepEqual(registry.list().map((i) => i.config.id), ['x', 'y']);
  assert.ok(Object.isFrozen(registry.list()) && Object.isFrozen(registry.byId('x')));
  assert.equal(registry.ready(), true);
  await registry.start();
  registry.close();
  registry.close();
});

test('an issuer without any key is not ready', async () => {
  const registry = await createIssuerRegistry([
    config('x', 'https://x.test', { staticKeys: [pemFile('x2.pem', one)] }),
    config('empty', 'https://empty.test'),
  ]);
  assert.equal(registry.ready(), false);
  registry.close();
});

test('load errors name the issuer', async () => {
  await assert.rejects(
    createIssuerRegistry([config('a', 'https://same.test'), config('b', 'https://same.test')]),
    /issuer b: iss https:\/\/same\.test is already used by issuer a/,
  );
  await assert.rejects(
    createIssuerRegistry([config('k', 'https://k.test', { staticKeys: [{ kind: 'hmac_env', name: 'MISSING' }] })], { env: {} }),
    /issuer k: env:MISSING: environment variable MISSING is not set/,
  );
  await assert.rejects(
    createIssuerRegistry([config('u', 'https://u.test', { jwksUri: 'http://idp.example.com/jwks' })]),
    /issuer u: http:\/\/idp\.example\.com\/jwks must use https/,
  );
});

test('a reload re-reads static key files even when the config is unchanged', async () => {
  const spec = pemFile('rotating.pem', one);
  const cfg = config('r', 'https://r.test', { staticKeys: [spec] });
  const before = await createIssuerRegistry([cfg]);
  writeFileSync(spec.path, two.publicPem); // the operator rotates the key, then reloads
  const reloaded = await createIssuerRegistry([cfg], { previous: before });
  before.close();
  const claims = { iss: 'https://r.test', exp: NOW + 60 };
  await verifyToken(two.sign(claims), reloaded, [], NOW);
  await assert.rejects(verifyToken(one.sign(claims), reloaded, [], NOW), (error) => isProxyError(error) && error.code === 'ERR_TOKEN_SIGNATURE_INVALID');
  reloaded.close();
});
