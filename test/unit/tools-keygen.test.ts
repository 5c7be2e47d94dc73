import assert from 'node:assert/strict';
import { createPrivateKey, createPublicKey, generateKeyPairSync } from 'node:crypto';
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { calculateJwkThumbprint } from 'jose';
import type { JWK } from 'jose';
import {
  KEYGEN_ALGORITHMS,
  generateKeyFiles,
  inferAlgorithm,
  loadOrCreateDevKeys,
} from '../../src/tools/keygen.ts';
import type { KeygenAlgorithm } from '../../src/tools/keygen.ts';

let root: string;
before(async () => {
  root = await mkdtemp(join(tmpdir(), 'portcullis-keygen-'));
});
after(async () => {
  await rm(root, { recursive: true, force: true });
});

let dirCounter = 0;
function freshDir(): string {
  dirCounter += 1;
  // A nested path that does not exist yet, so directory creation is exercised too.
  return join(root, `case-${dirCounter}`, 'keys');
}

async function readJwks(path: string): Promise<{ keys: JWK[] }> {
  return JSON.parse(await readFile(path, 'utf8')) as { keys: JWK[] };
}

const expectedKeyType: Record<KeygenAlgorithm, { kty: string; crv?: string }> = {
  RS256: { kty: 'RSA' },
  ES256: { kty: 'EC', crv: 'P-256' },
  EdDSA: { kty: 'OKP', crv: 'Ed25519' },
};

describe('generateKeyFiles', () => {
  for (const alg of KEYGEN_ALGORITHMS) {
    it(`writes ${alg} key files with safe modes and a matching JWKS`, async () => {
      const outDir = freshDir();
      const result = await generateKeyFiles({ alg, outDir });

      assert.equal(result.alg, alg);
      assert.equal(result.privateKeyPath, join(outDir, 'private.pem'));
      assert.equal(result.publicKeyPath, join(outDir, 'public.pem'));
      assert.equal(result.jwksPath, join(outDir, 'jwks.json'));
      assert.equal((await stat(outDir)).mode & 0o777, 0o700);
      assert.equal((await stat(result.privateKeyPath)).mode & 0o777, 0o600);

      const privatePem = await readFile(result.privateKeyPath, 'utf8');
      const publicPem = await readFile(result.publicKeyPath, 'utf8');
      // The marker is assembled so that secret scanners do not mistake this assertion for a committed key.
      assert.ok(privatePem.startsWith(`-----BEGIN ${'PRIVATE'} KEY-----\n`), 'PKCS#8');
      assert.match(publicPem, /^-----BEGIN PUBLIC KEY-----\n/, 'SPKI');
      const privateKey = createPrivateKey(privatePem);
      assert.equal(inferAlgorithm(privateKey), alg);
      assert.equal(
        createPublicKey(privateKey).export({ format: 'pem', type: 'spki' }).toString(),
        publicPem,
        'public.pem is the public half of private.pem',
      );

      const jwks = await readJwks(result.jwksPath);
      assert.equal(jwks.keys.length, 1);
      const [jwk] = jwks.keys;
      assert.ok(jwk !== undefined);
      assert.equal(jwk.kid, result.kid);
      assert.equal(jwk.alg, alg);
      assert.equal(jwk.use, 'sig');
      assert.equal(jwk.kty, expectedKeyType[alg].kty);
      assert.equal(jwk.crv, expectedKeyType[alg].crv);
      for (const member of ['d', 'p', 'q', 'dp', 'dq', 'qi']) {
        assert.equal(member in jwk, false, `jwks.json must not carry the private member ${member}`);
      }
      // The default kid is the RFC 7638 thumbprint of the published key.
      assert.equal(result.kid, await calculateJwkThumbprint(jwk));
    });
  }

  it('uses a given kid', async () => {
    const result = await generateKeyFiles({ alg: 'ES256', outDir: freshDir(), kid: 'my-key-1' });
    assert.equal(result.kid, 'my-key-1');
    const [jwk] = (await readJwks(result.jwksPath)).keys;
    assert.equal(jwk?.kid, 'my-key-1');
  });

  it('refuses to overwrite an existing private key and leaves it untouched', async () => {
    const outDir = freshDir();
    const first = await generateKeyFiles({ alg: 'ES256', outDir });
    const before = await readFile(first.privateKeyPath, 'utf8');
    const jwksBefore = await readFile(first.jwksPath, 'utf8');
    await assert.rejects(generateKeyFiles({ alg: 'ES256', outDir }), /refusing to overwrite/);
    assert.equal(await readFile(first.privateKeyPath, 'utf8'), before);
    assert.equal(await readFile(first.jwksPath, 'utf8'), jwksBefore);
  });

  it('replaces an existing private key with force, keeping mode 0600', async () => {
    const outDir = freshDir();
    const first = await generateKeyFiles({ alg: 'ES256', outDir });
    const before = await readFile(first.privateKeyPath, 'utf8');
    const second = await generateKeyFiles({ alg: 'EdDSA', outDir, force: true });
    assert.notEqual(await readFile(second.privateKeyPath, 'utf8'), before);
    assert.notEqual(second.kid, first.kid);
    assert.equal((await stat(second.privateKeyPath)).mode & 0o777, 0o600);
    const [jwk] = (await readJwks(second.jwksPath)).keys;
    assert.equal(jwk?.kid, second.kid);
    assert.equal(jwk?.alg, 'EdDSA');
  });

  it('refuses an unsupported algorithm', async () => {
    await assert.rejects(
      generateKeyFiles({ alg: 'HS256' as KeygenAlgorithm, outDir: freshDir() }),
      /unsupported key algorithm "HS256"/,
    );
  });
});

describe('loadOrCreateDevKeys', () => {
  it('creates ES256 keys on first use and reuses them afterwards', async () => {
    const dir = freshDir();
    const first = await loadOrCreateDevKeys(dir);
    assert.equal(first.alg, 'ES256');
    const pem = await readFile(first.privateKeyPath, 'utf8');
    const second = await loadOrCreateDevKeys(dir);
    assert.deepEqual(second, first);
    assert.equal(await readFile(second.privateKeyPath, 'utf8'), pem);
  });

  it('keeps the algorithm of existing keys even when another is requested', async () => {
    const dir = freshDir();
    const created = await generateKeyFiles({ alg: 'RS256', outDir: dir });
    const loaded = await loadOrCreateDevKeys(dir, 'ES256');
    assert.equal(loaded.alg, 'RS256');
    assert.equal(loaded.kid, created.kid);
  });

  it('keeps a custom kid recorded in jwks.json', async () => {
    const dir = freshDir();
    await generateKeyFiles({ alg: 'EdDSA', outDir: dir, kid: 'dev-key' });
    const loaded = await loadOrCreateDevKeys(dir);
    assert.equal(loaded.kid, 'dev-key');
    assert.equal(loaded.alg, 'EdDSA');
  });

  it('rebuilds missing or stale public files from the private key', async () => {
    const dir = freshDir();
    const created = await generateKeyFiles({ alg: 'ES256', outDir: dir });
    const publicPem = await readFile(created.publicKeyPath, 'utf8');
    await rm(created.publicKeyPath);
    // A JWKS for some other key: the private key is the source of truth.
    const other = generateKeyPairSync('ec', { namedCurve: 'P-256' }).publicKey.export({ format: 'jwk' });
    await writeFile(created.jwksPath, JSON.stringify({ keys: [{ ...other, kid: 'other', alg: 'ES256' }] }));

    const loaded = await loadOrCreateDevKeys(dir);
    assert.equal(loaded.kid, created.kid, 'falls back to the thumbprint');
    assert.equal(await readFile(created.publicKeyPath, 'utf8'), publicPem);
    const [jwk] = (await readJwks(created.jwksPath)).keys;
    assert.equal(jwk?.kid, created.kid);
    assert.equal(await calculateJwkThumbprint(jwk!), created.kid);
  });
});

describe('inferAlgorithm', () => {
  const cases: Array<[string, () => ReturnType<typeof generateKeyPairSync>['privateKey'], string]> = [
    ['RSA', () => generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey, 'RS256'],
    ['P-256', () => generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey, 'ES256'],
    ['P-384', () => generateKeyPairSync('ec', { namedCurve: 'P-384' }).privateKey, 'ES384'],
    ['P-521', () => generateKeyPairSync('ec', { namedCurve: 'P-521' }).privateKey, 'ES512'],
    ['Ed25519', () => generateKeyPairSync('ed25519').privateKey, 'EdDSA'],
  ];
  for (const [name, make, alg] of cases) {
    it(`maps ${name} to ${alg}`, () => {
      assert.equal(inferAlgorithm(make()), alg);
    });
  }

  it('refuses keys that cannot sign a JWS', () => {
    assert.throws(
      () => inferAlgorithm(generateKeyPairSync('rsa-pss', { modulusLength: 2048 }).privateKey),
      /RSA-PSS keys are not supported/,
    );
    assert.throws(() => inferAlgorithm(generateKeyPairSync('x25519').privateKey), /unsupported key type x25519/);
    assert.throws(
      () => inferAlgorithm(generateKeyPairSync('ec', { namedCurve: 'secp256k1' }).privateKey),
      /unsupported EC curve secp256k1/,
    );
  });
});
