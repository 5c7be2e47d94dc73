/**
 * JWS signature verification with node:crypto directly (RFC 7518 §3). jose's compactVerify re-parses the
 * token, re-imports keys and is asynchronous; on the request path the proxy has already parsed the token and
 * holds an imported KeyObject bound to the algorithm family (see algorithms.ts), so one `crypto.verify` call
 * is all that is left to do. jose still imports keys and serves JWKS handling.
 */
import { constants, createHmac, timingSafeEqual, verify } from 'node:crypto';
import type { LoadedKey } from './static-keys.ts';

const HASH: Record<string, string> = { '256': 'sha256', '384': 'sha384', '512': 'sha512' };

/**
 * True when `signature` is a valid signature of `data` (the bytes of `base64url(header).base64url(payload)`) by
 * `key` under `alg`. The caller has already checked that the key fits the algorithm. Never throws.
 */
export function verifySignature(data: Buffer, signature: Buffer, key: LoadedKey, alg: string): boolean {
  try {
    const family = alg.slice(0, 2);
    const hash = HASH[alg.slice(2)];
    switch (family) {
      case 'RS':
        return hash !== undefined && verify(hash, data, key.key, signature);
      case 'PS':
        // RFC 7518 §3.5: MGF1 with the same hash, salt length equal to the hash output.
        return hash !== undefined && verify(hash, data, { key: key.key, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: constants.RSA_PSS_SALTLEN_DIGEST }, signature);
      case 'ES':
        // RFC 7518 §3.4: R || S, fixed length (IEEE P1363), not DER.
        return hash !== undefined && verify(hash, data, { key: key.key, dsaEncoding: 'ieee-p1363' }, signature);
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
