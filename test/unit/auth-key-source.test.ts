/**
 * Key selection and the key-alg binding (the key-confusion defence): which key a header may get, decided
 * by the key's type, curve, size and declared alg — never by the token.
 */
import { before, test } from 'node:test';
import assert from 'node:assert/strict';
import { createSecretKey, generateKeyPairSync } from 'node:crypto';
import type { KeyObject } from 'node:crypto';
import { keyFitsAlgorithm, SUPPORTED_ALGORITHMS } from '../../src/auth/algorithms.ts';
import { createKeySource, pickKey } from '../../src/auth/key-source.ts';
import type { LoadedKey } from '../../src/auth/static-keys.ts';
import { isProxyError } from '../../src/errors.ts';
import { loadedKey } from '../helpers/keys.ts';


const KEYS: Record<string, KeyObject> = {};

before(() => {
  KEYS.rsa2048 = generateKeyPairSync('rsa', { modulusLength: 2048 }).publicKey;
  KEYS.rsa1024 = generateKeyPairSync('rsa', { modulusLength: 1024 }).publicKey;
  KEYS.p256 = generateKeyPairSync('ec', { namedCurve: 'P-256' }).publicKey;
  KEYS.p384 = generateKeyPairSync('ec', { namedCurve: 'P-384' }).publicKey;
  KEYS.p521 = generateKeyPairSync('ec', { namedCurve: 'P-521' }).publicKey;
  KEYS.ed25519 = generateKeyPairSync('ed25519').publicKey;
  KEYS.ed448 = generateKeyPairSync('ed448').publicKey;
  KEYS.secret32 = createSecretKey(Buffer.alloc(32, 1));
  KEYS.secret48 = createSecretKey(Buffer.alloc(48, 1));
  KEYS.secret64 = createSecretKey(Buffer.alloc(64, 1));
});

/** For each key, the algorithms it may verify; every other supported alg must be refused. */
const BINDING: [string, string[]][] = [
  ['rsa2048', ['RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512']],
  ['rsa1024', []],
  ['p256', ['ES256']],
  ['p384', ['ES384']],
  ['p521', ['ES512']],
  ['ed25519', ['EdDSA', 'Ed25519']],
  ['ed448', []],
  ['secret32', ['HS256']],
  ['secret48', ['HS256', 'HS384']],
  ['secret64', ['HS256', 'HS384', 'HS512']],
];

test('keyFitsAlgorithm: each key type verifies exactly its own algorithms', () => {
  for (const [name, allowed] of BINDING) {
    for (const alg of [...SUPPORTED_ALGORITHMS, 'none', 'HS1', 'RS1', 'ES256K']) {
      assert.equal(keyFitsAlgorithm({ key: KEYS[name]!, alg: undefined }, alg), allowed.includes(alg), `${name} with ${alg}`);
    }
  }
});

test('keyFitsAlgorithm: a declared alg binds the key to that one alg', () => {
  assert.equal(keyFitsAlgorithm({ key: KEYS.rsa2048!, alg: 'PS256' }, 'PS256'), true);
  assert.equal(keyFitsAlgorithm({ key: KEYS.rsa2048!, alg: 'PS256' }, 'RS256'), false);
  assert.equal(keyFitsAlgorithm({ key: KEYS.ed25519!, alg: 'EdDSA' }, 'Ed25519'), false);
  assert.equal(keyFitsAlgorithm({ key: KEYS.secret64!, alg: 'HS512' }, 'HS256'), false);
});

interface PickCase {
  readonly name: string;
  readonly keys: () => LoadedKey[];
  readonly header: { alg: string; kid?: string };
  /** kid of the key expected, or `ambiguous:<n>` / `none`. */
  readonly want: string;
}

const PICKS: PickCase[] = [
  { name: 'by kid', keys: () => [loadedKey(KEYS.rsa2048!, 'a'), loadedKey(KEYS.rsa2048!, 'b')], header: { alg: 'RS256', kid: 'b' }, want: 'b' },
  { name: 'kid of a key of another family is not used (HS256 with the RSA kid)', keys: () => [loadedKey(KEYS.rsa2048!, 'a')], header: { alg: 'HS256', kid: 'a' }, want: 'none' },
  { name: 'kid of a key whose declared alg differs', keys: () => [loadedKey(KEYS.rsa2048!, 'a', 'RS256')], header: { alg: 'PS256', kid: 'a' }, want: 'none' },
  { name: 'ES384 never gets a P-256 key with the right kid', keys: () => [loadedKey(KEYS.p256!, 'e')], header: { alg: 'ES384', kid: 'e' }, want: 'none' },
  { name: 'no kid, one key of the family', keys: () => [loadedKey(KEYS.rsa2048!, 'a'), loadedKey(KEYS.p256!, 'e')], header: { alg: 'ES256' }, want: 'e' },
  { name: 'no kid, two keys of the family: ambiguous', keys: () => [loadedKey(KEYS.rsa2048!, 'a'), loadedKey(KEYS.rsa2048!, 'b')], header: { alg: 'RS256' }, want: 'ambiguous:2' },
  { name: 'unknown kid falls back to the single key without kid', keys: () => [loadedKey(KEYS.rsa2048!, 'a'), loadedKey(KEYS.p256!)], header: { alg: 'ES256', kid: 'zz' }, want: 'undefined' },
  { name: 'unknown kid does not fall back to a key that has another kid', keys: () => [loadedKey(KEYS.p256!, 'e')], header: { alg: 'ES256', kid: 'zz' }, want: 'none' },
  { name: 'duplicate kid of the same family: ambiguous', keys: () => [loadedKey(KEYS.rsa2048!, 'a'), loadedKey(KEYS.rsa2048!, 'a')], header: { alg: 'RS256', kid: 'a' }, want: 'ambiguous:2' },
  { name: 'same kid on two families is resolved by alg', keys: () => [loadedKey(KEYS.rsa2048!, 'a'), loadedKey(KEYS.secret32!, 'a')], header: { alg: 'HS256', kid: 'a' }, want: 'a:secret' },
];

for (const c of PICKS) {
  test(`pickKey: ${c.name}`, () => {
    const pick = pickKey(c.keys(), c.header);
    const got =
      pick.found !== undefined
        ? `${String(pick.found.kid)}${c.want.endsWith(':secret') ? `:${pick.found.kind}` : ''}`
        : pick.ambiguous > 1
          ? `ambiguous:${pick.ambiguous}`
          : 'none';
    assert.equal(got, c.want);
  });
}

test('createKeySource: remembered picks answer exactly as pickKey for any sequence of headers', () => {
  const keys = [loadedKey(KEYS.rsa2048!, 'a'), loadedKey(KEYS.rsa2048!, 'b'), loadedKey(KEYS.secret32!, 'a'), loadedKey(KEYS.p256!)];
  const source = createKeySource({ staticKeys: keys });
  // Repeats, alg switches under one kid, kid present then absent: each must not reuse the previous pick.
  const sequence = [
    { alg: 'RS256', kid: 'a' }, { alg: 'RS256', kid: 'a' }, { alg: 'HS256', kid: 'a' }, { alg: 'RS256', kid: 'a' },
    { alg: 'RS256', kid: 'b' }, { alg: 'ES256' }, { alg: 'ES256', kid: 'zz' }, { alg: 'ES256' }, { alg: 'RS256', kid: 'a' },
  ];
  for (const [i, header] of sequence.entries()) {
    const got = source.getKey(header);
    assert.ok(!(got instanceof Promise));
    assert.equal(got, pickKey(keys, header).found, `step ${i}: ${JSON.stringify(header)}`);
  }
  assert.throws(() => source.getKey({ alg: 'RS256', kid: 'zz' }), (error) => isProxyError(error) && error.code === 'ERR_TOKEN_KEY_UNKNOWN');
  assert.equal(source.getKey({ alg: 'RS256', kid: 'b' }), keys[1]);
});

test('createKeySource (static only): ready, synchronous hits, KEY_UNKNOWN with a detail for misses', () => {
  const source = createKeySource({ staticKeys: [loadedKey(KEYS.rsa2048!, 'a'), loadedKey(KEYS.rsa2048!, 'b')] });
  assert.deepEqual(source.status(), { ready: true, keyCount: 2, lastSuccessAt: undefined, lastError: undefined, kids: ['a', 'b'] });
  const hit = source.getKey({ alg: 'RS256', kid: 'a' });
  assert.ok(!(hit instanceof Promise), 'a known key is returned synchronously');
  assert.equal(hit.kid, 'a');
  for (const header of [{ alg: 'RS256', kid: 'zz' }, { alg: 'RS256' }, { alg: 'HS256', kid: 'a' }]) {
    assert.throws(
      () => source.getKey(header),
      (error) => isProxyError(error) && error.code === 'ERR_TOKEN_KEY_UNKNOWN' && typeof error.detail === 'string',
      JSON.stringify(header),
    );
  }
  assert.equal(createKeySource({ staticKeys: [] }).status().ready, false);
});
