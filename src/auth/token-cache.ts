/**
 * A verified-token cache: the same token presented again skips signature verification, which is most of
 * the cost of a request on RSA and EC. It stays correct by construction:
 * - an entry never outlives the token's `exp` (checked on every hit; tokens without `exp` are not cached);
 * - an entry is used only while the key that verified it is still the issuer's key for that header, so a key
 *   dropped from the issuer's JWKS invalidates every token it verified, at the next request;
 * - the route's issuer restriction is re-checked on every hit;
 * - failures are never cached; size is bounded (oldest entries go first).
 * Entries hold the token string itself, in this process's memory only, as the request does. The Map key is the
 * token's last 43 characters (the end of its signature): V8 hashes a fresh string on every lookup, and an RS256
 * token is ~850 characters. A hit counts only when the whole token is equal, so two tokens sharing an ending
 * (only a forger can make one) just miss.
 *
 * Eviction order is kept in a ring of keys, not read from the Map: V8's ordered hash tables keep deleted
 * entries as holes at the front until the next rehash, so `map.keys().next()` after many oldest-first
 * deletions walks thousands of holes. With every token new (bench scenario `distinct`) that walk cost more
 * CPU per request than the RSA verification itself.
 *
 * Admission: a token enters the cache on its second successful verification, not its first. A doorkeeper (a
 * fixed table of 32-bit fingerprints of recent tokens, TinyLFU's) remembers the first. Tokens used once — a
 * client minting one per request, a flood of distinct tokens — then never churn the cache: each cached entry
 * lives long enough to be promoted to V8's old generation and die there, which cost ~10 µs per request in
 * the bench's every-token-new scenario, and they cannot evict the tokens that are reused. A reused token
 * pays one extra verification.
 */
import { ProxyError, orThrow } from '../errors.ts';
import type { IssuerRegistry } from './issuers.ts';
import { verifyTokenNow } from './verify.ts';
import type { VerifiedToken } from './verify.ts';

export interface TokenVerifier {
  /** Same contract and codes as `verifyToken`. */
  verify(token: string, allowedIssuerIds: readonly string[]): Promise<VerifiedToken>;
  /**
   * The same, for the request path: synchronous unless a key refetch is needed, and a refused token is
   * returned as its ProxyError instead of thrown (see `verifyTokenNow`).
   */
  check(token: string, allowedIssuerIds: readonly string[]): VerifiedToken | ProxyError | Promise<VerifiedToken>;
  readonly size: () => number;
}

export interface TokenCacheOptions {
  readonly maxEntries: number;
  /** Tokens longer than this are verified every time rather than held in memory. */
  readonly maxTokenBytes: number;
  readonly now?: () => number;
}

export function createTokenVerifier(registry: IssuerRegistry, options: TokenCacheOptions): TokenVerifier {
  const entries = new Map<string, Entry>();
  const max = options.maxEntries;
  // Four fingerprint slots per cache entry, a power of two (64k slots, 256 KiB, at the default 10k entries).
  const seenMask = max > 0 ? 2 ** Math.ceil(Math.log2(Math.max(1024, max * 4))) - 1 : 0;
  const seen = new Int32Array(seenMask + 1);
  // ring[i] is the key inserted i-th modulo max; its entry is evicted when the slot comes round again,
  // unless that key left the cache earlier (expired, key withdrawn) and was inserted again elsewhere.
  const ring: (string | undefined)[] = new Array<string | undefined>(max).fill(undefined);
  let cursor = 0;
  const now = options.now ?? Date.now;
  /** True on the second sighting of `key` (the doorkeeper); records the first. */
  const admit = (key: string): boolean => {
    const fp = fingerprint(key);
    const slot = fp & seenMask;
    if (seen[slot] === fp) return true;
    seen[slot] = fp;
    return false;
  };
  const remember = (token: string, key: string, verified: VerifiedToken): VerifiedToken => {
    if (verified.expiresAt !== undefined && token.length <= options.maxTokenBytes && max > 0 && admit(key)) {
      const evicted = ring[cursor];
      if (evicted !== undefined && entries.get(evicted)?.slot === cursor) entries.delete(evicted);
      ring[cursor] = key;
      entries.set(key, { token, verified, slot: cursor });
      cursor = cursor + 1 === max ? 0 : cursor + 1;
    }
    return verified;
  };
  const check = (token: string, allowedIssuerIds: readonly string[]): VerifiedToken | ProxyError | Promise<VerifiedToken> => {
    const key = token.slice(-KEY_CHARS);
    const hit = entries.get(key);
    if (hit !== undefined && hit.token === token) {
      const cached = hit.verified;
      if (isStillValid(cached, now() / 1000)) {
        if (allowedIssuerIds.length > 0 && !allowedIssuerIds.includes(cached.issuer.config.id)) {
          return new ProxyError('ERR_TOKEN_ISSUER_UNKNOWN', { detail: `issuer ${cached.issuer.config.id} is not allowed on this route` });
        }
        return cached;
      }
      entries.delete(key);
    }
    const verified = verifyTokenNow(token, registry, allowedIssuerIds, now() / 1000);
    if (verified instanceof ProxyError) return verified;
    return verified instanceof Promise ? verified.then((v) => remember(token, key, v)) : remember(token, key, verified);
  };
  return {
    size: () => entries.size,
    check,
    async verify(token, allowedIssuerIds) {
      return orThrow(check(token, allowedIssuerIds));
    },
  };
}

/**
 * FNV-1a over the key's last FINGERPRINT_CHARS code units, never 0 (0 marks an empty doorkeeper slot). The
 * key ends a signature, so those characters carry ~60 random bits; a collision only admits a token one use
 * early, so hashing all 43 would buy nothing for its cost on every new token.
 */
function fingerprint(key: string): number {
  let h = 0x811c9dc5;
  for (let i = Math.max(0, key.length - FINGERPRINT_CHARS); i < key.length; i++) h = Math.imul(h ^ key.charCodeAt(i), 0x01000193);
  return h === 0 ? 1 : h;
}

const FINGERPRINT_CHARS = 10;

/** Map key length: the tail of the signature, high-entropy for every algorithm (an HS256 signature is 43). */
const KEY_CHARS = 43;

interface Entry {
  readonly token: string;
  readonly verified: VerifiedToken;
  /** The ring slot that holds this key; a stale slot (key re-inserted elsewhere) evicts nothing. */
  readonly slot: number;
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
