/**
 * The lean reference the bench measures Portcullis against must be a correct check, or "≥ 0.95× lean" would
 * compare against something that skips work: it accepts the bench's valid tokens of every algorithm and
 * refuses forged signatures, another algorithm, and wrong exp, iss or aud.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { createPrivateKey, createPublicKey, sign } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createLeanAuthenticator } from '../../bench/contestants/lean-auth.ts';
import { ALGS, AUDIENCE, ISSUER, forgeOne, generateKeys, mintOne } from '../../bench/lib/tokens.ts';
import type { BenchKey } from '../../bench/lib/tokens.ts';

const dir = mkdtempSync(join(tmpdir(), 'portcullis-lean-auth-'));
after(() => rmSync(dir, { recursive: true, force: true }));
const { keys } = generateKeys(dir);

const leanFor = (key: BenchKey, over: { issuer?: string; audience?: string } = {}) =>
  createLeanAuthenticator({ alg: key.alg, key: createPublicKey(key.privatePem), issuer: over.issuer ?? ISSUER, audience: over.audience ?? AUDIENCE });

/** A token of `key` with the bench's header and these claims, signed as the bench signs. */
function signed(key: BenchKey, claims: Record<string, unknown>): string {
  const input = `${Buffer.from(JSON.stringify({ alg: key.alg, typ: 'JWT', kid: key.kid })).toString('base64url')}.${Buffer.from(JSON.stringify(claims)).toString('base64url')}`;
  const privateKey = createPrivateKey(key.privatePem);
  const signature =
    key.alg === 'EdDSA' ? sign(null, Buffer.from(input), privateKey) : sign('sha256', Buffer.from(input), key.alg === 'ES256' ? { key: privateKey, dsaEncoding: 'ieee-p1363' } : privateKey);
  return `${input}.${signature.toString('base64url')}`;
}

for (const alg of ALGS) {
  test(`${alg}: valid tokens pass; forged signatures fail`, () => {
    const lean = leanFor(keys[alg]);
    const claims = lean(`Bearer ${mintOne(keys[alg], 7, 60)}`);
    assert.equal(claims?.sub, 'user-0000007');
    assert.equal(lean(`Bearer ${forgeOne(keys[alg], 8, 60)}`), undefined);
  });
}

test('another algorithm, key, expiry, issuer, audience or a missing Bearer prefix fail', () => {
  const rs = keys.RS256;
  const lean = leanFor(rs);
  const now = Math.floor(Date.now() / 1000);
  const good = { iss: ISSUER, aud: AUDIENCE, exp: now + 60 };
  assert.ok(lean(`Bearer ${signed(rs, good)}`));
  assert.ok(lean(`Bearer ${signed(rs, { ...good, aud: ['other', AUDIENCE] })}`), 'aud as a list');
  assert.equal(lean(`Bearer ${signed(keys.ES256, good)}`), undefined, 'ES256 where RS256 is configured');
  assert.equal(lean(`Bearer ${signed(rs, { ...good, exp: now - 1 })}`), undefined, 'expired');
  assert.equal(lean(`Bearer ${signed(rs, { iss: ISSUER, aud: AUDIENCE })}`), undefined, 'no exp');
  assert.equal(lean(`Bearer ${signed(rs, { ...good, iss: 'https://other.test' })}`), undefined, 'iss');
  assert.equal(lean(`Bearer ${signed(rs, { ...good, aud: 'other' })}`), undefined, 'aud');
  assert.equal(lean(signed(rs, good)), undefined, 'no Bearer prefix');
  assert.equal(lean(undefined), undefined);
  assert.equal(lean('Bearer a.b'), undefined, 'two segments');
  assert.equal(lean('Bearer !!.??.x'), undefined, 'header and payload not JSON');
});
