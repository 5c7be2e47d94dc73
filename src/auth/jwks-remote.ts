/**
 * A remote JWK Set, optionally located through OIDC discovery. Written here rather than with jose's
 * `createRemoteJWKSet` because the proxy needs what it does not offer: stale-if-error, a readiness signal,
 * classified fetch failures for metrics, and fetch counts bounded per issuer (DESIGN §1 "bounded everything").
 *
 * Life of the keys: a fetch stores them with a TTL from Cache-Control (clamped); when the TTL elapses a
 * background refresh replaces them; when refreshes fail they keep serving until `lastSuccess + staleMaxMs`
 * (stale-if-error, RFC 5861 §4), then they are dropped and the issuer is not ready.
 */
import { request } from 'undici';
import type { JwksPolicy } from '../config/types.ts';
import { createKeySource, kidsOf } from './key-source.ts';
import type { KeySource, KeySourceObserver, KeySourceStatus, RemoteKeySet } from './key-source.ts';
import { importJwk } from './static-keys.ts';
import type { LoadedKey } from './static-keys.ts';

export interface RemoteJwksOptions {
  /** Config id of the issuer; the label of every observer call. */
  readonly issuerId: string;
  /** Fetched directly when set; otherwise taken from the discovery document. */
  readonly jwksUri?: string | undefined;
  readonly discoveryUrl?: string | undefined;
  /** The discovery document's `issuer` must equal this exactly (OIDC Discovery 1.0 §4.3). */
  readonly expectedIssuer: string;
  readonly policy: JwksPolicy;
  readonly observer?: KeySourceObserver | undefined;
  /** Epoch ms clock; injected by tests so TTL and staleness are checked without sleeping. */
  readonly now?: (() => number) | undefined;
}

export interface RemoteJwksStatus extends KeySourceStatus {
  /** Epoch ms after which the keys are refreshed (the clamped Cache-Control max-age). */
  readonly expiresAt: number | undefined;
  /** Keys of the last successful fetch that were ignored (`use: enc`, unsupported kty/crv/alg, invalid). */
  readonly skippedKeys: number;
  /** A fetch is in flight. */
  readonly refreshing: boolean;
  /** The JWKS URL in use (configured or discovered); undefined before discovery succeeded. */
  readonly jwksUri: string | undefined;
}

export interface RemoteJwks extends KeySource, RemoteKeySet {
  /** Fetches now, ignoring the cooldown; joins a fetch in flight. Never rejects. */
  refresh(): Promise<void>;
  status(): RemoteJwksStatus;
}

/** Bounded failure labels, as the observer and `status().lastError` report them. */
export type JwksFailureReason =
  | 'timeout'
  | 'network'
  | `http_${number}`
  | 'too_large'
  | 'invalid_json'
  | 'invalid_jwks'
  | 'no_usable_keys'
  | 'invalid_discovery'
  | 'issuer_mismatch'
  | 'insecure_jwks_uri'
  | 'stale';

const MAX_TIMER_MS = 2_147_483_647;
const MIN_RETRY_MS = 1_000;

/** A classified fetch failure; internal to this module. */
class FetchFailure extends Error {
  readonly reason: JwksFailureReason;
  constructor(reason: JwksFailureReason) {
    super(reason);
    this.reason = reason;
  }
}

/**
 * Creates the remote key set of one issuer. Nothing is fetched until `start()` (or a first `getKey`).
 *
 * @throws Error when neither URL is given, or a configured URL is not https (loopback http excepted).
 * @example
 *   const jwks = createRemoteJwks({ issuerId: 'corp', discoveryUrl, expectedIssuer: iss, policy });
 *   await jwks.start(); // resolves even if the IdP is down; getKey then throws ERR_KEYS_UNAVAILABLE
 */
export function createRemoteJwks(opts: RemoteJwksOptions): RemoteJwks {
  const { issuerId, expectedIssuer, policy, observer } = opts;
  const now = opts.now ?? Date.now;
  const configured = opts.jwksUri ?? opts.discoveryUrl;
  if (configured === undefined) throw new Error(`issuer ${issuerId}: a jwks_uri or a discovery URL is required`);
  if (!isTrustedKeyUrl(configured)) {
    throw new Error(`issuer ${issuerId}: ${configured} must use https (plain http only for loopback hosts)`);
  }

  let current: readonly LoadedKey[] = [];
  let lastSuccessAt: number | undefined;
  let expiresAt: number | undefined;
  let lastError: JwksFailureReason | undefined;
  let lastFetchStartedAt: number | undefined;
  let consecutiveFailures = 0;
  let skippedKeys = 0;
  let discoveredUri: string | undefined;
  let inflight: Promise<void> | undefined;
  let timer: NodeJS.Timeout | undefined;
  let closed = false;

  /** The keys, after dropping them once they outlived both their TTL and the stale-if-error window. */
  function usableKeys(): readonly LoadedKey[] {
    if (current.length > 0 && lastSuccessAt !== undefined) {
      const usableUntil = Math.max(expiresAt ?? 0, lastSuccessAt + policy.staleMaxMs);
      if (now() > usableUntil) {
        current = [];
        lastError ??= 'stale';
      }
    }
    return current;
  }

  function refresh(): Promise<void> {
    if (closed) return Promise.resolve();
    inflight ??= fetchOnce();
    return inflight;
  }

  function refetchIfAllowed(): Promise<void> {
    if (inflight !== undefined) return inflight;
    // The cooldown bounds how often tokens with unknown kids (anyone can mint one) make us call the IdP.
    if (lastFetchStartedAt !== undefined && now() - lastFetchStartedAt < policy.cooldownMs) return Promise.resolve();
    return refresh();
  }

  /** One discovery + JWKS fetch. Never rejects; clears `inflight` itself before telling the observer. */
  async function fetchOnce(): Promise<void> {
    lastFetchStartedAt = now();
    let outcome: 'ok' | 'error' = 'ok';
    try {
      const jwksUri = opts.jwksUri ?? discoveredUri ?? (await discover());
      const response = await fetchJson(jwksUri, policy);
      const { keys, skipped } = importJwks(response.body, jwksUri);
      const fetchedAt = now();
      current = keys;
      skippedKeys = skipped;
      lastSuccessAt = fetchedAt;
      expiresAt = fetchedAt + ttlFromHeaders(response.headers, policy);
      lastError = undefined;
      consecutiveFailures = 0;
    } catch (error) {
      outcome = 'error';
      lastError = error instanceof FetchFailure ? error.reason : 'network';
      consecutiveFailures += 1;
      // The IdP may have moved its jwks_uri: rediscover on the next attempt.
      discoveredUri = undefined;
    }
    // State first, observer last: whoever reacts to the event sees this fetch finished (no stale join).
    inflight = undefined;
    scheduleNext();
    notify(outcome, outcome === 'error' ? lastError : undefined);
  }

  async function discover(): Promise<string> {
    const url = opts.discoveryUrl ?? '';
    const { body } = await fetchJson(url, policy);
    if (!isRecord(body)) throw new FetchFailure('invalid_discovery');
    // OIDC Discovery 1.0 §4.3: the issuer in the document MUST be identical to the one we expect; otherwise
    // a compromised or misconfigured document could lend us another issuer's keys.
    if (body.issuer !== expectedIssuer) throw new FetchFailure('issuer_mismatch');
    if (typeof body.jwks_uri !== 'string') throw new FetchFailure('invalid_discovery');
    if (!isTrustedKeyUrl(body.jwks_uri)) throw new FetchFailure('insecure_jwks_uri');
    discoveredUri = body.jwks_uri;
    return body.jwks_uri;
  }

  function scheduleNext(): void {
    if (closed) return;
    if (timer !== undefined) clearTimeout(timer);
    // Delays are durations, not absolute times of the (injectable) clock, so a test clock never makes a
    // real timer fire early.
    const delay =
      lastError === undefined
        ? Math.max((expiresAt ?? 0) - (lastSuccessAt ?? 0), MIN_RETRY_MS)
        : Math.min(Math.max(policy.cooldownMs, MIN_RETRY_MS) * 2 ** Math.min(consecutiveFailures - 1, 16), policy.maxTtlMs);
    timer = setTimeout(() => {
      timer = undefined;
      void refresh();
    }, Math.min(Math.max(delay, MIN_RETRY_MS), MAX_TIMER_MS));
    // A refresh timer must never keep the process alive (graceful shutdown, CLI commands).
    timer.unref();
  }

  function notify(outcome: 'ok' | 'error', reason?: string): void {
    try {
      observer?.jwksFetch(issuerId, outcome, reason);
    } catch {
      // A metrics bug must not take the keys down with it.
    }
  }

  function status(): RemoteJwksStatus {
    const keys = usableKeys();
    return {
      ready: keys.length > 0,
      keyCount: keys.length,
      lastSuccessAt,
      lastError,
      kids: kidsOf(keys),
      expiresAt,
      skippedKeys,
      refreshing: inflight !== undefined,
      jwksUri: opts.jwksUri ?? discoveredUri,
    };
  }

  const self: RemoteJwks = {
    retryAfterSeconds: policy.retryAfterSeconds,
    keys() {
      const keys = usableKeys();
      // Serve the current keys while a TTL refresh runs in the background (stale-while-revalidate).
      if (expiresAt !== undefined && now() >= expiresAt) void refetchIfAllowed();
      return keys;
    },
    refetchIfAllowed,
    refresh,
    getKey: (header) => resolver.getKey(header),
    start: () => refresh(),
    close() {
      closed = true;
      if (timer !== undefined) clearTimeout(timer);
      timer = undefined;
    },
    status,
  };
  const resolver = createKeySource({ staticKeys: [], remote: self });
  return self;
}

/**
 * Whether keys may be fetched from `url`: https, or http to a loopback host. The JWKS is the trust root of
 * every token, and a network attacker could substitute keys fetched over plain http (OIDC Discovery 1.0 §3
 * and RFC 8414 §2 require TLS for `jwks_uri`); loopback traffic never leaves the host, which keeps local
 * IdPs and tests usable.
 */
export function isTrustedKeyUrl(url: string): boolean {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    return false;
  }
  if (parsed.protocol === 'https:') return true;
  if (parsed.protocol !== 'http:') return false;
  const host = parsed.hostname;
  // URL normalises IPv4 forms (127.1, 0x7f.1) to dotted decimal, so one pattern covers 127.0.0.0/8.
  return host === 'localhost' || host === '[::1]' || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(host);
}

interface JsonResponse {
  readonly body: unknown;
  readonly headers: Record<string, string | string[] | undefined>;
}

async function fetchJson(url: string, policy: JwksPolicy): Promise<JsonResponse> {
  const signal = AbortSignal.timeout(policy.timeoutMs);
  try {
    // undici's request follows no redirects: a 3xx is a failure, so a redirect cannot downgrade to http.
    const response = await request(url, { method: 'GET', signal, headers: { accept: 'application/json' } });
    if (response.statusCode !== 200) {
      discard(response.body);
      throw new FetchFailure(`http_${response.statusCode}`);
    }
    const declared = Number(response.headers['content-length']);
    if (Number.isFinite(declared) && declared > policy.maxBytes) {
      discard(response.body);
      throw new FetchFailure('too_large');
    }
    const chunks: Buffer[] = [];
    let size = 0;
    for await (const chunk of response.body) {
      const bytes = chunk as Buffer;
      size += bytes.length;
      // Chunked answers have no Content-Length: count as we read and stop at the limit.
      if (size > policy.maxBytes) {
        discard(response.body);
        throw new FetchFailure('too_large');
      }
      chunks.push(bytes);
    }
    return { body: parseJsonBytes(Buffer.concat(chunks)), headers: response.headers };
  } catch (error) {
    if (error instanceof FetchFailure) throw error;
    throw new FetchFailure(signal.aborted ? 'timeout' : 'network');
  }
}

/**
 * Drops a body we will not read. undici reports a destroyed body as an AbortError event; nothing waits
 * for it here, so it is swallowed rather than left to become an uncaught exception.
 */
function discard(body: { on(event: 'error', listener: () => void): unknown; destroy(): unknown }): void {
  body.on('error', () => {});
  body.destroy();
}

function parseJsonBytes(bytes: Buffer): unknown {
  try {
    // RFC 8259 §8.1: JSON exchanged between systems is UTF-8; refuse invalid sequences instead of guessing.
    return JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(bytes));
  } catch {
    throw new FetchFailure('invalid_json');
  }
}

function importJwks(body: unknown, source: string): { keys: LoadedKey[]; skipped: number } {
  if (!isRecord(body) || !Array.isArray(body.keys)) throw new FetchFailure('invalid_jwks');
  const keys: LoadedKey[] = [];
  let skipped = 0;
  for (const jwk of body.keys) {
    const imported = importJwk(jwk, source, false);
    if (imported.ok) keys.push(imported.key);
    else skipped += 1;
  }
  // A set with nothing we can use is treated as a failed fetch, so the last good keys keep serving.
  if (keys.length === 0) throw new FetchFailure('no_usable_keys');
  return { keys, skipped };
}

/** RFC 9111 §5.2.2.1 max-age minus §5.1 Age, clamped into the policy; no-store/no-cache mean the minimum. */
export function ttlFromHeaders(headers: Record<string, string | string[] | undefined>, policy: JwksPolicy): number {
  const raw = headers['cache-control'];
  const value = Array.isArray(raw) ? raw.join(',') : (raw ?? '');
  let ttl = policy.maxTtlMs;
  if (/(?:^|,)\s*(?:no-store|no-cache)\s*(?:,|$)/i.test(value)) ttl = policy.minTtlMs;
  else {
    const match = /(?:^|,)\s*max-age\s*=\s*"?(\d+)"?\s*(?:,|$)/i.exec(value);
    if (match?.[1] !== undefined) {
      const age = Number(headers.age);
      ttl = (Number(match[1]) - (Number.isFinite(age) && age > 0 ? age : 0)) * 1000;
    }
  }
  return Math.min(Math.max(ttl, policy.minTtlMs), policy.maxTtlMs);
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}
