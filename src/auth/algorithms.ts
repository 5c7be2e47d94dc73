/**
 * The JWS algorithms the proxy verifies and the key each one may use. This is the key-confusion defence:
 * which key verifies a token is decided by the key's own type, never by what the token claims
 * (RFC 8725 §2.1, §3.1: "each key MUST be used with exactly one algorithm").
 */
import type { KeyObject } from 'node:crypto';

/** Every JWS `alg` we accept in configuration (RFC 7518 §3.1, RFC 8037 §3.1, RFC 9864 for `Ed25519`). */
export const SUPPORTED_ALGORITHMS: readonly string[] = Object.freeze([
  'HS256',
  'HS384',
  'HS512',
  'RS256',
  'RS384',
  'RS512',
  'PS256',
  'PS384',
  'PS512',
  'ES256',
  'ES384',
  'ES512',
  'EdDSA',
  'Ed25519',
]);

/** RFC 7518 §3.2: an HMAC key must be at least as long as the hash output. */
const HMAC_MIN_BYTES: Readonly<Record<string, number>> = { HS256: 32, HS384: 48, HS512: 64 };

/** RFC 7518 §3.3 / §3.5: RSA keys of 2048 bits or more (jose refuses smaller ones at verify time too). */
export const RSA_MIN_BITS = 2048;

/** OpenSSL curve names, as `KeyObject.asymmetricKeyDetails.namedCurve` reports them (RFC 7518 §3.4). */
const EC_CURVES: Readonly<Record<string, string>> = {
  ES256: 'prime256v1',
  ES384: 'secp384r1',
  ES512: 'secp521r1',
};

/** Smallest HMAC secret any HS* algorithm accepts; shorter secrets are refused at load. */
export const HMAC_MIN_SECRET_BYTES = 32;

export function isSupportedAlgorithm(alg: string): boolean {
  return SUPPORTED_ALGORITHMS.includes(alg);
}

/** The shape both static and remote keys have; kept structural so this module imports no key loader. */
export interface AlgorithmBoundKey {
  readonly key: KeyObject;
  /** The key's own `alg` (JWK `alg`, or the configured one for a PEM); binds the key to that one alg. */
  readonly alg: string | undefined;
}

/**
 * Whether `candidate` may verify a token signed with `alg`. HS256/384/512 only ever use a secret key of
 * sufficient length; RS/PS algs only RSA public keys; ES algs only EC keys on the matching curve; EdDSA/Ed25519
 * only Ed25519 keys; a key that declares an `alg` only verifies that alg (RFC 7517 §4.4).
 */
export function keyFitsAlgorithm(candidate: AlgorithmBoundKey, alg: string): boolean {
  if (candidate.alg !== undefined && candidate.alg !== alg) return false;
  // KeyObjects are immutable and their type getters cross into C++: decide once per (key, alg).
  let byAlg = FITS.get(candidate.key);
  if (byAlg === undefined) FITS.set(candidate.key, (byAlg = new Map()));
  let fits = byAlg.get(alg);
  if (fits === undefined) byAlg.set(alg, (fits = keyFitsAlgorithmUncached(candidate.key, alg)));
  return fits;
}

const FITS = new WeakMap<KeyObject, Map<string, boolean>>();

function keyFitsAlgorithmUncached(key: KeyObject, alg: string): boolean {
  const hmacMin = HMAC_MIN_BYTES[alg];
  if (hmacMin !== undefined) {
    return key.type === 'secret' && (key.symmetricKeySize ?? 0) >= hmacMin;
  }
  if (key.type !== 'public') return false;
  if (alg.startsWith('RS') || alg.startsWith('PS')) {
    if (!/^(RS|PS)(256|384|512)$/.test(alg)) return false;
    return key.asymmetricKeyType === 'rsa' && (key.asymmetricKeyDetails?.modulusLength ?? 0) >= RSA_MIN_BITS;
  }
  const curve = EC_CURVES[alg];
  if (curve !== undefined) {
    return key.asymmetricKeyType === 'ec' && key.asymmetricKeyDetails?.namedCurve === curve;
  }
  if (alg === 'EdDSA' || alg === 'Ed25519') return key.asymmetricKeyType === 'ed25519';
  return false;
}

/** Whether some supported algorithm could use this key at all (used to refuse useless keys at load). */
export function isUsableKey(candidate: AlgorithmBoundKey): boolean {
  return SUPPORTED_ALGORITHMS.some((alg) => keyFitsAlgorithm(candidate, alg));
}
