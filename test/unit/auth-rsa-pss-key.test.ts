/**
 * PS256/384/512 are verified with an `rsa-pss` key derived from the RSA key (rsa-pss-key.ts) instead of
 * node's `{ padding: PSS, saltLength: RSA_PSS_SALTLEN_DIGEST }`. Two oracles: the AlgorithmIdentifier we
 * write must be byte for byte the one node writes for a generated rsa-pss key with the same parameters, and
 * every verdict, good signature or not, must be node's options path's verdict.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { constants, generateKeyPairSync, randomBytes, sign, verify } from 'node:crypto';
import type { KeyObject } from 'node:crypto';
import { deriveRsaPssKey, encodeAlgorithmIdentifier, getRsaPssKey } from '../../src/auth/rsa-pss-key.ts';
import type { PssHash } from '../../src/auth/rsa-pss-key.ts';
import { verifySignature } from '../../src/auth/signature.ts';
import { loadedKey } from '../helpers/keys.ts';

const CASES = [
  { alg: 'PS256', hash: 'sha256', bytes: 32 },
  { alg: 'PS384', hash: 'sha384', bytes: 48 },
  { alg: 'PS512', hash: 'sha512', bytes: 64 },
] as const;

const RSA_2048 = generateKeyPairSync('rsa', { modulusLength: 2048 });
const RSA_4096 = generateKeyPairSync('rsa', { modulusLength: 4096 });


/** node's verdict with the options object: what Portcullis did before the derived key. */
function nodeSays(hash: PssHash, data: Buffer, key: KeyObject, signature: Buffer): boolean {
  return verify(hash, data, { key, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: constants.RSA_PSS_SALTLEN_DIGEST }, signature);
}

function pssSign(hash: PssHash, data: Buffer, key: KeyObject, saltLength: number): Buffer {
  return sign(hash, data, { key, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength });
}

/** The first TLV inside a DER SEQUENCE: an SPKI's AlgorithmIdentifier. */
function firstElement(sequence: Buffer): Buffer {
  const header = (at: number): [number, number] => {
    const first = sequence[at + 1]!;
    if (first < 0x80) return [2, first];
    let n = 0;
    for (let i = 0; i < (first & 0x7f); i++) n = n * 256 + sequence[at + 2 + i]!;
    return [2 + (first & 0x7f), n];
  };
  const [outer] = header(0);
  const [inner, length] = header(outer);
  return sequence.subarray(outer, outer + inner + length);
}

for (const { alg, hash, bytes } of CASES) {
  test(`${alg}: the AlgorithmIdentifier is the one node writes for an rsa-pss key with ${hash}, MGF1 ${hash}, salt ${bytes}`, () => {
    // @types/node declares saltLength a string; node validates it as an integer.
    const saltLength = bytes as unknown as string;
    const generated = generateKeyPairSync('rsa-pss', { modulusLength: 1024, hashAlgorithm: hash, mgf1HashAlgorithm: hash, saltLength });
    const spki = generated.publicKey.export({ type: 'spki', format: 'der' });
    assert.deepEqual(encodeAlgorithmIdentifier(hash), firstElement(spki));
  });

  test(`${alg}: the derived key keeps the modulus and exponent and carries the JWS parameters`, () => {
    const derived = deriveRsaPssKey(RSA_2048.publicKey, hash);
    assert.equal(derived.asymmetricKeyType, 'rsa-pss');
    assert.deepEqual(derived.asymmetricKeyDetails, {
      ...RSA_2048.publicKey.asymmetricKeyDetails,
      hashAlgorithm: hash,
      mgf1HashAlgorithm: hash,
      saltLength: bytes,
    });
    // The SPKI's BIT STRING holds the RSAPublicKey (modulus, exponent): the source key's, byte for byte.
    const rsaPublicKey = RSA_2048.publicKey.export({ type: 'pkcs1', format: 'der' });
    assert.deepEqual(derived.export({ type: 'spki', format: 'der' }).subarray(-rsaPublicKey.length), rsaPublicKey);
  });

  for (const modulusLength of [2048, 4096]) {
    test(`${alg}, ${modulusLength}-bit key: same verdicts as node's options path, for every salt length and tampering`, () => {
      const { publicKey, privateKey } = modulusLength === 2048 ? RSA_2048 : RSA_4096;
      const key = loadedKey(publicKey);
      const data = randomBytes(300);
      const good = pssSign(hash, data, privateKey, bytes);
      assert.equal(verifySignature(data, good, key, alg), true);
      assert.equal(nodeSays(hash, data, publicKey, good), true);

      const others = [
        ...[0, 20, bytes - 1, bytes + 1, constants.RSA_PSS_SALTLEN_MAX_SIGN].map((salt) => pssSign(hash, data, privateKey, salt)),
        sign(hash, data, privateKey), // PKCS#1 v1.5, the RS algorithm's signature
        pssSign(hash === 'sha256' ? 'sha384' : 'sha256', data, privateKey, bytes), // another hash
        ...Array.from({ length: 8 }, (_, i) => {
          const tampered = Buffer.from(good);
          tampered[(i * 37) % tampered.length]! ^= 1 << i % 8;
          return tampered;
        }),
        randomBytes(modulusLength / 8),
        randomBytes(modulusLength / 8 - 1),
        Buffer.alloc(0),
      ];
      for (const signature of others) {
        assert.equal(nodeSays(hash, data, publicKey, signature), false);
        assert.equal(verifySignature(data, signature, key, alg), false);
      }
      // The derived key is for this data's signer only: another key's good signature fails.
      const other = generateKeyPairSync('rsa', { modulusLength: 2048 });
      assert.equal(verifySignature(data, pssSign(hash, data, other.privateKey, bytes), key, alg), false);
    });
  }
}

test('getRsaPssKey derives once per key and hash, and each derived key verifies its own hash only', () => {
  const { publicKey, privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const a = getRsaPssKey(publicKey, 'sha256');
  assert.equal(getRsaPssKey(publicKey, 'sha256'), a);
  const b = getRsaPssKey(publicKey, 'sha384');
  assert.notEqual(b, a);
  assert.equal(getRsaPssKey(publicKey, 'sha256'), a, 'a second hash keeps the first');
  assert.equal(getRsaPssKey(publicKey, 'sha384'), b);
  assert.equal(b.asymmetricKeyDetails?.hashAlgorithm, 'sha384');
  const data = randomBytes(100);
  const ps384 = pssSign('sha384', data, privateKey, 48);
  assert.equal(verifySignature(data, ps384, loadedKey(publicKey), 'PS384'), true);
  assert.equal(verifySignature(data, ps384, loadedKey(publicKey), 'PS256'), false);
});

test('a key that is not RSA cannot be derived, and PS verification with it is refused without throwing', () => {
  const ec = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  assert.throws(() => getRsaPssKey(ec.publicKey, 'sha256'));
  assert.equal(verifySignature(randomBytes(32), randomBytes(256), loadedKey(ec.publicKey), 'PS256'), false);
});
