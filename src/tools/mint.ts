/**
 * Token minting for `portcullis token` and the test suites: signs a JWT with a local key so the proxy can be
 * tried without an IdP. The `kid` defaults to the public key's RFC 7638 thumbprint, the same default as
 * `generateKeyFiles`, so a token minted from `private.pem` verifies against the `jwks.json` next to it.
 */
import { createPrivateKey, createSecretKey, randomUUID } from 'node:crypto';
import type { KeyObject } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { SignJWT } from 'jose';
import type { JWTHeaderParameters, JWTPayload } from 'jose';
import { inferAlgorithm, thumbprintOf } from './keygen.ts';

/** Default lifetime of a minted token: long enough to try a few requests, short enough to be harmless. */
export const DEFAULT_TTL_MS = 15 * 60_000;

/** Options of {@link mintToken}. Exactly one of `keyFile`, `privateKeyPem` and `secret` is required. */
export interface MintTokenOptions {
  /** Path of a PEM private key (PKCS#8, or PKCS#1 / SEC1, which Node also reads). */
  readonly keyFile?: string;
  readonly privateKeyPem?: string;
  /** HMAC secret; `alg` defaults to HS256. No default `kid`: a thumbprint of a secret would publish a hash of it. */
  readonly secret?: Uint8Array;
  /** Inferred from the key when absent: RSA -> RS256, P-256 -> ES256, P-384 -> ES384, Ed25519 -> EdDSA. */
  readonly alg?: string;
  /** Defaults to the RFC 7638 thumbprint of the public key (asymmetric keys only). */
  readonly kid?: string;
  /** JOSE `typ` header; defaults to `JWT`. Use `at+jwt` to imitate RFC 9068 access tokens. */
  readonly typ?: string;
  readonly iss: string;
  readonly aud?: string | string[];
  readonly sub?: string;
  /**
   * Extra claims, applied last: they override the registered claims computed from the other options, so
   * tests can mint deliberately malformed tokens (a string `exp`, a missing `iat` via `undefined`, ...).
   */
  readonly claims?: Record<string, unknown>;
  /** Lifetime; `exp = now + ttlMs`. Negative values mint an already expired token. Default 15 minutes. */
  readonly ttlMs?: number;
  /** When set, `nbf = now + notBeforeMs` (relative, like `ttlMs`; negative puts it in the past). */
  readonly notBeforeMs?: number;
  /** Milliseconds since the epoch; defaults to `Date.now()`. */
  readonly now?: number;
}

const HMAC_ALGORITHMS = new Set(['HS256', 'HS384', 'HS512']);
const EC_CURVE_BY_ALG: ReadonlyMap<string, string> = new Map([
  ['ES256', 'prime256v1'],
  ['ES384', 'secp384r1'],
  ['ES512', 'secp521r1'],
]);

/** Refuses an explicit `alg` the key cannot produce, with a message naming both, before jose's generic one. */
function checkAlgorithmFitsKey(alg: string, key: KeyObject): void {
  let fits: boolean;
  switch (key.asymmetricKeyType) {
    case 'rsa':
      fits = /^(RS|PS)(256|384|512)$/.test(alg);
      break;
    case 'ec':
      fits = EC_CURVE_BY_ALG.get(alg) === key.asymmetricKeyDetails?.namedCurve;
      break;
    case 'ed25519':
      // RFC 8037 `EdDSA` and its fully-specified successor `Ed25519` (RFC 9864) name the same signature.
      fits = alg === 'EdDSA' || alg === 'Ed25519';
      break;
    default:
      fits = false;
  }
  if (!fits) {
    const curve = key.asymmetricKeyDetails?.namedCurve;
    const type = `${String(key.asymmetricKeyType)}${curve === undefined ? '' : ` ${curve}`}`;
    throw new Error(`algorithm ${alg} cannot be used with a ${type} key`);
  }
}

interface SigningKey {
  readonly key: KeyObject;
  readonly alg: string;
  readonly kid: string | undefined;
}

async function resolveSigningKey(opts: MintTokenOptions): Promise<SigningKey> {
  const given = [opts.keyFile, opts.privateKeyPem, opts.secret].filter((value) => value !== undefined).length;
  if (given !== 1) throw new Error('mintToken needs exactly one of keyFile, privateKeyPem and secret');

  if (opts.secret !== undefined) {
    const alg = opts.alg ?? 'HS256';
    if (!HMAC_ALGORITHMS.has(alg)) throw new Error(`algorithm ${alg} cannot be used with a secret key`);
    return { key: createSecretKey(opts.secret), alg, kid: opts.kid };
  }

  const pem = opts.privateKeyPem ?? (await readFile(opts.keyFile!, 'utf8'));
  let key: KeyObject;
  try {
    key = createPrivateKey(pem);
  } catch (error) {
    // Never echo the PEM: the message may be logged, and the input is a private key.
    const source = opts.keyFile === undefined ? 'privateKeyPem' : opts.keyFile;
    throw new Error(`cannot read a private key from ${source}`, { cause: error });
  }
  const alg = opts.alg ?? inferAlgorithm(key);
  checkAlgorithmFitsKey(alg, key);
  return { key, alg, kid: opts.kid ?? (await thumbprintOf(key)) };
}

/**
 * Mints a signed JWT with `iss`, `iat`, `exp`, a random `jti` and, when given, `aud`, `sub`, `nbf`, then the
 * extra `claims` on top.
 *
 * @example
 * const token = await mintToken({ keyFile: 'keys/private.pem', iss: 'https://issuer.test', aud: 'logs-api',
 *   sub: 'alice', claims: { realm_access: { roles: ['log-reader'] } } });
 * @throws Error when no key or more than one key is given, the key cannot be read, or `alg` does not fit it.
 */
export async function mintToken(opts: MintTokenOptions): Promise<string> {
  const { key, alg, kid } = await resolveSigningKey(opts);
  const now = opts.now ?? Date.now();
  const ttlMs = opts.ttlMs ?? DEFAULT_TTL_MS;
  if (!Number.isFinite(now) || !Number.isFinite(ttlMs)) throw new Error('now and ttlMs must be finite numbers');

  const payload: JWTPayload = { iss: opts.iss };
  if (opts.sub !== undefined) payload.sub = opts.sub;
  if (opts.aud !== undefined) payload.aud = opts.aud;
  payload.iat = Math.floor(now / 1000);
  if (opts.notBeforeMs !== undefined) payload.nbf = Math.floor((now + opts.notBeforeMs) / 1000);
  payload.exp = Math.floor((now + ttlMs) / 1000);
  payload.jti = randomUUID();
  for (const [name, value] of Object.entries(opts.claims ?? {})) {
    if (value === undefined) delete payload[name];
    else payload[name] = value;
  }

  const header: JWTHeaderParameters = { alg, typ: opts.typ ?? 'JWT' };
  if (kid !== undefined) header.kid = kid;
  return new SignJWT(payload).setProtectedHeader(header).sign(key);
}

/**
 * Parses one `--claim` argument, `path=value`, into its claim path and value.
 *
 * - The value is JSON when it parses as JSON (`42`, `true`, `null`, `["a","b"]`, `{"k":1}`, `"quoted"`),
 *   otherwise the literal text (`alice`, `007`, `a b`). An empty value is the empty string.
 * - The path is split on dots into nested objects (`realm_access.roles`). A segment in square brackets is
 *   taken literally, dots, slashes and colons included (`[https://example.com/roles]`, `a.[b.c].d`), which is
 *   how namespaced claims (Auth0, Okta) are written. The first `=` after the path ends it.
 *
 * @example parseClaimArg('realm_access.roles=["a","b"]') // [['realm_access', 'roles'], ['a', 'b']]
 * @example parseClaimArg('[https://example.com/roles]=["x"]') // [['https://example.com/roles'], ['x']]
 * @throws Error `invalid claim "<arg>": <reason>` for a missing `=`, an empty segment or an unclosed bracket.
 */
export function parseClaimArg(arg: string): [path: string[], value: unknown] {
  const fail = (reason: string): Error =>
    new Error(`invalid claim ${JSON.stringify(arg)}: ${reason} (expected name=value, e.g. roles=["a"])`);
  const path: string[] = [];
  let index = 0;
  for (;;) {
    let segment: string;
    if (arg[index] === '[') {
      const close = arg.indexOf(']', index + 1);
      if (close === -1) throw fail('unclosed [');
      segment = arg.slice(index + 1, close);
      index = close + 1;
    } else {
      let end = index;
      while (end < arg.length && arg[end] !== '.' && arg[end] !== '=' && arg[end] !== '[') end += 1;
      segment = arg.slice(index, end);
      index = end;
    }
    if (segment.length === 0) throw fail('empty claim name segment');
    // Assigning to `__proto__` would replace the prototype of the object being built, not add a claim.
    if (segment === '__proto__') throw fail('__proto__ is not a claim name');
    path.push(segment);
    if (arg[index] === '.') {
      index += 1;
      continue;
    }
    if (arg[index] === '=') break;
    throw fail(index >= arg.length ? 'missing =' : `unexpected ${JSON.stringify(arg[index])}`);
  }
  const text = arg.slice(index + 1);
  let value: unknown = text;
  if (text.length > 0) {
    try {
      value = JSON.parse(text);
    } catch {
      // Not JSON: a plain string, which is the common case (`sub=alice`).
    }
  }
  return [path, value];
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/**
 * Sets each `[path, value]` pair (from {@link parseClaimArg}) into `target`, creating nested objects along
 * the path, and returns `target`. Later pairs win over earlier ones for the same path; pairs under one
 * parent merge (`a.b=1` and `a.c=2` give `{ a: { b: 1, c: 2 } }`).
 *
 * @throws Error when a path runs through a value that is not an object (`a=1` then `a.b=2`).
 */
export function applyClaims(
  target: Record<string, unknown>,
  pairs: Iterable<readonly [path: readonly string[], value: unknown]>,
): Record<string, unknown> {
  for (const [path, value] of pairs) {
    if (path.length === 0) throw new Error('a claim path must have at least one segment');
    let node = target;
    for (const [depth, segment] of path.entries()) {
      if (segment === '__proto__') throw new Error('__proto__ is not a claim name');
      if (depth === path.length - 1) {
        node[segment] = value;
        break;
      }
      const next = Object.hasOwn(node, segment) ? node[segment] : undefined;
      if (next === undefined) {
        const created: Record<string, unknown> = {};
        node[segment] = created;
        node = created;
      } else if (isPlainObject(next)) {
        node = next;
      } else {
        throw new Error(`claim ${path.slice(0, depth + 1).join('.')} is not an object, cannot set ${path.join('.')}`);
      }
    }
  }
  return target;
}
