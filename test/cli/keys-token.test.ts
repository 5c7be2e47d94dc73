import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createLocalJWKSet, jwtVerify } from 'jose';
import { runCli } from '../helpers/cli.ts';

let dir: string;
before(() => {
  dir = mkdtempSync(join(tmpdir(), 'pc-cli-keys-'));
});
after(() => rmSync(dir, { recursive: true, force: true }));

for (const alg of ['RS256', 'ES256', 'EdDSA'] as const) {
  test(`keys generate --alg ${alg} then token mint: the token verifies against the written JWKS`, async () => {
    const out = join(dir, alg);
    const gen = await runCli(['keys', 'generate', '--alg', alg, '--out', out]);
    assert.equal(gen.code, 0, gen.stderr);
    assert.equal(statSync(join(out, 'private.pem')).mode & 0o777, 0o600);
    const jwks = JSON.parse(readFileSync(join(out, 'jwks.json'), 'utf8')) as { keys: Array<{ kid?: string; d?: string }> };
    assert.equal(jwks.keys.length, 1);
    assert.ok(jwks.keys[0]!.kid);
    assert.equal(jwks.keys[0]!.d, undefined, 'the JWKS holds no private member');

    const mint = await runCli([
      'token', 'mint', '--key', join(out, 'private.pem'), '--iss', 'https://dev', '--aud', 'api', '--sub', 'alice',
      '--claim', 'env=staging', '--claim', 'realm_access.roles=["reader","writer"]', '--claim', '[https://example.com/tenant]=acme', '--ttl', '10m',
    ]);
    assert.equal(mint.code, 0, mint.stderr);
    const token = mint.stdout.trim();
    const { payload, protectedHeader } = await jwtVerify(token, createLocalJWKSet(jwks as never), { issuer: 'https://dev', audience: 'api' });
    assert.equal(protectedHeader.kid, jwks.keys[0]!.kid);
    assert.equal(payload.sub, 'alice');
    assert.equal(payload.env, 'staging');
    assert.deepEqual(payload.realm_access, { roles: ['reader', 'writer'] });
    assert.equal(payload['https://example.com/tenant'], 'acme');
    assert.ok(payload.exp! - payload.iat! === 600);
  });
}

test('keys generate refuses to overwrite a private key and rejects an unknown alg', async () => {
  const out = join(dir, 'once');
  assert.equal((await runCli(['keys', 'generate', '--alg', 'ES256', '--out', out])).code, 0);
  const again = await runCli(['keys', 'generate', '--alg', 'ES256', '--out', out]);
  assert.notEqual(again.code, 0);
  assert.match(again.stderr, /exist/i);
  const bad = await runCli(['keys', 'generate', '--alg', 'none', '--out', join(dir, 'x')]);
  assert.equal(bad.code, 2);
});

test('token mint rejects bad arguments with exit 2', async () => {
  const secret = join(dir, 'secret');
  writeFileSync(secret, 'x'.repeat(40) + '\n');
  const noKey = await runCli(['token', 'mint', '--iss', 'a']);
  assert.equal(noKey.code, 2);
  const badTtl = await runCli(['token', 'mint', '--secret-file', secret, '--iss', 'a', '--ttl', 'forever']);
  assert.equal(badTtl.code, 2);
  assert.match(badTtl.stderr, /invalid duration/);
  const ok = await runCli(['token', 'mint', '--secret-file', secret, '--iss', 'a']);
  assert.equal(ok.code, 0, ok.stderr);
  const { payload } = await jwtVerify(ok.stdout.trim(), new TextEncoder().encode('x'.repeat(40)), { issuer: 'a' });
  assert.equal(payload.iss, 'a');
});
