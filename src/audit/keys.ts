/**
 * Ed25519 keys for checkpoints and prune records.
 *
 * The writer signs with a private key loaded from a PEM file or an environment variable, named by a key id
 * (`kid`, default the RFC 7638 thumbprint of the public key). The verifier trusts ONLY public keys from a file
 * the auditors hold — never anything read from the audit store, which an attacker who can rewrite the store
 * could also rewrite. The trusted-keys file is JSON in either of two forms:
 *
 *   { "keys": [ { "kid": "audit-2025", "publicKeyPem": "-----BEGIN PUBLIC KEY-----\n..." } ] }
 *   { "keys": [ { "kty": "OKP", "crv": "Ed25519", "kid": "audit-2025", "x": "..." } ] }      (a JWKS)
 *
 * Entries may mix both forms. A file holding private material (a `d` member or a PRIVATE KEY PEM) is refused:
 * the auditors' file must be safe to hand around.
 */
import { createHash, createPrivateKey, createPublicKey, generateKeyPairSync, sign, verify } from 'node:crypto';
import type { KeyObject } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { AuditError } from './errors.ts';

/** Signs checkpoint and prune statements. */
export interface AuditSigner {
  readonly kid: string;
  readonly publicKey: KeyObject;
  /** Ed25519 signature over `payload`, base64url. */
  sign(payload: Uint8Array): string;
}

/** Public keys the verifier accepts, by kid. */
export interface TrustedKeys {
  readonly kids: readonly string[];
  get(kid: string): KeyObject | undefined;
}

export type SignatureCheck = 'valid' | 'invalid' | 'unknown-key';

const KID = /^[\x21-\x7e]{1,128}$/;

/** RFC 7638 JWK thumbprint of an Ed25519 public key (members crv, kty, x in lexicographic order). */
export function ed25519Thumbprint(publicKey: KeyObject): string {
  const jwk = publicKey.export({ format: 'jwk' });
  return createHash('sha256').update(`{"crv":"Ed25519","kty":"OKP","x":"${String(jwk.x)}"}`).digest('base64url');
}

/**
 * A signer over an Ed25519 private key (a KeyObject or PKCS#8 PEM text).
 *
 * @throws AuditError `ERR_AUDIT_KEY_INVALID` when the key is not an Ed25519 private key or the kid is unusable.
 */
export function createAuditSigner(options: { readonly privateKey: KeyObject | string; readonly kid?: string }): AuditSigner {
  let key: KeyObject;
  try {
    key = typeof options.privateKey === 'string' ? createPrivateKey(options.privateKey) : options.privateKey;
  } catch (cause) {
    throw new AuditError('ERR_AUDIT_KEY_INVALID', 'the audit signing key is not a readable private key PEM', { cause });
  }
  if (key.type !== 'private' || key.asymmetricKeyType !== 'ed25519') {
    throw new AuditError('ERR_AUDIT_KEY_INVALID', `the audit signing key must be an Ed25519 private key, not ${key.asymmetricKeyType ?? key.type}`);
  }
  const publicKey = createPublicKey(key);
  const kid = options.kid ?? ed25519Thumbprint(publicKey);
  if (!KID.test(kid)) throw new AuditError('ERR_AUDIT_KEY_INVALID', 'the audit key id must be 1-128 printable ASCII characters');
  return {
    kid,
    publicKey,
    sign: (payload) => sign(null, payload, key).toString('base64url'),
  };
}

/**
 * Loads the signing key from a PEM file or from an environment variable holding the PEM (exactly one).
 *
 * @throws AuditError `ERR_AUDIT_KEY_INVALID` when the source is missing, unreadable or not Ed25519.
 */
export async function loadAuditSigner(options: {
  readonly file?: string;
  readonly env?: string;
  readonly kid?: string;
  readonly environment?: NodeJS.ProcessEnv;
}): Promise<AuditSigner> {
  if ((options.file === undefined) === (options.env === undefined)) {
    throw new AuditError('ERR_AUDIT_KEY_INVALID', 'give the audit signing key as exactly one of a file or an environment variable');
  }
  let pem: string | undefined;
  if (options.file !== undefined) {
    try {
      pem = await readFile(options.file, 'utf8');
    } catch (cause) {
      throw new AuditError('ERR_AUDIT_KEY_INVALID', `cannot read the audit signing key ${options.file}`, { cause });
    }
  } else {
    pem = (options.environment ?? process.env)[options.env!];
    if (pem === undefined || pem === '') throw new AuditError('ERR_AUDIT_KEY_INVALID', `environment variable ${options.env} is not set`);
  }
  return createAuditSigner({ privateKey: pem, ...(options.kid === undefined ? {} : { kid: options.kid }) });
}

/** A fresh Ed25519 key pair as PEM plus its signer (tests, `portcullis keys generate --audit`). */
export function generateAuditKey(kid?: string): { signer: AuditSigner; privateKeyPem: string; publicKeyPem: string } {
  const { privateKey, publicKey } = generateKeyPairSync('ed25519');
  return {
    signer: createAuditSigner({ privateKey, ...(kid === undefined ? {} : { kid }) }),
    privateKeyPem: privateKey.export({ format: 'pem', type: 'pkcs8' }).toString(),
    publicKeyPem: publicKey.export({ format: 'pem', type: 'spki' }).toString(),
  };
}

/** Builds a trusted-key set in memory. Later entries with a kid already present are refused. */
export function createTrustedKeys(entries: readonly { readonly kid: string; readonly publicKey: KeyObject | string }[]): TrustedKeys {
  const map = new Map<string, KeyObject>();
  for (const entry of entries) {
    if (map.has(entry.kid)) throw new AuditError('ERR_AUDIT_KEYS_FILE_INVALID', `trusted key id ${JSON.stringify(entry.kid)} appears twice`);
    map.set(entry.kid, toEd25519Public(entry.publicKey, entry.kid));
  }
  return { kids: [...map.keys()], get: (kid) => map.get(kid) };
}

/** The trusted-keys document (first form above) for some signers, to hand to the auditors. */
export function trustedKeysDocument(signers: readonly Pick<AuditSigner, 'kid' | 'publicKey'>[]): string {
  const keys = signers.map((s) => ({ kid: s.kid, publicKeyPem: s.publicKey.export({ format: 'pem', type: 'spki' }).toString() }));
  return JSON.stringify({ keys }, null, 2) + '\n';
}

/**
 * Reads the auditors' trusted-keys file (either form above).
 *
 * @throws AuditError `ERR_AUDIT_KEYS_FILE_INVALID` when the file is missing, malformed, holds private keys,
 *   holds a non-Ed25519 key, or holds no key at all (a verifier with nothing to trust cannot verify).
 */
export async function loadTrustedKeys(path: string): Promise<TrustedKeys> {
  let doc: unknown;
  try {
    doc = JSON.parse(await readFile(path, 'utf8'));
  } catch (cause) {
    throw new AuditError('ERR_AUDIT_KEYS_FILE_INVALID', `cannot read trusted keys from ${path}`, { cause });
  }
  const list = (doc as { keys?: unknown } | null)?.keys;
  if (!Array.isArray(list) || list.length === 0) {
    throw new AuditError('ERR_AUDIT_KEYS_FILE_INVALID', `${path}: expected {"keys": [...]} with at least one key`);
  }
  const entries: { kid: string; publicKey: KeyObject }[] = [];
  for (const [i, item] of list.entries()) {
    const where = `${path}: keys[${i}]`;
    if (item === null || typeof item !== 'object') throw new AuditError('ERR_AUDIT_KEYS_FILE_INVALID', `${where} is not an object`);
    const rec = item as Record<string, unknown>;
    if (typeof rec.kid !== 'string' || !KID.test(rec.kid)) throw new AuditError('ERR_AUDIT_KEYS_FILE_INVALID', `${where} has no usable kid`);
    if ('d' in rec) throw new AuditError('ERR_AUDIT_KEYS_FILE_INVALID', `${where} holds a private key; give public keys only`);
    let source: KeyObject | string;
    if (typeof rec.publicKeyPem === 'string') {
      if (rec.publicKeyPem.includes('PRIVATE KEY')) {
        throw new AuditError('ERR_AUDIT_KEYS_FILE_INVALID', `${where} holds a private key; give public keys only`);
      }
      source = rec.publicKeyPem;
    } else if (rec.kty === 'OKP') {
      try {
        source = createPublicKey({ key: { kty: 'OKP', crv: String(rec.crv), x: String(rec.x) }, format: 'jwk' });
      } catch (cause) {
        throw new AuditError('ERR_AUDIT_KEYS_FILE_INVALID', `${where} is not a valid OKP JWK`, { cause });
      }
    } else {
      throw new AuditError('ERR_AUDIT_KEYS_FILE_INVALID', `${where} needs publicKeyPem or an Ed25519 JWK (kty OKP)`);
    }
    try {
      entries.push({ kid: rec.kid, publicKey: toEd25519Public(source, rec.kid) });
    } catch (cause) {
      throw new AuditError('ERR_AUDIT_KEYS_FILE_INVALID', `${where}: ${(cause as Error).message}`, { cause });
    }
  }
  return createTrustedKeys(entries);
}

function toEd25519Public(source: KeyObject | string, kid: string): KeyObject {
  let key: KeyObject;
  try {
    key = typeof source === 'string' ? createPublicKey(source) : source;
  } catch (cause) {
    throw new AuditError('ERR_AUDIT_KEYS_FILE_INVALID', `key ${kid} is not a readable public key`, { cause });
  }
  if (key.type === 'private') key = createPublicKey(key);
  if (key.asymmetricKeyType !== 'ed25519') {
    throw new AuditError('ERR_AUDIT_KEYS_FILE_INVALID', `key ${kid} must be Ed25519, not ${key.asymmetricKeyType ?? key.type}`);
  }
  return key;
}

/** Checks a base64url Ed25519 signature over `payload` with the trusted key named `kid`. */
export function checkSignature(trusted: TrustedKeys, kid: string, payload: Uint8Array, signature: string): SignatureCheck {
  const key = trusted.get(kid);
  if (key === undefined) return 'unknown-key';
  let sig: Buffer;
  try {
    sig = Buffer.from(signature, 'base64url');
  } catch {
    return 'invalid';
  }
  // Ed25519 signatures are 64 bytes; anything else (or a non-canonical base64url spelling) is not ours.
  if (sig.length !== 64 || sig.toString('base64url') !== signature) return 'invalid';
  try {
    return verify(null, payload, key, sig) ? 'valid' : 'invalid';
  } catch {
    return 'invalid';
  }
}
