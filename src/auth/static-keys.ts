/**
 * Keys that come from configuration rather than from an IdP: PEM public keys or certificates, JWK and
 * JWKS files, HMAC secrets from the environment or a file. Loaded once at compile time so that a bad key is
 * a `portcullis check` error, not a request-time failure. Messages name the source, never the key material.
 */
import { X509Certificate, createPublicKey, createSecretKey } from 'node:crypto';
import type { JsonWebKey, KeyObject } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import type { StaticKeySpec } from '../config/types.ts';
import {
  HMAC_MIN_SECRET_BYTES,
  RSA_MIN_BITS,
  isSupportedAlgorithm,
  isUsableKey,
} from './algorithms.ts';

/** One verification key, bound to its issuer by the key source that holds it. */
export interface LoadedKey {
  readonly kid: string | undefined;
  /** The key's declared alg; when set, the key verifies only that alg. */
  readonly alg: string | undefined;
  readonly key: KeyObject;
  readonly kind: 'public' | 'secret';
  /** Where the key came from (`pem_file:/path`, `env:NAME`, a JWKS URL); for logs, never key material. */
  readonly source: string;
}

/** Why a JWK was not imported; bounded set, safe as a metrics label. */
export type JwkSkipReason =
  | 'invalid'
  | 'not_signing'
  | 'unsupported_kty'
  | 'unsupported_crv'
  | 'unsupported_alg'
  | 'secret_not_allowed'
  | 'weak'
  | 'alg_mismatch';

export type JwkImport =
  | { readonly ok: true; readonly key: LoadedKey }
  | { readonly ok: false; readonly reason: JwkSkipReason; readonly message: string };

/** JWK curve names (RFC 7518 §6.2.1.1, RFC 8037 §2) we verify with. */
const EC_JWK_CURVES = new Set(['P-256', 'P-384', 'P-521']);

/**
 * Loads the keys one `StaticKeySpec` names.
 *
 * @throws Error with a precise, key-free message (the config compiler adds file, line and column).
 * @example
 *   const keys = await loadStaticKeys({ kind: 'pem_file', path: './keys/idp.pem', kid: 'k1', alg: 'RS256' });
 */
export async function loadStaticKeys(
  spec: StaticKeySpec,
  env: NodeJS.ProcessEnv = process.env,
): Promise<LoadedKey[]> {
  switch (spec.kind) {
    case 'pem_file':
      return [await loadPemFile(spec.path, spec.kid, spec.alg)];
    case 'jwk_file':
      return [await loadJwkFile(spec.path)];
    case 'jwks_file':
      return loadJwksFile(spec.path);
    case 'hmac_env': {
      const value = env[spec.name];
      const source = `env:${spec.name}`;
      if (value === undefined) throw new Error(`${source}: environment variable ${spec.name} is not set`);
      return [createHmacKey(value, spec.kid, source)];
    }
    case 'hmac_file':
      return [createHmacKey(await readText(spec.path), spec.kid, `hmac_file:${spec.path}`)];
  }
}

/**
 * Imports one JWK's public part (or, with `allowSecret`, an `oct` secret). Private members (`d`, `p`, ...)
 * are never read: only the members RFC 7518 §6 defines for the public key are passed to the importer.
 * Returns a skip reason instead of throwing so a remote set can count what it ignored.
 */
export function importJwk(jwk: unknown, source: string, allowSecret: boolean): JwkImport {
  if (!isRecord(jwk)) return skip('invalid', 'a JWK must be a JSON object');
  // RFC 7517 §4.2/§4.3: a key published for encryption, or whose key_ops exclude verify, is not ours to use.
  if (jwk.use !== undefined && jwk.use !== 'sig') return skip('not_signing', `"use" is ${String(jwk.use)}`);
  if (jwk.key_ops !== undefined && !(Array.isArray(jwk.key_ops) && jwk.key_ops.includes('verify'))) {
    return skip('not_signing', '"key_ops" does not include verify');
  }
  if (jwk.kid !== undefined && typeof jwk.kid !== 'string') return skip('invalid', '"kid" must be a string');
  if (jwk.alg !== undefined && (typeof jwk.alg !== 'string' || !isSupportedAlgorithm(jwk.alg))) {
    return skip('unsupported_alg', `"alg" ${String(jwk.alg)} is not a supported signing algorithm`);
  }
  const kid = jwk.kid;
  const alg = jwk.alg;
  let key: KeyObject;
  try {
    switch (jwk.kty) {
      case 'RSA':
        key = createPublicKey({ key: { kty: 'RSA', n: jwk.n, e: jwk.e } as JsonWebKey, format: 'jwk' });
        break;
      case 'EC':
        if (typeof jwk.crv !== 'string' || !EC_JWK_CURVES.has(jwk.crv)) {
          return skip('unsupported_crv', `EC curve ${String(jwk.crv)} is not supported`);
        }
        key = createPublicKey({ key: { kty: 'EC', crv: jwk.crv, x: jwk.x, y: jwk.y } as JsonWebKey, format: 'jwk' });
        break;
      case 'OKP':
        if (jwk.crv !== 'Ed25519') return skip('unsupported_crv', `OKP curve ${String(jwk.crv)} is not supported`);
        key = createPublicKey({ key: { kty: 'OKP', crv: 'Ed25519', x: jwk.x } as JsonWebKey, format: 'jwk' });
        break;
      case 'oct':
        // A symmetric key fetched from a URL is by definition not secret; only files and env may hold one.
        if (!allowSecret) return skip('secret_not_allowed', 'symmetric (oct) keys are only accepted from files');
        if (typeof jwk.k !== 'string' || !/^[A-Za-z0-9_-]+$/.test(jwk.k)) return skip('invalid', '"k" is missing');
        key = createSecretKey(Buffer.from(jwk.k, 'base64url'));
        break;
      default:
        return skip('unsupported_kty', `kty ${String(jwk.kty)} is not supported`);
    }
  } catch {
    // The importer's message may quote member values; keep ours generic.
    return skip('invalid', `the ${String(jwk.kty)} key members are invalid`);
  }
  if (!isUsableKey({ key, alg: undefined })) {
    return skip('weak', `${describeKey(key)} is too weak (RSA needs ${RSA_MIN_BITS} bits, HMAC 32 bytes)`);
  }
  if (!isUsableKey({ key, alg })) return skip('alg_mismatch', `"alg" ${String(alg)} does not fit a ${describeKey(key)}`);
  const kind = key.type === 'secret' ? 'secret' : 'public';
  return { ok: true, key: Object.freeze({ kid, alg, key, kind, source }) };
}

/** A short, key-free description such as `RSA 2048-bit key` or `EC P-256 key`, for messages. */
export function describeKey(key: KeyObject): string {
  if (key.type === 'secret') return `${key.symmetricKeySize ?? 0}-byte secret`;
  const details = key.asymmetricKeyDetails;
  if (key.asymmetricKeyType === 'rsa') return `RSA ${details?.modulusLength ?? 0}-bit key`;
  if (key.asymmetricKeyType === 'ec') return `EC ${details?.namedCurve ?? 'unknown-curve'} key`;
  return `${key.asymmetricKeyType ?? 'unknown'} key`;
}

async function loadPemFile(path: string, kid: string | undefined, alg: string | undefined): Promise<LoadedKey> {
  const source = `pem_file:${path}`;
  const text = await readText(path);
  const labels = [...text.matchAll(/-----BEGIN ([A-Z0-9 ]+)-----/g)].map((m) => m[1] ?? '');
  if (labels.some((label) => label.includes('PRIVATE KEY'))) {
    throw new Error(
      `${source}: this file holds a PRIVATE key; the proxy only verifies tokens, so give it the public key ` +
        `or certificate (e.g. \`openssl pkey -in key.pem -pubout\`) and keep the private key with the issuer`,
    );
  }
  if (labels.length !== 1) {
    throw new Error(`${source}: expected exactly one PEM block (PUBLIC KEY or CERTIFICATE), found ${labels.length}`);
  }
  let key: KeyObject;
  try {
    key = labels[0] === 'CERTIFICATE' ? new X509Certificate(text).publicKey : createPublicKey({ key: text, format: 'pem' });
  } catch {
    throw new Error(`${source}: the ${labels[0]} block cannot be parsed`);
  }
  if (alg !== undefined && !isSupportedAlgorithm(alg)) throw new Error(`${source}: alg ${alg} is not supported`);
  if (!isUsableKey({ key, alg: undefined })) {
    throw new Error(
      `${source}: a ${describeKey(key)} cannot verify any supported algorithm ` +
        `(RSA keys need at least ${RSA_MIN_BITS} bits, RFC 7518 §3.3; EC keys P-256/P-384/P-521; or Ed25519)`,
    );
  }
  if (!isUsableKey({ key, alg })) throw new Error(`${source}: alg ${String(alg)} does not fit a ${describeKey(key)}`);
  return Object.freeze({ kid, alg, key, kind: 'public', source });
}

async function loadJwkFile(path: string): Promise<LoadedKey> {
  const source = `jwk_file:${path}`;
  const doc = parseJson(await readText(path), source);
  if (isRecord(doc) && Array.isArray(doc.keys)) throw new Error(`${source}: this is a JWK Set; use jwks_file`);
  const imported = importJwk(doc, source, true);
  if (!imported.ok) throw new Error(`${source}: ${imported.message}`);
  return imported.key;
}

async function loadJwksFile(path: string): Promise<LoadedKey[]> {
  const source = `jwks_file:${path}`;
  const doc = parseJson(await readText(path), source);
  if (!isRecord(doc) || !Array.isArray(doc.keys)) throw new Error(`${source}: a JWK Set needs a "keys" array`);
  const keys: LoadedKey[] = [];
  for (const [index, jwk] of doc.keys.entries()) {
    const imported = importJwk(jwk, source, true);
    if (imported.ok) keys.push(imported.key);
    // RFC 7517 §5: a set may mix signing and encryption keys; the latter are simply not ours.
    else if (imported.reason !== 'not_signing') throw new Error(`${source}: keys[${index}]: ${imported.message}`);
  }
  if (keys.length === 0) throw new Error(`${source}: the set has no signing keys`);
  return keys;
}

function createHmacKey(value: string, kid: string | undefined, source: string): LoadedKey {
  // Files and env values commonly end with a newline the operator never meant as part of the secret.
  const secret = Buffer.from(value.replace(/[\r\n]+$/, ''), 'utf8');
  if (secret.length < HMAC_MIN_SECRET_BYTES) {
    throw new Error(
      `${source}: the HMAC secret is ${secret.length} bytes; at least ${HMAC_MIN_SECRET_BYTES} are required ` +
        `(RFC 7518 §3.2: a key as long as the hash output, 32 bytes for HS256)`,
    );
  }
  return Object.freeze({ kid, alg: undefined, key: createSecretKey(secret), kind: 'secret', source });
}

async function readText(path: string): Promise<string> {
  try {
    return await readFile(path, 'utf8');
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code ?? 'unknown error';
    throw new Error(`${path}: cannot read the key file (${code})`);
  }
}

function parseJson(text: string, source: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    throw new Error(`${source}: not valid JSON`);
  }
}

function skip(reason: JwkSkipReason, message: string): JwkImport {
  return { ok: false, reason, message };
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}
