/**
 * Signing-key generation for `portcullis keys generate` and the quickstart. Writes a PKCS#8 private key
 * (mode 0600), its SPKI public key and a one-key JWKS that a static-keys issuer can point at.
 *
 * The default `kid` is the RFC 7638 thumbprint of the public key, so the same key always gets the same kid
 * and `mintToken` can derive it from the private key alone without reading the JWKS.
 */
import { createPrivateKey, createPublicKey, generateKeyPair, randomBytes } from 'node:crypto';
import type { KeyObject } from 'node:crypto';
import { chmod, mkdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { calculateJwkThumbprint } from 'jose';
import type { JWK } from 'jose';

const generateKeyPairAsync = promisify(generateKeyPair);

/** Algorithms `generateKeyFiles` can create keys for. */
export const KEYGEN_ALGORITHMS = ['RS256', 'ES256', 'EdDSA'] as const;
export type KeygenAlgorithm = (typeof KEYGEN_ALGORITHMS)[number];

export const PRIVATE_KEY_FILE = 'private.pem';
export const PUBLIC_KEY_FILE = 'public.pem';
export const JWKS_FILE = 'jwks.json';

/** Options of {@link generateKeyFiles}. */
export interface GenerateKeyFilesOptions {
  readonly alg: KeygenAlgorithm;
  /** Created (mode 0700) when missing; an existing directory keeps its mode. */
  readonly outDir: string;
  /** Defaults to the RFC 7638 SHA-256 thumbprint of the public key. */
  readonly kid?: string;
  /** Replace an existing `private.pem`. Without it, an existing private key is never touched. */
  readonly force?: boolean;
}

/** What was written, as absolute-or-relative paths exactly as derived from `outDir`. */
export interface GeneratedKeyFiles {
  readonly alg: string;
  readonly kid: string;
  readonly privateKeyPath: string;
  readonly publicKeyPath: string;
  readonly jwksPath: string;
}

/** A public JWK as published in `jwks.json`. */
export interface PublishedJwk extends JWK {
  readonly kid: string;
  readonly alg: string;
  readonly use: 'sig';
}

/**
 * The JWS algorithm a key is meant for, from its type: RSA -> RS256, EC P-256/P-384/P-521 ->
 * ES256/ES384/ES512, Ed25519 -> EdDSA. RSA could equally be PS256; RS256 is what IdPs default to.
 *
 * @throws Error for key types with no JWS signature algorithm (X25519, DH, DSA, secrets, ...) and for
 *   RSA-PSS-only keys.
 */
export function inferAlgorithm(key: KeyObject): string {
  switch (key.asymmetricKeyType) {
    case 'rsa':
      return 'RS256';
    case 'rsa-pss':
      // A key with the id-RSASSA-PSS OID has no JWK form and WebCrypto (which jose uses) will not import it;
      // a plain RSA key signs PS256 just as well.
      throw new Error('RSA-PSS keys are not supported: use a plain RSA key (it can sign PS256 too)');
    case 'ec': {
      const curve = key.asymmetricKeyDetails?.namedCurve;
      if (curve === 'prime256v1' || curve === 'P-256') return 'ES256';
      if (curve === 'secp384r1' || curve === 'P-384') return 'ES384';
      if (curve === 'secp521r1' || curve === 'P-521') return 'ES512';
      throw new Error(`unsupported EC curve ${String(curve)}: JWS defines P-256, P-384 and P-521 only`);
    }
    case 'ed25519':
      return 'EdDSA';
    default:
      throw new Error(`unsupported key type ${String(key.asymmetricKeyType ?? key.type)} for JWS signing`);
  }
}

/** RFC 7638 thumbprint (SHA-256, base64url) of the public half of `key`. */
export async function thumbprintOf(key: KeyObject): Promise<string> {
  const publicKey = key.type === 'private' ? createPublicKey(key) : key;
  return calculateJwkThumbprint(publicKey.export({ format: 'jwk' }) as JWK);
}

/** The public JWK of `key` with `kid`, `alg` and `use: 'sig'`, as it goes into `jwks.json`. */
export function publishedJwk(key: KeyObject, kid: string, alg: string): PublishedJwk {
  const publicKey = key.type === 'private' ? createPublicKey(key) : key;
  return { ...(publicKey.export({ format: 'jwk' }) as JWK), kid, alg, use: 'sig' };
}

async function generatePrivateKey(alg: KeygenAlgorithm): Promise<KeyObject> {
  switch (alg) {
    case 'RS256':
      // 2048 bits is the floor of RFC 7518 §3.3 and what IdPs ship; larger keys slow every verification.
      return (await generateKeyPairAsync('rsa', { modulusLength: 2048 })).privateKey;
    case 'ES256':
      return (await generateKeyPairAsync('ec', { namedCurve: 'P-256' })).privateKey;
    case 'EdDSA':
      return (await generateKeyPairAsync('ed25519')).privateKey;
    default:
      throw new Error(
        `unsupported key algorithm ${JSON.stringify(alg)}: expected one of ${KEYGEN_ALGORITHMS.join(', ')}`,
      );
  }
}

function isErrnoException(error: unknown, code: string): boolean {
  return error instanceof Error && (error as NodeJS.ErrnoException).code === code;
}

/**
 * Writes `data` to `path` so that a reader never sees a half-written file and the mode is right from the
 * first byte: a private key must not exist, even briefly, with the umask's default permissions.
 */
async function writeAtomically(path: string, data: string, mode: number): Promise<void> {
  const temp = `${path}.${randomBytes(6).toString('hex')}.tmp`;
  try {
    await writeFile(temp, data, { mode, flag: 'wx' });
    // `mode` on creation is filtered by the umask; set it explicitly so 0600 means 0600.
    await chmod(temp, mode);
    await rename(temp, path);
  } catch (error) {
    await rm(temp, { force: true });
    throw error;
  }
}

/** Leaves a file that already holds `data` alone, so a restart does not churn mtimes that watchers see. */
async function writeIfChanged(path: string, data: string, mode: number): Promise<void> {
  try {
    if ((await readFile(path, 'utf8')) === data) return;
  } catch (error) {
    if (!isErrnoException(error, 'ENOENT')) throw error;
  }
  await writeAtomically(path, data, mode);
}

async function writeKeyFiles(
  outDir: string,
  privateKey: KeyObject,
  alg: string,
  kid: string,
  force: boolean,
): Promise<GeneratedKeyFiles> {
  const privateKeyPath = join(outDir, PRIVATE_KEY_FILE);
  const publicKeyPath = join(outDir, PUBLIC_KEY_FILE);
  const jwksPath = join(outDir, JWKS_FILE);
  const privatePem = privateKey.export({ format: 'pem', type: 'pkcs8' }).toString();
  const publicPem = createPublicKey(privateKey).export({ format: 'pem', type: 'spki' }).toString();
  const jwks = { keys: [publishedJwk(privateKey, kid, alg)] };

  if (force) {
    await writeAtomically(privateKeyPath, privatePem, 0o600);
  } else {
    try {
      // 'wx' makes the existence check and the create one step, so two concurrent runs cannot both win.
      await writeFile(privateKeyPath, privatePem, { mode: 0o600, flag: 'wx' });
      await chmod(privateKeyPath, 0o600);
    } catch (error) {
      if (isErrnoException(error, 'EEXIST')) {
        throw new Error(`refusing to overwrite the existing private key ${privateKeyPath} (use force to replace it)`, {
          cause: error,
        });
      }
      throw error;
    }
  }
  await writeAtomically(publicKeyPath, publicPem, 0o644);
  await writeAtomically(jwksPath, `${JSON.stringify(jwks, null, 2)}\n`, 0o644);
  return { alg, kid, privateKeyPath, publicKeyPath, jwksPath };
}

/**
 * Generates a signing key pair and writes `private.pem` (PKCS#8, 0600), `public.pem` (SPKI) and
 * `jwks.json` (`{ keys: [{ ...publicJwk, kid, alg, use: 'sig' }] }`) into `outDir`.
 *
 * @example
 * const { kid, jwksPath } = await generateKeyFiles({ alg: 'ES256', outDir: './keys' });
 * @throws Error when `private.pem` already exists and `force` is not set, or `alg` is not supported.
 */
export async function generateKeyFiles(opts: GenerateKeyFilesOptions): Promise<GeneratedKeyFiles> {
  const privateKey = await generatePrivateKey(opts.alg);
  const kid = opts.kid ?? (await thumbprintOf(privateKey));
  if (kid.length === 0) throw new Error('kid must not be empty');
  await mkdir(opts.outDir, { recursive: true, mode: 0o700 });
  return writeKeyFiles(opts.outDir, privateKey, opts.alg, kid, opts.force === true);
}

async function readExistingKid(jwksPath: string, thumbprint: string): Promise<{ kid: string; alg?: string } | undefined> {
  let parsed: unknown;
  try {
    parsed = JSON.parse(await readFile(jwksPath, 'utf8'));
  } catch {
    return undefined;
  }
  const keys = (parsed as { keys?: unknown }).keys;
  if (!Array.isArray(keys)) return undefined;
  for (const jwk of keys as JWK[]) {
    if (typeof jwk?.kid !== 'string') continue;
    try {
      if ((await calculateJwkThumbprint(jwk)) === thumbprint) {
        return typeof jwk.alg === 'string' ? { kid: jwk.kid, alg: jwk.alg } : { kid: jwk.kid };
      }
    } catch {
      // A malformed entry is simply not ours.
    }
  }
  return undefined;
}

/**
 * Keys for the quickstart: reuses `dir/private.pem` when it exists (so tokens minted in an earlier run keep
 * verifying), otherwise generates a new pair with `alg`. When reusing, the key's own type decides the
 * algorithm (a requested `alg` that differs is ignored rather than silently rotating the key), the kid is
 * taken from `jwks.json` when it lists this key, and `public.pem` / `jwks.json` are rewritten from the
 * private key when missing or different, so they always match it.
 */
export async function loadOrCreateDevKeys(dir: string, alg: KeygenAlgorithm = 'ES256'): Promise<GeneratedKeyFiles> {
  const privateKeyPath = join(dir, PRIVATE_KEY_FILE);
  let pem: string;
  try {
    pem = await readFile(privateKeyPath, 'utf8');
  } catch (error) {
    if (!isErrnoException(error, 'ENOENT')) throw error;
    try {
      return await generateKeyFiles({ alg, outDir: dir });
    } catch (createError) {
      // Another process (a second quickstart) created the key between our read and our create: use theirs.
      if (!(createError instanceof Error && isErrnoException(createError.cause, 'EEXIST'))) throw createError;
      pem = await readFile(privateKeyPath, 'utf8');
    }
  }
  const privateKey = createPrivateKey(pem);
  const thumbprint = await thumbprintOf(privateKey);
  const existing = await readExistingKid(join(dir, JWKS_FILE), thumbprint);
  const keyAlg = existing?.alg ?? inferAlgorithm(privateKey);
  const kid = existing?.kid ?? thumbprint;
  const jwksPath = join(dir, JWKS_FILE);
  const publicKeyPath = join(dir, PUBLIC_KEY_FILE);
  const publicPem = createPublicKey(privateKey).export({ format: 'pem', type: 'spki' }).toString();
  const jwksText = `${JSON.stringify({ keys: [publishedJwk(privateKey, kid, keyAlg)] }, null, 2)}\n`;
  await writeIfChanged(publicKeyPath, publicPem, 0o644);
  await writeIfChanged(jwksPath, jwksText, 0o644);
  return { alg: keyAlg, kid, privateKeyPath, publicKeyPath, jwksPath };
}
