/**
 * Keys and tokens for the bench, made at run time into a temp dir (never committed): one key per alg
 * (RS256 2048-bit, ES256 P-256, EdDSA Ed25519), their public PEMs and JWKS, and token files with one
 * compact JWS per line. Distinct valid tokens are signed on worker threads (RSA signing is the slow part:
 * about 4k/s per core).
 *
 * This module is also the worker: imported on a worker thread it signs its share and posts it back.
 */
import { createPrivateKey, createPublicKey, generateKeyPairSync, randomBytes, randomUUID, sign } from 'node:crypto';
import type { KeyObject } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { join } from 'node:path';
import { Worker, isMainThread, parentPort, workerData } from 'node:worker_threads';

export type Alg = 'RS256' | 'ES256' | 'EdDSA';
export const ALGS: readonly Alg[] = ['RS256', 'ES256', 'EdDSA'];

export const ISSUER = 'https://issuer.bench.portcullis.test';
export const AUDIENCE = 'bench-api';

export interface BenchKey {
  readonly alg: Alg;
  readonly kid: string;
  readonly privatePem: string;
  /** SPKI PEM file (what fastify-jwt, express-jwt, lean-verify and HAProxy load). */
  readonly publicPemFile: string;
  readonly signatureBytes: number;
}

export interface KeySet {
  readonly keys: Record<Alg, BenchKey>;
  /** JWKS file with every public key (what Portcullis loads). */
  readonly jwksFile: string;
}

export function generateKeys(dir: string): KeySet {
  const keys = {} as Record<Alg, BenchKey>;
  const jwks: object[] = [];
  for (const alg of ALGS) {
    const pair =
      alg === 'RS256'
        ? generateKeyPairSync('rsa', { modulusLength: 2048 })
        : alg === 'ES256'
          ? generateKeyPairSync('ec', { namedCurve: 'P-256' })
          : generateKeyPairSync('ed25519');
    const kid = `bench-${alg.toLowerCase()}`;
    const publicPemFile = join(dir, `${alg}.pub.pem`);
    writeFileSync(publicPemFile, pair.publicKey.export({ type: 'spki', format: 'pem' }));
    jwks.push({ ...pair.publicKey.export({ format: 'jwk' }), kid, alg, use: 'sig' });
    keys[alg] = {
      alg,
      kid,
      privatePem: pair.privateKey.export({ type: 'pkcs8', format: 'pem' }) as string,
      publicPemFile,
      signatureBytes: alg === 'RS256' ? 256 : 64,
    };
  }
  const jwksFile = join(dir, 'jwks.json');
  writeFileSync(jwksFile, JSON.stringify({ keys: jwks }, null, 2));
  return { keys, jwksFile };
}

/**
 * A Keycloak-like access token payload (about 420 bytes), distinct per `n`. `env` is what the `loki`
 * scenario enforces; the roles pass the `policy` scenario's rules.
 */
function payload(n: number, ttlSeconds: number, roles: readonly string[] = ['offline_access', 'log-reader', 'default-roles-bench']): Record<string, unknown> {
  const now = Math.floor(Date.now() / 1000);
  return {
    iss: ISSUER,
    aud: AUDIENCE,
    sub: `user-${n.toString().padStart(7, '0')}`,
    iat: now,
    exp: now + ttlSeconds,
    jti: randomUUID(),
    azp: 'bench-client',
    scope: 'openid profile logs:read',
    realm_access: { roles },
    tenant: 'acme',
    env: 'staging',
    email: `user${n}@example.com`,
  };
}

function signToken(key: KeyObject, alg: Alg, kid: string, claims: Record<string, unknown>): string {
  const header = Buffer.from(JSON.stringify({ alg, typ: 'JWT', kid })).toString('base64url');
  const body = Buffer.from(JSON.stringify(claims)).toString('base64url');
  const input = `${header}.${body}`;
  const signature =
    alg === 'EdDSA'
      ? sign(null, Buffer.from(input), key)
      : sign('sha256', Buffer.from(input), alg === 'ES256' ? { key, dsaEncoding: 'ieee-p1363' } : key);
  return `${input}.${signature.toString('base64url')}`;
}

/** One valid token (subject number `n`), with the usual roles or the given ones. */
export function mintOne(key: BenchKey, n: number, ttlSeconds: number, roles?: readonly string[]): string {
  return signToken(createPrivateKey(key.privatePem), key.alg, key.kid, payload(n, ttlSeconds, roles));
}

/** The same header and payload shape with a random signature of the right length: fails verification only. */
export function forgeOne(key: BenchKey, n: number, ttlSeconds: number): string {
  const valid = mintOne(key, n, ttlSeconds);
  const input = valid.slice(0, valid.lastIndexOf('.'));
  return `${input}.${forgedSignature(key)}`;
}

/**
 * Random signature bytes, the worst case for the verifier. A random RSA value is often at or above the
 * modulus, which OpenSSL refuses before the exponentiation; a forger picks values below it, so the top bit
 * is cleared (a k-byte modulus has it set) and every refusal pays the full public-key operation. Likewise
 * Ed25519 refuses S ≥ L (RFC 8032 §5.1.7) before any point arithmetic, so S (the last 32 bytes, little-endian)
 * is kept below 2^252.
 */
function forgedSignature(key: BenchKey): string {
  const bytes = randomBytes(key.signatureBytes);
  if (key.alg.startsWith('RS') || key.alg.startsWith('PS')) bytes[0]! &= 0x7f;
  if (key.alg === 'EdDSA') bytes[63]! &= 0x0f;
  return bytes.toString('base64url');
}

/**
 * Writes `count` distinct valid tokens (subjects `first`..) to `file`, one per line, signing on up to
 * `availableParallelism()` worker threads. Returns the elapsed milliseconds.
 */
export async function mintFile(key: BenchKey, first: number, count: number, ttlSeconds: number, file: string): Promise<number> {
  const started = performance.now();
  const threads = Math.max(1, Math.min(availableParallelism(), Math.ceil(count / 2000)));
  const share = Math.ceil(count / threads);
  const parts = await Promise.all(
    Array.from({ length: threads }, (_, i) => {
      const from = first + i * share;
      const n = Math.max(0, Math.min(share, first + count - from));
      return new Promise<string>((resolve, reject) => {
        const worker = new Worker(new URL(import.meta.url), {
          workerData: { privatePem: key.privatePem, alg: key.alg, kid: key.kid, from, count: n, ttlSeconds },
        });
        worker.once('message', (text: string) => resolve(text));
        worker.once('error', reject);
      });
    }),
  );
  writeFileSync(file, parts.filter((part) => part !== '').join('\n') + '\n');
  return performance.now() - started;
}

/** Writes `count` distinct tokens with bad signatures (no signing needed: cheap). */
export function forgeFile(key: BenchKey, first: number, count: number, ttlSeconds: number, file: string): void {
  writeFileSync(file, forgeTokens(key, first, count, ttlSeconds).join('\n') + '\n');
}

/** `count` distinct tokens (subjects `first`..) with bad signatures, signing only one to take its header. */
export function forgeTokens(key: BenchKey, first: number, count: number, ttlSeconds: number): string[] {
  const template = mintOne(key, first, ttlSeconds);
  const [header] = template.split('.') as [string];
  const tokens: string[] = [];
  for (let n = first; n < first + count; n++) {
    const body = Buffer.from(JSON.stringify(payload(n, ttlSeconds))).toString('base64url');
    tokens.push(`${header}.${body}.${forgedSignature(key)}`);
  }
  return tokens;
}

/** The public key of `key` as a KeyObject (for self-checks). */
export function publicKeyOf(key: BenchKey): KeyObject {
  return createPublicKey(createPrivateKey(key.privatePem));
}

if (!isMainThread && parentPort !== null) {
  const job = workerData as { privatePem: string; alg: Alg; kid: string; from: number; count: number; ttlSeconds: number };
  const privateKey = createPrivateKey(job.privatePem);
  const lines: string[] = [];
  for (let n = job.from; n < job.from + job.count; n++) {
    lines.push(signToken(privateKey, job.alg, job.kid, payload(n, job.ttlSeconds)));
  }
  parentPort.postMessage(lines.join('\n'));
}
