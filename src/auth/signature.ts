/**
 * JWS signature verification with node:crypto directly (RFC 7518 §3). jose's compactVerify re-parses the
 * token, re-imports keys and is asynchronous; on the request path the proxy has already parsed the token and
 * holds an imported KeyObject bound to the algorithm family (see algorithms.ts), so one `crypto.verify` call
 * is all that is left to do. jose still imports keys and serves JWKS handling.
 *
 * The key goes to `crypto.verify` as the bare KeyObject wherever the algorithm allows. On Node 24 an options
 * object (`{ key, dsaEncoding }`) makes each call construct and catch two TypeErrors, stack traces included,
 * while it works out whether the object is a CryptoKey: ~30 µs more per RS256 check, ~50 µs per ES256 check
 * measured here, ~146k instructions under callgrind. Hence ECDSA signatures are re-encoded from JWS' r || s
 * to DER (what a bare key takes) instead of passing `dsaEncoding: 'ieee-p1363'`, and RSA-PSS goes to an
 * `rsa-pss` key derived once per key and hash, whose parameters carry the padding and salt length
 * (rsa-pss-key.ts) instead of `{ padding, saltLength }`.
 */
import { createHmac, timingSafeEqual, verify } from 'node:crypto';
import { getRsaPssKey } from './rsa-pss-key.ts';
import type { LoadedKey } from './static-keys.ts';

// A Map, not an object literal: a suffix such as `constructor` must find nothing, not Object.prototype's.
const HASH = new Map<string, 'sha256' | 'sha384' | 'sha512'>([['256', 'sha256'], ['384', 'sha384'], ['512', 'sha512']]);

/** Bytes of r and of s in a JWS ECDSA signature, by alg (RFC 7518 §3.4: the curve's order size). */
const EC_SCALAR_BYTES: Record<string, number> = { ES256: 32, ES384: 48, ES512: 66 };

/**
 * True when `signature` is a valid signature of `data` (the bytes of `base64url(header).base64url(payload)`) by
 * `key` under `alg`. The caller has already checked that the key fits the algorithm. Never throws.
 */
export function verifySignature(data: Buffer, signature: Buffer, key: LoadedKey, alg: string): boolean {
  try {
    const family = alg.slice(0, 2);
    const hash = HASH.get(alg.slice(2));
    switch (family) {
      case 'RS':
        return hash !== undefined && verify(hash, data, key.key, signature);
      case 'PS':
        // RFC 7518 §3.5: MGF1 with the same hash, salt length equal to the hash output; the derived key says so.
        return hash !== undefined && verify(hash, data, getRsaPssKey(key.key, hash), signature);
      case 'ES': {
        // RFC 7518 §3.4: R || S, fixed length (IEEE P1363), not DER.
        const size = EC_SCALAR_BYTES[alg];
        const der = size === undefined ? undefined : p1363ToDer(signature, size);
        return hash !== undefined && der !== undefined && verify(hash, data, key.key, der);
      }
      case 'HS': {
        if (hash === undefined) return false;
        const expected = createHmac(hash, key.key).update(data).digest();
        // Constant time; a length mismatch is not secret (it is fixed by the algorithm).
        return expected.length === signature.length && timingSafeEqual(expected, signature);
      }
      default:
        // EdDSA and the fully-specified Ed25519 (RFC 9864): the key type fixes the curve.
        return (alg === 'EdDSA' || alg === 'Ed25519') && verify(null, data, key.key, signature);
    }
  } catch {
    return false;
  }
}

/**
 * An IEEE P1363 ECDSA signature (r || s, each `size` bytes, big-endian) as the DER ECDSA-Sig-Value
 * (SEQUENCE { INTEGER r, INTEGER s }, SEC 1 C.8) that OpenSSL verifies, or undefined when the length is not
 * 2 × `size`: what node does with `dsaEncoding: 'ieee-p1363'`. Integers are minimal and non-negative, so the
 * DER is canonical whatever bytes a forger sends; r or s of zero or at or above the curve's order is left to
 * OpenSSL to refuse, as before.
 */
export function p1363ToDer(signature: Buffer, size: number): Buffer | undefined {
  if (signature.length !== 2 * size) return undefined;
  const rStart = firstSignificant(signature, 0, size);
  const sStart = firstSignificant(signature, size, 2 * size);
  const rPad = signature[rStart]! >= 0x80 ? 1 : 0;
  const sPad = signature[sStart]! >= 0x80 ? 1 : 0;
  const rLength = size - rStart + rPad;
  const sLength = 2 * size - sStart + sPad;
  const body = 2 + rLength + 2 + sLength;
  // P-521's body can pass 127 bytes: then the length takes the long form, one length byte (X.690 8.1.3.5).
  const head = body < 0x80 ? 2 : 3;
  const der = Buffer.allocUnsafe(head + body);
  let at = 0;
  der[at++] = 0x30;
  if (head === 3) der[at++] = 0x81;
  der[at++] = body;
  at = writeInteger(der, at, signature, rStart, size, rPad);
  writeInteger(der, at, signature, sStart, 2 * size, sPad);
  return der;
}

/** Index of the first non-zero byte in [start, end), keeping the last byte when all are zero (INTEGER 0 is one byte). */
function firstSignificant(bytes: Buffer, start: number, end: number): number {
  let i = start;
  while (i < end - 1 && bytes[i] === 0) i++;
  return i;
}

function writeInteger(der: Buffer, at: number, source: Buffer, start: number, end: number, pad: number): number {
  der[at++] = 0x02;
  der[at++] = end - start + pad;
  if (pad === 1) der[at++] = 0x00;
  source.copy(der, at, start, end);
  return at + end - start;
}
