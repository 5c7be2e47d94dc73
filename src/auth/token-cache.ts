/**
 * A verified-token cache: the same token presented again skips signature verification, which is most of
 * the cost of a request on RSA and EC. It stays correct by construction:
 * - an entry never outlives the token's `exp` (checked on every hit; tokens without `exp` are not cached);
 * - an entry is used only while the key that verified it is still the issuer's key for that header, so a key
 *   dropped from the issuer's JWKS invalidates every token it verified, at the next request;
 * - the route's issuer restriction is re-checked on every hit;
 * - failures are never cached; size is bounded (oldest entries go first).
 * Keys are the token strings themselves: they live only in this process's memory, as the request does, and
 * hashing each token would cost more than the lookup saves.
 */
import { ProxyError } from '../errors.ts';
import type { IssuerRegistry } from './issuers.ts';
import { verifyToken } from './verify.ts';
import type { VerifiedToken } from './verify.ts';

export interface TokenVerifier {
  /** Same contract and codes as `verifyToken`. */
  verify(token: string, allowedIssuerIds: readonly string[]): Promise<VerifiedToken>;
  readonly size: () => number;
}

export interface TokenCacheOptions {
  readonly maxEntries: number;
  /** Tokens longer than this are verified every time rather than held in memory. */
  readonly maxTokenBytes: number;
  readonly now?: () => number;
}

export function createTokenVerifier(registry: IssuerRegistry, options: TokenCacheOptions): TokenVerifier {
  const entries = new Map<string, VerifiedToken>();
  const now = options.now ?? Date.now;
  return {
    size: () => entries.size,
    async verify(token, allowedIssuerIds) {
      const hit = entries.get(token);
      if (hit !== undefined) {
        if (isStillValid(hit, now() / 1000)) {
          if (allowedIssuerIds.length > 0 && !allowedIssuerIds.includes(hit.issuer.config.id)) {
            throw new ProxyError('ERR_TOKEN_ISSUER_UNKNOWN', { detail: `issuer ${hit.issuer.config.id} is not allowed on this route` });
          }
          return hit;
        }
        entries.delete(token);
      }
      const verified = await verifyToken(token, registry, allowedIssuerIds, now() / 1000);
      if (verified.expiresAt !== undefined && token.length <= options.maxTokenBytes && options.maxEntries > 0) {
        if (entries.size >= options.maxEntries) entries.delete(entries.keys().next().value!);
        entries.set(token, verified);
      }
      return verified;
    },
  };
}

/** Not expired (no leeway: a cached answer is never more lenient than a fresh one) and key still current. */
function isStillValid(entry: VerifiedToken, nowSeconds: number): boolean {
  if (entry.expiresAt === undefined || entry.expiresAt <= nowSeconds) return false;
  try {
    const current = entry.issuer.keys.getKey(entry.header);
    if (current instanceof Promise) {
      // The key is not at hand (a refetch is under way): verify afresh, which joins that refetch. The
      // promise is settled elsewhere; silence it here so its rejection is never unhandled.
      current.catch(() => {});
      return false;
    }
    return current === entry.key;
  } catch {
    return false;
  }
}
