/**
 * verifySignature for ECDSA re-encodes JWS' r || s as DER and hands OpenSSL the bare key. node's own
 * `dsaEncoding: 'ieee-p1363'` is the oracle: for every signature, good or forged, both must agree. OpenSSL
 * refuses DER that is not canonical, so valid signatures passing proves the encoding minimal.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { generateKeyPairSync, randomBytes, sign, verify } from 'node:crypto';
import type { KeyObject } from 'node:crypto';
import { p1363ToDer, verifySignature } from '../../src/auth/signature.ts';
import { loadedKey } from '../helpers/keys.ts';

const CASES = [
  { alg: 'ES256', curve: 'P-256', hash: 'sha256', size: 32 },
  { alg: 'ES384', curve: 'P-384', hash: 'sha384', size: 48 },
  { alg: 'ES512', curve: 'P-521', hash: 'sha512', size: 66 },
] as const;


function nodeSays(hash: string, data: Buffer, key: KeyObject, signature: Buffer): boolean {
  return verify(hash, data, { key, dsaEncoding: 'ieee-p1363' }, signature);
}

for (const { alg, curve, hash, size } of CASES) {
  test(`${alg}: valid signatures verify, including r or s with leading zeros or the top bit set`, () => {
    const { publicKey, privateKey } = generateKeyPairSync('ec', { namedCurve: curve });
    const key = loadedKey(publicKey);
    // P-521's order is 521 bits, so its first byte is 0 or 1: no top bit, leading zeros common. A zero
    // first byte comes once in 256 signatures: 6000 draws miss one with a probability of about 1e-10.
    const wanted = new Set(['r00', 's00', ...(size === 66 ? [] : ['r80', 's80'])]);
    const seen = new Set<string>();
    for (let i = 0; i < 6000 && (i < 50 || [...wanted].some((w) => !seen.has(w))); i++) {
      const data = randomBytes(64);
      const signature = sign(hash, data, { key: privateKey, dsaEncoding: 'ieee-p1363' });
      if (signature[0] === 0) seen.add('r00');
      if (signature[size] === 0) seen.add('s00');
      if (signature[0]! >= 0x80) seen.add('r80');
      if (signature[size]! >= 0x80) seen.add('s80');
      assert.equal(verifySignature(data, signature, key, alg), true, `signature ${signature.toString('hex')}`);
      const tampered = Buffer.from(signature);
      tampered[i % tampered.length]! ^= 1;
      assert.equal(verifySignature(data, tampered, key, alg), nodeSays(hash, data, publicKey, tampered));
    }
    for (const w of wanted) assert.ok(seen.has(w), `no signature with ${w} was drawn`);
  });

  test(`${alg}: forged shapes are refused as node refuses them, without throwing`, () => {
    const { publicKey } = generateKeyPairSync('ec', { namedCurve: curve });
    const key = loadedKey(publicKey);
    const data = randomBytes(64);
    const forged = [
      Buffer.alloc(2 * size), // r = s = 0
      Buffer.alloc(2 * size, 0xff), // r, s at or above the order, top bit set
      Buffer.concat([Buffer.alloc(size - 1), Buffer.from([1]), Buffer.alloc(size - 1), Buffer.from([1])]), // r = s = 1
      randomBytes(2 * size),
      randomBytes(2 * size - 1),
      randomBytes(2 * size + 1),
      Buffer.alloc(0),
    ];
    for (const signature of forged) {
      assert.equal(verifySignature(data, signature, key, alg), false);
      assert.equal(nodeSays(hash, data, publicKey, signature), false);
    }
  });
}

test('p1363ToDer: minimal INTEGERs, a sign byte where the top bit is set, long-form length past 127 bytes', () => {
  const r = Buffer.concat([Buffer.from([0, 0, 0x7f]), Buffer.alloc(29, 1)]);
  const s = Buffer.concat([Buffer.from([0x80]), Buffer.alloc(31, 2)]);
  const der = p1363ToDer(Buffer.concat([r, s]), 32)!;
  assert.deepEqual(
    der,
    Buffer.concat([Buffer.from([0x30, 2 + 30 + 2 + 33, 0x02, 30]), r.subarray(2), Buffer.from([0x02, 33, 0x00]), s]),
  );
  assert.deepEqual(p1363ToDer(Buffer.alloc(64), 32), Buffer.from([0x30, 6, 0x02, 1, 0, 0x02, 1, 0]));
  const wide = p1363ToDer(Buffer.alloc(132, 0xff), 66)!;
  assert.deepEqual(wide.subarray(0, 6), Buffer.from([0x30, 0x81, 138, 0x02, 67, 0x00]));
  assert.equal(wide.length, 3 + 138);
  assert.equal(p1363ToDer(Buffer.alloc(63), 32), undefined);
});
