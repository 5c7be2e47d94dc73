/**
 * Test keys, generated at run time (no key material is ever committed), and token builders: honest ones
 * (`createTestSigner(...).sign`) and hostile ones (`forgeToken`: alg none, extra segments, key confusion,
 * embedded `jwk`/`jku` headers, unknown `crit`, ...). Signing uses node:crypto directly, not the code under
 * test, so a verifier bug cannot hide behind a matching signer bug.
 */
import { X509Certificate, constants, createHmac, createSecretKey, generateKeyPair, randomBytes, randomUUID, sign } from 'node:crypto';
import type { JsonWebKey, KeyObject } from 'node:crypto';
import { promisify } from 'node:util';
import type { LoadedKey } from '../../src/auth/static-keys.ts';

const generateKeyPairAsync = promisify(generateKeyPair);

export type TestAlg =
  | 'RS256'
  | 'RS384'
  | 'RS512'
  | 'PS256'
  | 'PS384'
  | 'PS512'
  | 'ES256'
  | 'ES384'
  | 'ES512'
  | 'EdDSA'
  | 'Ed25519'
  | 'HS256'
  | 'HS384'
  | 'HS512';

export interface TestSignerOptions {
  /** Default: `<alg>-<random>`. */
  readonly kid?: string;
  /** HMAC secret for HS* (default: random printable bytes as long as the hash). */
  readonly secret?: Uint8Array | string;
  /** Put `alg` in the published JWK (default true, as most IdPs do). */
  readonly jwkAlg?: boolean;
  /** RSA modulus size (default 2048). */
  readonly modulusLength?: number;
}

export interface TestSigner {
  readonly alg: TestAlg;
  readonly kid: string;
  /** The public JWK with `kid`, `use: sig` and (by default) `alg`; for HS* the `oct` JWK of the secret. */
  readonly publicJwk: JsonWebKey;
  readonly jwks: { keys: JsonWebKey[] };
  /** SPKI PEM of the public key; '' for HS*. */
  readonly publicPem: string;
  readonly publicKey: KeyObject | undefined;
  /** The signing key (for HS*, the secret KeyObject). */
  readonly privateKey: KeyObject;
  readonly secret?: Uint8Array;
  /**
   * A compact JWS over `payload` with header `{ alg, typ: 'JWT', kid, ...headerOverrides }`; an override
   * set to `undefined` removes that member. The signature always uses this signer's own key and alg, so
   * overriding `alg` yields a deliberately mismatched token.
   */
  sign(payload: Record<string, unknown>, headerOverrides?: Record<string, unknown>): string;
}

const HASH: Record<string, string> = { '256': 'sha256', '384': 'sha384', '512': 'sha512' };
const CURVE: Record<string, string> = { ES256: 'P-256', ES384: 'P-384', ES512: 'P-521' };

/** Creates a signer with a fresh key for `alg`. */
export async function createTestSigner(alg: TestAlg, opts: TestSignerOptions = {}): Promise<TestSigner> {
  const kid = opts.kid ?? `${alg.toLowerCase()}-${randomUUID().slice(0, 8)}`;
  const withMeta = (jwk: JsonWebKey): JsonWebKey => ({ ...jwk, kid, use: 'sig', ...(opts.jwkAlg === false ? {} : { alg }) });
  if (alg.startsWith('HS')) {
    const bytes = Number(alg.slice(2)) / 8;
    const secret =
      typeof opts.secret === 'string'
        ? new TextEncoder().encode(opts.secret)
        : (opts.secret ?? new TextEncoder().encode(randomBytes(bytes).toString('base64url')));
    const privateKey = createSecretKey(secret);
    const publicJwk = withMeta({ kty: 'oct', k: Buffer.from(secret).toString('base64url') });
    return {
      alg,
      kid,
      publicJwk,
      jwks: { keys: [publicJwk] },
      publicPem: '',
      publicKey: undefined,
      privateKey,
      secret,
      sign: (payload, headerOverrides) => signToken(alg, privateKey, { alg, typ: 'JWT', kid, ...headerOverrides }, payload),
    };
  }
  const { publicKey, privateKey } = await generateKeys(alg, opts.modulusLength ?? 2048);
  const publicJwk = withMeta(publicKey.export({ format: 'jwk' }));
  return {
    alg,
    kid,
    publicJwk,
    jwks: { keys: [publicJwk] },
    publicPem: publicKey.export({ type: 'spki', format: 'pem' }).toString(),
    publicKey,
    privateKey,
    sign: (payload, headerOverrides) => signToken(alg, privateKey, { alg, typ: 'JWT', kid, ...headerOverrides }, payload),
  };
}

async function generateKeys(alg: TestAlg, modulusLength: number): Promise<{ publicKey: KeyObject; privateKey: KeyObject }> {
  if (alg.startsWith('RS') || alg.startsWith('PS')) return generateKeyPairAsync('rsa', { modulusLength });
  const curve = CURVE[alg];
  if (curve !== undefined) return generateKeyPairAsync('ec', { namedCurve: curve });
  return generateKeyPairAsync('ed25519');
}

/** base64url of a string (UTF-8) or bytes, without padding. */
export function base64url(value: string | Uint8Array): string {
  return Buffer.from(value).toString('base64url');
}

/** Signs `header.payload` with `key` the way `alg` prescribes (RFC 7518 §3). */
export function signToken(alg: string, key: KeyObject, header: Record<string, unknown>, payload: Record<string, unknown>): string {
  const input = `${base64url(JSON.stringify(header))}.${base64url(JSON.stringify(payload))}`;
  return `${input}.${base64url(signBytes(alg, key, Buffer.from(input)))}`;
}

function signBytes(alg: string, key: KeyObject, data: Buffer): Buffer {
  const hash = HASH[alg.slice(-3)] ?? 'sha256';
  if (alg.startsWith('HS')) return createHmac(hash, key).update(data).digest();
  if (alg.startsWith('RS')) return sign(hash, data, key);
  if (alg.startsWith('PS')) {
    return sign(hash, data, { key, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: Number(alg.slice(2)) / 8 });
  }
  if (alg.startsWith('ES')) return sign(hash, data, { key, dsaEncoding: 'ieee-p1363' });
  return sign(null, data, key);
}

/** How `forgeToken` makes the third segment. */
export type ForgedSignature =
  | string
  /** HMAC over `header.payload` with arbitrary key bytes (e.g. an RSA public PEM: key confusion). */
  | { readonly hmacKey: Uint8Array | string; readonly hash?: 'sha256' | 'sha384' | 'sha512' };

/**
 * Builds a token from arbitrary parts. Objects are JSON-encoded; strings are taken as the raw text to
 * encode (so `'not json'` or `'[1]'` make hostile headers). The signature defaults to empty.
 */
export function forgeToken(
  header: Record<string, unknown> | string,
  payload: Record<string, unknown> | string,
  signature: ForgedSignature = '',
): string {
  const encode = (part: Record<string, unknown> | string) => base64url(typeof part === 'string' ? part : JSON.stringify(part));
  const input = `${encode(header)}.${encode(payload)}`;
  if (typeof signature === 'string') return `${input}.${signature}`;
  const mac = createHmac(signature.hash ?? 'sha256', signature.hmacKey).update(input).digest();
  return `${input}.${base64url(mac)}`;
}

/**
 * A self-signed X.509 v3 certificate for `signer`'s key, built with a minimal DER encoder (RFC 5280 §4.1)
 * so tests need neither openssl nor a committed certificate. RSA, EC P-256 and Ed25519 signers only.
 */
export function createTestCertificate(signer: TestSigner, commonName = 'portcullis-test'): string {
  if (signer.publicKey === undefined) throw new Error('an HMAC signer has no certificate');
  const [sigAlgId, hash] = certificateAlgorithm(signer.alg);
  const name = seq(set(seq(oid('2.5.4.3'), tlv(0x0c, Buffer.from(commonName)))));
  const validity = seq(utcTime(new Date(Date.now() - 3_600_000)), utcTime(new Date(Date.now() + 86_400_000)));
  const tbs = seq(
    tlv(0xa0, integer(2)),
    integer(Number.parseInt(randomBytes(4).toString('hex'), 16) >>> 1),
    sigAlgId,
    name,
    validity,
    name,
    signer.publicKey.export({ type: 'spki', format: 'der' }),
  );
  const signature = sign(hash, tbs, signer.privateKey);
  const der = seq(tbs, sigAlgId, tlv(0x03, Buffer.concat([Buffer.from([0]), signature])));
  const pem = `-----BEGIN CERTIFICATE-----\n${der.toString('base64').replace(/.{64}/g, '$&\n').trimEnd()}\n-----END CERTIFICATE-----\n`;
  new X509Certificate(pem); // fail here, not in the test, if the encoder is wrong
  return pem;
}

function certificateAlgorithm(alg: TestAlg): [Buffer, string | null] {
  if (alg === 'RS256') return [seq(oid('1.2.840.113549.1.1.11'), Buffer.from([0x05, 0x00])), 'sha256'];
  if (alg === 'ES256') return [seq(oid('1.2.840.10045.4.3.2')), 'sha256'];
  if (alg === 'EdDSA' || alg === 'Ed25519') return [seq(oid('1.3.101.112')), null];
  throw new Error(`no certificate support for ${alg}`);
}

function tlv(tag: number, body: Buffer): Buffer {
  const length = body.length;
  let header: Buffer;
  if (length < 0x80) header = Buffer.from([tag, length]);
  else if (length < 0x100) header = Buffer.from([tag, 0x81, length]);
  else header = Buffer.from([tag, 0x82, length >> 8, length & 0xff]);
  return Buffer.concat([header, body]);
}

const seq = (...parts: Buffer[]) => tlv(0x30, Buffer.concat(parts));
const set = (...parts: Buffer[]) => tlv(0x31, Buffer.concat(parts));

function integer(value: number): Buffer {
  const bytes: number[] = [];
  let rest = value;
  do {
    bytes.unshift(rest & 0xff);
    rest = Math.floor(rest / 256);
  } while (rest > 0);
  if ((bytes[0] ?? 0) & 0x80) bytes.unshift(0);
  return tlv(0x02, Buffer.from(bytes));
}

function oid(dotted: string): Buffer {
  const [first = 0, second = 0, ...rest] = dotted.split('.').map(Number);
  const bytes = [first * 40 + second];
  for (const arc of rest) {
    const chunk = [arc & 0x7f];
    for (let v = arc >> 7; v > 0; v >>= 7) chunk.unshift((v & 0x7f) | 0x80);
    bytes.push(...chunk);
  }
  return tlv(0x06, Buffer.from(bytes));
}

function utcTime(date: Date): Buffer {
  const iso = date.toISOString(); // 2025-01-02T03:04:05.678Z -> 250102030405Z
  const text = iso.slice(2, 4) + iso.slice(5, 7) + iso.slice(8, 10) + iso.slice(11, 13) + iso.slice(14, 16) + iso.slice(17, 19) + 'Z';
  return tlv(0x17, Buffer.from(text));
}

/** A KeyObject as the key sources hand it to the verifier (source `test`). */
export function loadedKey(key: KeyObject, kid?: string, alg?: string): LoadedKey {
  return { key, kid, alg, kind: key.type === 'secret' ? 'secret' : 'public', source: 'test' };
}
