/**
 * The key source of one issuer: its static keys plus, optionally, one remote JWK Set. Keys are bound to
 * their issuer (DESIGN §1) and to their algorithm family (`keyFitsAlgorithm`). The token header only says
 * which key to pick (`kid`, `alg`); it never supplies one: `jwk`, `jku`, `x5u` and `x5c` are ignored
 * (RFC 8725 §3.10 — a key named by the token is chosen by the attacker).
 */
import { ProxyError } from '../errors.ts';
import { keyFitsAlgorithm } from './algorithms.ts';
import type { LoadedKey } from './static-keys.ts';

export interface KeySourceStatus {
  /** The source can verify tokens now (static keys loaded, or a remote set with unexpired keys). */
  readonly ready: boolean;
  readonly keyCount: number;
  /** Epoch ms of the last successful fetch; undefined for static-only sources or before the first success. */
  readonly lastSuccessAt: number | undefined;
  /** Reason of the last failed fetch (`http_404`, `timeout`, ...); cleared by a success. */
  readonly lastError: string | undefined;
  readonly kids: readonly string[];
}

/** Receives one call per JWKS / discovery fetch; `reason` is a bounded label (safe for metrics). */
export interface KeySourceObserver {
  jwksFetch(issuerId: string, outcome: 'ok' | 'error', reason?: string): void;
}

export interface KeySource {
  /**
   * The key that verifies a token with this header. Synchronous when the key is at hand; a promise only
   * when a refetch is needed.
   *
   * @throws ProxyError ERR_TOKEN_KEY_UNKNOWN (no single key fits `kid` + `alg`), ERR_KEYS_UNAVAILABLE
   *   (a remote set that has no keys; carries `retryAfter`).
   */
  getKey(header: { alg: string; kid?: string }): Promise<LoadedKey> | LoadedKey;
  /** First fetch for remote sets; resolves even when it fails. */
  start(): Promise<void>;
  /** Stops background refresh timers. */
  close(): void;
  status(): KeySourceStatus;
}

/** What the combinator needs from a remote key set (implemented by `createRemoteJwks`). */
export interface RemoteKeySet {
  /** The keys usable now; empty when never fetched or dropped after `staleMaxMs`. */
  keys(): readonly LoadedKey[];
  /** Refetch unless one happened within the cooldown; joins a fetch in flight (single-flight). */
  refetchIfAllowed(): Promise<void>;
  readonly retryAfterSeconds: number;
  start(): Promise<void>;
  close(): void;
  status(): KeySourceStatus;
}

/** Result of matching a header against a key list. */
export type KeyPick =
  | { readonly found: LoadedKey }
  | { readonly found: undefined; readonly ambiguous: number };

/**
 * Picks the one key for `header` among `keys`. With a `kid`, keys carrying that kid and fitting the alg;
 * when none carries it, a key without any kid that fits (a PEM configured without kid still verifies tokens
 * whose IdP sets one). Without a `kid`, exactly one key of the alg family must fit: two candidates are
 * ambiguous and refused rather than tried in turn (trying each multiplies the cost of a forged token).
 */
export function pickKey(keys: readonly LoadedKey[], header: { alg: string; kid?: string }): KeyPick {
  const fitting = keys.filter((candidate) => keyFitsAlgorithm(candidate, header.alg));
  let candidates = fitting;
  if (header.kid !== undefined) {
    candidates = fitting.filter((candidate) => candidate.kid === header.kid);
    if (candidates.length === 0) candidates = fitting.filter((candidate) => candidate.kid === undefined);
  }
  const [only] = candidates;
  if (candidates.length === 1 && only !== undefined) return { found: only };
  return { found: undefined, ambiguous: candidates.length };
}

/** Remembered (alg, kid) -> key picks per issuer; further picks are computed each time. */
const MAX_REMEMBERED_PICKS = 256;

/**
 * Builds the key source of one issuer from its static keys and an optional remote set. Static-only sources
 * are always ready; with a remote set, readiness is the remote's (its keys are the ones the IdP rotates).
 *
 * @example
 *   const keys = createKeySource({ staticKeys: await loadStaticKeys(spec), remote: createRemoteJwks(opts) });
 */
export function createKeySource(parts: {
  staticKeys: readonly LoadedKey[];
  remote?: RemoteKeySet | undefined;
}): KeySource {
  const staticKeys = Object.freeze([...parts.staticKeys]);
  const remote = parts.remote;
  const allKeys = (remoteKeys = remote?.keys()): readonly LoadedKey[] => (remoteKeys === undefined ? staticKeys : [...staticKeys, ...remoteKeys]);

  const unknown = (header: { alg: string; kid?: string }, pick: KeyPick): ProxyError =>
    new ProxyError('ERR_TOKEN_KEY_UNKNOWN', {
      detail:
        pick.found === undefined && pick.ambiguous > 1
          ? `${pick.ambiguous} keys fit alg ${header.alg}${header.kid === undefined ? ' and the token has no kid' : ''}`
          : `no key fits alg ${header.alg}${header.kid === undefined ? '' : ` and the token kid`}`,
    });

  async function getAfterRefetch(header: { alg: string; kid?: string }, remoteSet: RemoteKeySet): Promise<LoadedKey> {
    // Joins a fetch in flight, or starts one when the cooldown allows (RFC 7517 §5 rotation: a new kid
    // appears in the set before tokens use it, so one refetch is enough to learn it).
    await remoteSet.refetchIfAllowed();
    const pick = pickKey(allKeys(), header);
    if (pick.found !== undefined) return pick.found;
    if (remoteSet.keys().length === 0) {
      throw new ProxyError('ERR_KEYS_UNAVAILABLE', {
        retryAfter: remoteSet.retryAfterSeconds,
        detail: `the issuer JWKS has no usable keys (${remoteSet.status().lastError ?? 'not fetched yet'})`,
      });
    }
    throw unknown(header, pick);
  }

  // Which key a header picks only changes when the key set does, and every request asks (the token cache
  // asks again on each hit), so picks are remembered per (alg, kid) until the remote set is replaced. Bounded:
  // a kid-less key answers any kid, and kids are chosen by whoever sends the token.
  // The last pick is checked first by comparing alg and kid: tokens of one issuer mostly carry one kid, and
  // the Map key would be a new string to build and hash for every new token.
  const picks = new Map<string, LoadedKey>();
  let picksFor: readonly LoadedKey[] | undefined;
  let last: { alg: string; kid: string | undefined; key: LoadedKey } | undefined;

  return {
    getKey(header) {
      const remoteKeys = remote?.keys();
      if (remoteKeys !== picksFor) {
        picks.clear();
        last = undefined;
        picksFor = remoteKeys;
      }
      if (last !== undefined && last.alg === header.alg && last.kid === header.kid) return last.key;
      const id = header.kid === undefined ? header.alg : `${header.alg} ${header.kid}`;
      const known = picks.get(id);
      if (known !== undefined) {
        last = { alg: header.alg, kid: header.kid, key: known };
        return known;
      }
      const pick = pickKey(allKeys(remoteKeys), header);
      if (pick.found !== undefined) {
        if (picks.size < MAX_REMEMBERED_PICKS) picks.set(id, pick.found);
        last = { alg: header.alg, kid: header.kid, key: pick.found };
        return pick.found;
      }
      // Several keys fit and nothing in the token tells them apart: a refetch cannot help.
      if (remote === undefined || pick.ambiguous > 1) throw unknown(header, pick);
      return getAfterRefetch(header, remote);
    },
    start: () => remote?.start() ?? Promise.resolve(),
    close: () => remote?.close(),
    status() {
      if (remote === undefined) {
        return {
          ready: staticKeys.length > 0,
          keyCount: staticKeys.length,
          lastSuccessAt: undefined,
          lastError: undefined,
          kids: kidsOf(staticKeys),
        };
      }
      const remoteStatus = remote.status();
      return {
        ready: remoteStatus.ready,
        keyCount: staticKeys.length + remoteStatus.keyCount,
        lastSuccessAt: remoteStatus.lastSuccessAt,
        lastError: remoteStatus.lastError,
        kids: [...kidsOf(staticKeys), ...remoteStatus.kids],
      };
    },
  };
}

export function kidsOf(keys: readonly LoadedKey[]): string[] {
  return keys.flatMap((key) => (key.kid === undefined ? [] : [key.kid]));
}
