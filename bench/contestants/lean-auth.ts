/**
 * The lean contestant's token check: the least a correct JWT check can do with no cache. Take the bearer
 * token, split it, JSON-parse header and payload, check alg, `crypto.verify` over a `KeyObject` imported
 * once, check exp / iss / aud. Shared by the lean-verify contestant (its whole auth) and bench/verify-path.ts
 * (the same check in a loop, next to Portcullis's), so both measure one definition of "lean".
 */
import { verify } from 'node:crypto';
import type { KeyObject } from 'node:crypto';

export interface LeanAuthOptions {
  /** RS256, ES256 or EdDSA. */
  readonly alg: string;
  readonly key: KeyObject;
  readonly issuer: string;
  readonly audience: string;
}

/** Claims of a valid `Authorization: Bearer` token, or undefined. */
export type LeanAuthenticator = (authorization: string | undefined) => Record<string, unknown> | undefined;

export function createLeanAuthenticator(options: LeanAuthOptions): LeanAuthenticator {
  /** node:crypto digest per alg (null: EdDSA hashes internally) and JWS' raw r||s ECDSA encoding (RFC 7518 §3.4). */
  const digest = options.alg === 'EdDSA' ? null : `sha${options.alg.slice(2)}`;
  // The documented way to pass JWS' encoding; on Node 24 it costs more than a DER re-encoding (bench/crypto-verify.ts),
  // which a lean proxy written from the docs would not know.
  const verifyKey = options.alg.startsWith('ES') ? { key: options.key, dsaEncoding: 'ieee-p1363' as const } : options.key;
  return (authorization) => {
    if (authorization === undefined || !authorization.startsWith('Bearer ')) return undefined;
    const token = authorization.slice(7);
    const parts = token.split('.');
    if (parts.length !== 3) return undefined;
    const [h, p, s] = parts as [string, string, string];
    let header: Record<string, unknown>;
    let claims: Record<string, unknown>;
    try {
      header = JSON.parse(Buffer.from(h, 'base64url').toString('utf8')) as Record<string, unknown>;
      claims = JSON.parse(Buffer.from(p, 'base64url').toString('utf8')) as Record<string, unknown>;
    } catch {
      return undefined;
    }
    if (header.alg !== options.alg) return undefined;
    const signed = Buffer.from(token.slice(0, h.length + 1 + p.length), 'latin1');
    if (!verify(digest, signed, verifyKey, Buffer.from(s, 'base64url'))) return undefined;
    const now = Date.now() / 1000;
    if (typeof claims.exp !== 'number' || claims.exp <= now) return undefined;
    if (claims.iss !== options.issuer) return undefined;
    const aud = claims.aud;
    if (aud !== options.audience && !(Array.isArray(aud) && aud.includes(options.audience))) return undefined;
    return claims;
  };
}
