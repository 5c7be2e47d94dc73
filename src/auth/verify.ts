/**
 * Verifies one compact JWS (JWT) against the issuer registry. Stages, each failing with its own code:
 *
 *   structure -> header (alg none, crit) -> issuer (unverified iss selects it) -> alg allow-list
 *   -> key (the issuer's source, bound to the alg) -> signature -> claims
 *
 * Nothing in the token is trusted before the signature check except to *select* (issuer, key); the header's
 * own key parameters (`jwk`, `jku`, `x5u`, `x5c`) are never read (RFC 8725 §3.10).
 *
 * The signature is checked in `checkWithKey` alone, with `crypto.verify` over a `KeyObject` imported once
 * (signature.ts); jose imports keys and handles JWKS, and its error codes are still mapped below.
 */
import { ProxyError, orThrow } from '../errors.ts';
import { verifySignature } from './signature.ts';
import type { IssuerConfig } from '../config/types.ts';
import type { Issuer, IssuerRegistry } from './issuers.ts';
import type { LoadedKey } from './static-keys.ts';

export interface VerifiedToken {
  readonly claims: Record<string, unknown>;
  readonly header: { alg: string; kid?: string; typ?: string };
  readonly issuer: Issuer;
  /** The key that verified the signature (the token cache checks it is still published). */
  readonly key: LoadedKey;
  /** Epoch seconds of `exp`; undefined when the token has none (only if `exp` is not required). */
  readonly expiresAt: number | undefined;
}

interface ParsedToken {
  readonly header: Record<string, unknown>;
  /** The first segment, as sent. */
  readonly headerText: string;
  /** The alg of a known header (one that already passed `checkHeader`); undefined for a header to check. */
  readonly knownAlg: string | undefined;
  readonly claims: Record<string, unknown>;
  /** The decoded third segment. */
  readonly signature: Buffer;
  /** The signing input, `base64url(header) "." base64url(payload)`: the token's own bytes up to the second dot. */
  readonly signingInput: Buffer;
}

const BASE64URL = /^[A-Za-z0-9_-]*$/;
// Fatal: invalid UTF-8 is refused, not replaced by U+FFFD (two byte strings must not decode to one claim
// set). One instance serves every call: decode() without { stream: true } keeps no state between calls.
const UTF8 = new TextDecoder('utf-8', { fatal: true });

/**
 * Verifies `token` and returns its claims.
 *
 * @param allowedIssuerIds issuer ids accepted on the route; empty accepts every configured issuer.
 * @param now epoch SECONDS (defaults to the current time).
 * @throws ProxyError ERR_TOKEN_MALFORMED, ERR_TOKEN_ALG_NOT_ALLOWED, ERR_TOKEN_CRIT_UNSUPPORTED,
 *   ERR_TOKEN_ISSUER_UNKNOWN, ERR_TOKEN_KEY_UNKNOWN, ERR_KEYS_UNAVAILABLE, ERR_TOKEN_SIGNATURE_INVALID,
 *   ERR_TOKEN_EXPIRED, ERR_TOKEN_NOT_YET_VALID, ERR_TOKEN_AUDIENCE_MISMATCH, ERR_TOKEN_CLAIM_MISSING,
 *   ERR_TOKEN_CLAIM_INVALID; `detail` names the failing part, never the token.
 * @example
 *   const verified = await verifyToken(token, registry, route.auth.issuers);
 *   verified.claims.sub;
 */
export async function verifyToken(
  token: string,
  registry: IssuerRegistry,
  allowedIssuerIds: readonly string[],
  now: number = Date.now() / 1000,
): Promise<VerifiedToken> {
  return orThrow(verifyTokenNow(token, registry, allowedIssuerIds, now));
}

/**
 * `verifyToken` for the request path: synchronous while the issuer's key is at hand, a promise only when a
 * JWKS refetch is needed (it rejects like `verifyToken`). A refused token is RETURNED as its ProxyError, not
 * thrown: a forged-token flood is the path an attacker drives hardest, and a throw there cost ~5% of each
 * refusal. V8 tiers a function up only when it returns (or loops), so functions that only ever throw stay
 * in the interpreter, and a throw from optimized code pays a frame translation and a source-position search
 * for its message. The stages below return their refusals; what still throws (a key lookup) is caught here.
 */
export function verifyTokenNow(
  token: string,
  registry: IssuerRegistry,
  allowedIssuerIds: readonly string[],
  now: number,
): VerifiedToken | ProxyError | Promise<VerifiedToken> {
  try {
    const parsed = parseCompact(token);
    return parsed instanceof ProxyError ? parsed : verifyParsed(token, parsed, registry, allowedIssuerIds, now);
  } catch (error) {
    if (error instanceof ProxyError) return error;
    throw error;
  }
}

function verifyParsed(
  token: string,
  parsed: ParsedToken,
  registry: IssuerRegistry,
  allowedIssuerIds: readonly string[],
  now: number,
): VerifiedToken | ProxyError | Promise<VerifiedToken> {
  const { header, claims } = parsed;
  const alg = parsed.knownAlg ?? checkHeader(header);
  if (alg instanceof ProxyError) return alg;
  const kid = header.kid as string | undefined;
  const issuer = selectIssuer(claims, registry, allowedIssuerIds);
  if (issuer instanceof ProxyError) return issuer;
  if (!issuer.config.algorithms.includes(alg)) {
    return new ProxyError('ERR_TOKEN_ALG_NOT_ALLOWED', {
      detail: `alg ${printable(alg)} is not allowed for issuer ${issuer.config.id}`,
    });
  }
  const pending = issuer.keys.getKey(kid === undefined ? { alg } : { alg, kid });
  if (pending instanceof Promise) return pending.then((key) => orThrow(checkWithKey(token, parsed, issuer, key, now)));
  return checkWithKey(token, parsed, issuer, pending, now);
}

/** Signature, then claims. */
function checkWithKey(token: string, parsed: ParsedToken, issuer: Issuer, key: LoadedKey, now: number): VerifiedToken | ProxyError {
  const { header, claims } = parsed;
  const alg = header.alg as string;
  const kid = header.kid as string | undefined;
  // The one place a signature is checked: over the token's own text, not a re-encoding of what was parsed.
  if (!verifySignature(parsed.signingInput, parsed.signature, key, alg)) return signatureError(key);
  // Remembered only now: a header some configured key has signed, so made-up headers cannot fill the map.
  if (parsed.knownAlg === undefined) rememberHeader(parsed.headerText, header, alg);
  const refused = checkClaims(claims, issuer.config, now);
  if (refused !== undefined) return refused;
  const verifiedHeader: { alg: string; kid?: string; typ?: string } = { alg };
  if (kid !== undefined) verifiedHeader.kid = kid;
  if (typeof header.typ === 'string') verifiedHeader.typ = header.typ;
  return {
    claims,
    header: verifiedHeader,
    issuer,
    key,
    expiresAt: typeof claims.exp === 'number' ? claims.exp : undefined,
  };
}

/** RFC 7515 §7.1: three base64url segments; header and payload are JSON objects (RFC 7519 §7.2 steps 1-10). */
function parseCompact(token: string): ParsedToken | ProxyError {
  const first = token.indexOf('.');
  const second = first < 0 ? -1 : token.indexOf('.', first + 1);
  // Five segments is a JWE (RFC 7516 §7.1), which we do not decrypt; anything else is not a JWS either.
  if (second < 0 || token.indexOf('.', second + 1) >= 0) return malformed(`${token.split('.').length} segments instead of 3`);
  const header = token.slice(0, first);
  const payload = token.slice(first + 1, second);
  const signature = token.slice(second + 1);
  const known = KNOWN_HEADERS.get(header);
  const payloadBytes = Buffer.from(payload, 'base64url');
  const signatureBytes = Buffer.from(signature, 'base64url');
  // The token's bytes: the signing input, and the ASCII check below (UTF-8 is longer than the string
  // exactly when a character is not ASCII).
  const raw = Buffer.from(token, 'utf8');
  // Node's decoder is lenient: it skips characters outside the alphabet, stops at '=', takes '+' '/' too,
  // ignores non-zero padding bits, and reads a character above U+00FF by its low byte ('Ł' as 'A'). A
  // segment is therefore accepted only in the canonical base64url form (RFC 4648 §3.5, §5), so that no two
  // strings pass as one token. With every character ASCII and neither '+' nor '/' in the token, a character
  // outside the alphabet can only have been skipped or have stopped the decoder, and either leaves fewer
  // bytes than the segment's length implies (`exactlyDecoded`); what remains is the padding bits. This costs
  // three native passes over the token (the UTF-8 copy the signature check needs anyway, two searches);
  // re-encoding each segment and comparing, as before, cost ~5k instructions per token more.
  // test/unit/auth-verify compares the verdict with the plain definition on generated inputs.
  // A known header passed all of this before, as this very text: only the rest of the token is checked.
  const headerBytes = known === undefined ? Buffer.from(header, 'base64url') : undefined;
  if (
    header === '' || payload === '' ||
    raw.length !== token.length || token.includes('+') || token.includes('/') ||
    (headerBytes !== undefined && !exactlyDecoded(header, headerBytes)) || !exactlyDecoded(payload, payloadBytes) || !exactlyDecoded(signature, signatureBytes)
  ) {
    return checkSegments(header, payload, signature);
  }
  const headerJson = known?.header ?? decodeJsonObject(headerBytes!, 'header');
  if (headerJson instanceof ProxyError) return headerJson;
  const claims = decodeJsonObject(payloadBytes, 'payload');
  if (claims instanceof ProxyError) return claims;
  return { header: headerJson, headerText: header, knownAlg: known?.alg, claims, signature: signatureBytes, signingInput: raw.subarray(0, second) };
}

/**
 * Headers that passed the structural checks and `checkHeader`, by their base64url text, once a configured key
 * verified a token carrying them. An issuer signs with a handful of headers (alg, typ, kid), so a new token's
 * header, and a forger's copy of it, is nearly always one seen before, and decoding, parsing and checking it
 * again cost ~7k instructions per new token. What `checkHeader` decides does not depend on the config, so
 * reloads keep them. Bounded: once full, other headers are checked every time and never stored; only a holder
 * of a signing key can add one.
 */
const KNOWN_HEADERS = new Map<string, { readonly header: Readonly<Record<string, unknown>>; readonly alg: string }>();
export const MAX_KNOWN_HEADERS = 64;

/** How many headers are remembered (tests: the bound holds). */
export function knownHeaderCount(): number {
  return KNOWN_HEADERS.size;
}

/** Shared by every token with that header (read by `verifyParsed` and `checkWithKey`), so frozen. */
function rememberHeader(text: string, header: Record<string, unknown>, alg: string): void {
  if (KNOWN_HEADERS.size >= MAX_KNOWN_HEADERS) return;
  // The key is re-encoded from the bytes (equal to `text`, which is canonical by now), so that the map holds
  // its own short string and not a slice that keeps the whole token alive.
  KNOWN_HEADERS.set(Buffer.from(text, 'base64url').toString('base64url'), { header: Object.freeze(header), alg });
}

/**
 * `segment` (ASCII, without '+' or '/') decoded to `bytes` with nothing skipped, and with zero padding
 * bits: a length of 4n+2 characters carries 4 unused low bits in its last character, 4n+3 carries 2.
 */
function exactlyDecoded(segment: string, bytes: Buffer): boolean {
  const rest = segment.length & 3;
  if (rest === 1 || bytes.length !== (segment.length >> 2) * 3 + (rest === 0 ? 0 : rest - 1)) return false;
  if (rest === 0) return true;
  // SEXTET is -1 off the alphabet, which fails the mask too.
  return (SEXTET[segment.charCodeAt(segment.length - 1)]! & (rest === 2 ? 0x0f : 0x03)) === 0;
}

/** The 6-bit value of each base64url character by char code (RFC 4648 §5); -1 elsewhere. */
const SEXTET = new Int8Array(128).fill(-1);
for (const [i, c] of [...'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_'].entries()) SEXTET[c.charCodeAt(0)] = i;

/** The precise reason a compact form failed the strict base64url check. */
function checkSegments(header: string, payload: string, signature: string): ProxyError {
  for (const [name, segment] of [
    ['header', header],
    ['payload', payload],
    ['signature', signature],
  ] as const) {
    // The signature may be empty only so that `alg: none` tokens reach the alg check and get its code.
    if ((segment === '' && name !== 'signature') || !BASE64URL.test(segment) || segment.length % 4 === 1) {
      return malformed(`the ${name} is not base64url`);
    }
    if (Buffer.from(segment, 'base64url').toString('base64url') !== segment) {
      return malformed(`the ${name} has non-zero padding bits (not canonical base64url)`);
    }
  }
  // Unreachable while the two checks agree; if they ever disagree, refusing is the safe side.
  return malformed('the token is not base64url');
}

function decodeJsonObject(bytes: Buffer, name: string): Record<string, unknown> | ProxyError {
  let value: unknown;
  try {
    value = JSON.parse(UTF8.decode(bytes));
  } catch {
    return malformed(`the ${name} is not JSON`);
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    return malformed(`the ${name} is not a JSON object`);
  }
  return value as Record<string, unknown>;
}

/** Returns the alg once the header is acceptable, or the refusal. */
function checkHeader(header: Record<string, unknown>): string | ProxyError {
  const alg = header.alg;
  if (typeof alg !== 'string' || alg === '') return malformed('the alg header is missing');
  // RFC 8725 §3.1 / §2.1: `none` in any spelling is refused before anything else looks at the token.
  if (alg.toLowerCase() === 'none') return new ProxyError('ERR_TOKEN_ALG_NOT_ALLOWED', { detail: 'alg none' });
  if (header.crit !== undefined) {
    const crit = header.crit;
    // RFC 7515 §4.1.11: a non-empty array of names; we implement no extension, so any name is unknown.
    if (!Array.isArray(crit) || crit.length === 0 || crit.some((name) => typeof name !== 'string' || name === '')) {
      return malformed('crit is not a non-empty array of names');
    }
    return new ProxyError('ERR_TOKEN_CRIT_UNSUPPORTED', {
      detail: `crit ${crit.map((name: string) => printable(name)).join(',')}`,
    });
  }
  // RFC 7797 §6: `b64` is only meaningful listed in crit; alone it is a malformed header, and refusing it
  // avoids disagreeing with another parser about whether the payload is encoded.
  if (header.b64 !== undefined) return malformed('b64 without crit');
  if (header.kid !== undefined && typeof header.kid !== 'string') return malformed('kid is not a string');
  return alg;
}

function selectIssuer(
  claims: Record<string, unknown>,
  registry: IssuerRegistry,
  allowedIssuerIds: readonly string[],
): Issuer | ProxyError {
  const iss = claims.iss;
  if (typeof iss !== 'string') {
    return new ProxyError('ERR_TOKEN_ISSUER_UNKNOWN', { detail: 'the iss claim is missing or not a string' });
  }
  const issuer = registry.byIssuer(iss);
  if (issuer === undefined) {
    return new ProxyError('ERR_TOKEN_ISSUER_UNKNOWN', { detail: `iss ${printable(iss)} is not configured` });
  }
  if (allowedIssuerIds.length > 0 && !allowedIssuerIds.includes(issuer.config.id)) {
    return new ProxyError('ERR_TOKEN_ISSUER_UNKNOWN', {
      detail: `issuer ${issuer.config.id} is not allowed on this route`,
    });
  }
  return issuer;
}

// A forged-token flood is answered with the same error per key: it carries nothing of the token, nobody
// mutates it, and it saves building an Error on the path an attacker can drive hardest.
const SIGNATURE_ERRORS = new WeakMap<LoadedKey, ProxyError>();

function signatureError(key: LoadedKey): ProxyError {
  let error = SIGNATURE_ERRORS.get(key);
  if (error === undefined) {
    error = new ProxyError('ERR_TOKEN_SIGNATURE_INVALID', { detail: `signature does not verify with ${key.kid ? `kid ${key.kid}` : 'the issuer key'}` });
    SIGNATURE_ERRORS.set(key, error);
  }
  return error;
}

/**
 * RFC 7519 §4.1: exp, nbf, iat are NumericDates compared with `clockSkewSeconds` of leeway (§4.1.4 "MAY
 * provide for some small leeway"); `aud` is any-of (§4.1.3); required claims must be present and non-null.
 */
function checkClaims(claims: Record<string, unknown>, config: IssuerConfig, now: number): ProxyError | undefined {
  for (const name of config.requiredClaims) {
    if (claims[name] === undefined || claims[name] === null) {
      return new ProxyError('ERR_TOKEN_CLAIM_MISSING', { detail: `claim ${name} is required` });
    }
  }
  if (claims.iss !== config.issuer) return new ProxyError('ERR_TOKEN_ISSUER_UNKNOWN', { detail: 'iss mismatch' });
  for (const name of ['exp', 'nbf', 'iat'] as const) {
    const value = claims[name];
    if (value !== undefined && (typeof value !== 'number' || !Number.isFinite(value))) {
      return new ProxyError('ERR_TOKEN_CLAIM_INVALID', { detail: `claim ${name} is not a number` });
    }
  }
  const leeway = config.clockSkewSeconds;
  const { exp, nbf, iat } = claims as { exp?: number; nbf?: number; iat?: number };
  if (exp !== undefined && exp <= now - leeway) {
    return new ProxyError('ERR_TOKEN_EXPIRED', { detail: `expired ${Math.round(now - exp)}s ago` });
  }
  if (nbf !== undefined && nbf > now + leeway) {
    return new ProxyError('ERR_TOKEN_NOT_YET_VALID', { detail: `valid in ${Math.round(nbf - now)}s` });
  }
  if (iat !== undefined && iat > now + leeway) {
    return new ProxyError('ERR_TOKEN_CLAIM_INVALID', { detail: `claim iat is ${Math.round(iat - now)}s in the future` });
  }
  return checkAudience(claims.aud, config.audiences);
}

function checkAudience(aud: unknown, accepted: readonly string[]): ProxyError | undefined {
  if (accepted.length === 0) return undefined;
  if (aud === undefined || aud === null) {
    return new ProxyError('ERR_TOKEN_CLAIM_MISSING', { detail: 'claim aud is required' });
  }
  const values = typeof aud === 'string' ? [aud] : aud;
  if (!Array.isArray(values) || values.some((value) => typeof value !== 'string')) {
    return new ProxyError('ERR_TOKEN_CLAIM_INVALID', { detail: 'claim aud is not a string or an array of strings' });
  }
  if (!values.some((value) => accepted.includes(value as string))) {
    return new ProxyError('ERR_TOKEN_AUDIENCE_MISMATCH', { detail: 'no aud value is accepted by the issuer' });
  }
  return undefined;
}

/**
 * Maps every jose error to our codes, in one place. jose messages are not copied into `detail`: some quote
 * header values. Claim codes are mapped too, so swapping `checkSignature` for `jwtVerify` keeps the table.
 */
export function mapJoseError(error: unknown): ProxyError {
  if (error instanceof ProxyError) return error;
  const fields = (typeof error === 'object' && error !== null ? error : {}) as {
    code?: unknown;
    claim?: unknown;
    reason?: unknown;
  };
  const { code, claim, reason } = fields;
  switch (code) {
    case 'ERR_JWS_SIGNATURE_VERIFICATION_FAILED':
      return new ProxyError('ERR_TOKEN_SIGNATURE_INVALID', { detail: 'signature verification failed' });
    case 'ERR_JWS_INVALID':
    case 'ERR_JWT_INVALID':
    case 'ERR_JWE_INVALID':
    case 'ERR_JWE_DECRYPTION_FAILED':
      return new ProxyError('ERR_TOKEN_MALFORMED', { detail: `jose ${code}` });
    case 'ERR_JOSE_ALG_NOT_ALLOWED':
    case 'ERR_JOSE_NOT_SUPPORTED':
      return new ProxyError('ERR_TOKEN_ALG_NOT_ALLOWED', { detail: `jose ${code}` });
    case 'ERR_JWT_EXPIRED':
      return new ProxyError('ERR_TOKEN_EXPIRED', { detail: `claim ${String(claim)}` });
    case 'ERR_JWT_CLAIM_VALIDATION_FAILED':
      if (reason === 'missing') return new ProxyError('ERR_TOKEN_CLAIM_MISSING', { detail: `claim ${String(claim)}` });
      if (claim === 'nbf') return new ProxyError('ERR_TOKEN_NOT_YET_VALID', { detail: 'claim nbf' });
      if (claim === 'aud') return new ProxyError('ERR_TOKEN_AUDIENCE_MISMATCH', { detail: 'claim aud' });
      if (claim === 'iss') return new ProxyError('ERR_TOKEN_ISSUER_UNKNOWN', { detail: 'claim iss' });
      return new ProxyError('ERR_TOKEN_CLAIM_INVALID', { detail: `claim ${String(claim)}` });
    case 'ERR_JWK_INVALID':
    case 'ERR_JWKS_INVALID':
    case 'ERR_JWKS_NO_MATCHING_KEY':
    case 'ERR_JWKS_MULTIPLE_MATCHING_KEYS':
      return new ProxyError('ERR_TOKEN_KEY_UNKNOWN', { detail: `jose ${code}` });
    case 'ERR_JWKS_TIMEOUT':
      return new ProxyError('ERR_KEYS_UNAVAILABLE', { detail: `jose ${code}` });
    default:
      // jose throws TypeError when a key cannot serve the alg; the key-alg binding should make that
      // unreachable, so if it happens the key, not the token, is at fault.
      if (error instanceof TypeError) return new ProxyError('ERR_TOKEN_KEY_UNKNOWN', { detail: 'key unusable for alg' });
      return new ProxyError('ERR_INTERNAL', { detail: 'unexpected verification error', cause: error });
  }
}

function malformed(detail: string): ProxyError {
  return new ProxyError('ERR_TOKEN_MALFORMED', { detail });
}

/** Attacker-chosen strings reach operator logs only as short printable ASCII. */
function printable(value: string): string {
  return value.replace(/[^\x20-\x7e]/g, '?').slice(0, 64);
}
