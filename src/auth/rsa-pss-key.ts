/**
 * An RSA public key as an `rsa-pss` KeyObject restricted to one JWS PS algorithm's parameters, so that
 * `crypto.verify` can take the bare key. The alternative, `{ key, padding, saltLength }`, costs two caught
 * TypeErrors per call on Node 24 (see signature.ts): ~10 µs of a ~30 µs PS256 check measured here.
 *
 * The restriction is exactly RFC 7518 §3.5: hash H, MGF1 with H, salt length = H's output. OpenSSL takes a
 * restricted key's salt length as the one to check for, so a signature with any other salt length is
 * refused, as `RSA_PSS_SALTLEN_DIGEST` refuses it (test/unit/auth-rsa-pss-key.test.ts holds the two equal).
 */
import { createPublicKey } from 'node:crypto';
import type { KeyObject } from 'node:crypto';

export type PssHash = 'sha256' | 'sha384' | 'sha512';

/** DER of each hash's OID (NIST, RFC 5754) and its output length in bytes: the salt length JWS requires. */
const HASHES: Record<PssHash, { readonly oid: string; readonly saltLength: number }> = {
  sha256: { oid: '608648016503040201', saltLength: 32 },
  sha384: { oid: '608648016503040202', saltLength: 48 },
  sha512: { oid: '608648016503040203', saltLength: 64 },
};

const ID_RSASSA_PSS = '2a864886f70d01010a'; // 1.2.840.113549.1.1.10
const ID_MGF1 = '2a864886f70d010108'; // 1.2.840.113549.1.1.8

/** Every derivation for a hash reuses its AlgorithmIdentifier, so it is encoded once. */
const algorithmIdentifiers = new Map<PssHash, Buffer>();

/**
 * Derived keys by source key and hash. A WeakMap: a key dropped from a JWKS takes what was derived from it
 * along, so the map is bounded by the keys the issuers hold, times three.
 */
const derived = new WeakMap<KeyObject, Partial<Record<PssHash, KeyObject>>>();

/**
 * `key` (an `rsa` public KeyObject) as an `rsa-pss` public KeyObject bound to `hash`, derived on first use
 * and kept for as long as `key` lives.
 *
 * @throws when `key` is not an RSA public key (the caller has checked the key fits the algorithm).
 * @example
 *   verify('sha256', signingInput, getRsaPssKey(rsaPublicKey, 'sha256'), signature); // PS256
 */
export function getRsaPssKey(key: KeyObject, hash: PssHash): KeyObject {
  const byHash = derived.get(key);
  const known = byHash?.[hash];
  if (known !== undefined) return known;
  // Derived before anything is stored: a key that cannot be (not RSA) leaves no entry behind.
  const made = deriveRsaPssKey(key, hash);
  if (byHash === undefined) derived.set(key, { [hash]: made });
  else byHash[hash] = made;
  return made;
}

/** A new `rsa-pss` KeyObject with `key`'s modulus and exponent, restricted to `hash` (RFC 4055 §3.1). */
export function deriveRsaPssKey(key: KeyObject, hash: PssHash): KeyObject {
  const rsaPublicKey = key.export({ type: 'pkcs1', format: 'der' });
  const spki = encodeTlv(0x30, encodeAlgorithmIdentifier(hash), encodeTlv(0x03, Buffer.of(0), rsaPublicKey));
  return createPublicKey({ key: spki, format: 'der', type: 'spki' });
}

/** AlgorithmIdentifier { id-RSASSA-PSS, RSASSA-PSS-params { hash, MGF1(hash), saltLength } }; trailerField is the default. */
export function encodeAlgorithmIdentifier(hash: PssHash): Buffer {
  let cached = algorithmIdentifiers.get(hash);
  if (cached === undefined) {
    const { oid, saltLength } = HASHES[hash];
    // The hash's parameters as NULL, as OpenSSL writes them (RFC 4055 §2.1 has readers accept NULL or absent).
    const hashAlgorithm = encodeTlv(0x30, encodeTlv(0x06, Buffer.from(oid, 'hex')), Buffer.of(0x05, 0x00));
    const maskGenAlgorithm = encodeTlv(0x30, encodeTlv(0x06, Buffer.from(ID_MGF1, 'hex')), hashAlgorithm);
    const params = encodeTlv(0x30, encodeTlv(0xa0, hashAlgorithm), encodeTlv(0xa1, maskGenAlgorithm), encodeTlv(0xa2, encodeTlv(0x02, Buffer.of(saltLength))));
    cached = encodeTlv(0x30, encodeTlv(0x06, Buffer.from(ID_RSASSA_PSS, 'hex')), params);
    algorithmIdentifiers.set(hash, cached);
  }
  return cached;
}

/** One DER TLV (X.690 8.1): `tag`, the definite length (short or long form), the concatenated contents. */
function encodeTlv(tag: number, ...contents: Buffer[]): Buffer {
  const body = Buffer.concat(contents);
  const n = body.length;
  let length: Buffer;
  if (n < 0x80) length = Buffer.of(n);
  else if (n < 0x100) length = Buffer.of(0x81, n);
  else if (n < 0x10000) length = Buffer.of(0x82, n >> 8, n & 0xff);
  else if (n < 0x1000000) length = Buffer.of(0x83, n >> 16, (n >> 8) & 0xff, n & 0xff);
  // Unreachable for a public key (a 16384-bit modulus is 2 KiB); refused rather than mis-encoded.
  else throw new RangeError(`DER contents of ${n} bytes`);
  return Buffer.concat([Buffer.of(tag), length, body]);
}
