/**
 * The one error table. Every failure the proxy can answer with is a `ProxyError` carrying a stable
 * `code`; the HTTP status, the RFC 6750 `error` attribute and the public message come from this table
 * only, so the mapping lives in one place (as Envoy's status-to-HTTP function and fastify's error table).
 *
 * Operators see the precise code in the access log, metrics and audit record; clients see the same code in
 * the JSON body and a coarser RFC 6750 `error` in the challenge.
 */

/** RFC 6750 §3.1 error codes; `undefined` means a bare challenge (no credentials were presented, §3.1). */
export type OAuthError = 'invalid_request' | 'invalid_token' | 'insufficient_scope';

export interface ErrorSpec {
  readonly status: number;
  /** When set, the answer carries `WWW-Authenticate: Bearer ..., error="<oauth>"`. */
  readonly oauth?: OAuthError;
  /** 401 without `error=`: RFC 6750 §3.1 says not to include an error code when no token was sent. */
  readonly challenge?: boolean;
  readonly message: string;
}

export const ERRORS = {
  // routing and request shape
  ERR_ROUTE_NOT_FOUND: { status: 404, message: 'no route matches this request' },
  ERR_METHOD_NOT_ALLOWED: { status: 405, message: 'method not allowed on this route' },
  ERR_REQUEST_INVALID: { status: 400, oauth: 'invalid_request', message: 'malformed request' },
  ERR_REQUEST_HEADER_TOO_LARGE: { status: 431, message: 'request headers too large' },

  // token extraction (RFC 6750 §2, §3.1)
  ERR_TOKEN_MISSING: { status: 401, challenge: true, message: 'a bearer token is required' },
  ERR_TOKEN_AMBIGUOUS: {
    status: 400,
    oauth: 'invalid_request',
    message: 'more than one token was presented',
  },
  ERR_TOKEN_TOO_LARGE: { status: 401, oauth: 'invalid_token', message: 'the token exceeds the size limit' },
  ERR_TOKEN_MALFORMED: { status: 401, oauth: 'invalid_token', message: 'the token is not a well-formed JWS' },

  // token verification
  ERR_TOKEN_ALG_NOT_ALLOWED: {
    status: 401,
    oauth: 'invalid_token',
    message: 'the token algorithm is not allowed',
  },
  ERR_TOKEN_CRIT_UNSUPPORTED: {
    status: 401,
    oauth: 'invalid_token',
    message: 'the token has an unsupported critical header',
  },
  ERR_TOKEN_ISSUER_UNKNOWN: { status: 401, oauth: 'invalid_token', message: 'the token issuer is not trusted' },
  ERR_TOKEN_KEY_UNKNOWN: {
    status: 401,
    oauth: 'invalid_token',
    message: 'no key of the issuer matches the token',
  },
  ERR_TOKEN_SIGNATURE_INVALID: {
    status: 401,
    oauth: 'invalid_token',
    message: 'the token signature is invalid',
  },
  ERR_TOKEN_EXPIRED: { status: 401, oauth: 'invalid_token', message: 'the token has expired' },
  ERR_TOKEN_NOT_YET_VALID: { status: 401, oauth: 'invalid_token', message: 'the token is not yet valid' },
  ERR_TOKEN_AUDIENCE_MISMATCH: {
    status: 401,
    oauth: 'invalid_token',
    message: 'the token audience is not accepted',
  },
  ERR_TOKEN_CLAIM_MISSING: {
    status: 401,
    oauth: 'invalid_token',
    message: 'the token lacks a required claim',
  },
  ERR_TOKEN_CLAIM_INVALID: { status: 401, oauth: 'invalid_token', message: 'a token claim is invalid' },

  // key sources
  ERR_KEYS_UNAVAILABLE: { status: 503, message: 'the issuer keys are not available yet' },

  // authorization (issue 3)
  ERR_ACCESS_DENIED: { status: 403, message: 'access denied' },
  ERR_INSUFFICIENT_SCOPE: { status: 403, oauth: 'insufficient_scope', message: 'insufficient scope' },
  ERR_ENVIRONMENT_MISMATCH: {
    status: 403,
    message: 'the token belongs to another environment',
  },

  // Loki routes (label-based access control)
  ERR_LOKI_ENDPOINT_DENIED: { status: 403, message: 'this Loki endpoint is not allowed through the proxy' },
  ERR_LOKI_QUERY_INVALID: { status: 400, message: 'the log query cannot be parsed, so it cannot be made safe' },
  ERR_LOKI_PARAM_INVALID: { status: 400, message: 'a query parameter is missing, repeated or malformed' },
  ERR_LOKI_BODY_INVALID: { status: 400, message: 'the request body is not a form the proxy can enforce' },
  ERR_LOKI_BODY_TOO_LARGE: { status: 413, message: 'the request body exceeds the size limit' },
  ERR_LOKI_CLAIM_MISSING: { status: 403, message: 'the token lacks the claim that scopes log access' },
  ERR_LOKI_TENANT_DENIED: { status: 403, message: 'the requested tenant is not allowed for this token' },

  // upstream
  ERR_UPSTREAM_UNREACHABLE: { status: 502, message: 'the upstream could not be reached' },
  ERR_UPSTREAM_RESET: { status: 502, message: 'the upstream closed the connection' },
  ERR_UPSTREAM_TIMEOUT: { status: 504, message: 'the upstream did not answer in time' },

  // audit
  ERR_AUDIT_UNAVAILABLE: { status: 503, message: 'the audit log cannot record this request, so it is not forwarded' },

  // lifecycle
  ERR_SHUTTING_DOWN: { status: 503, message: 'the proxy is shutting down' },
  ERR_INTERNAL: { status: 500, message: 'internal error' },
} as const satisfies Record<string, ErrorSpec>;

export type ErrorCode = keyof typeof ERRORS;

export interface ProxyErrorOptions {
  /** Replaces the table's public message; keep it free of secrets (it reaches the client). */
  readonly message?: string;
  /** Seconds, for 503 answers (RFC 9110 §10.2.3). */
  readonly retryAfter?: number;
  /** For ERR_INSUFFICIENT_SCOPE: the scopes the route requires (RFC 6750 §3). */
  readonly scope?: string;
  /** Operator-only detail: goes to the access log, never to the client. */
  readonly detail?: string;
  readonly cause?: unknown;
}

/** A failure with a stable code. Throw it from any stage; the pipeline maps it to HTTP once. */
export class ProxyError extends Error {
  readonly code: ErrorCode;
  readonly status: number;
  readonly retryAfter: number | undefined;
  readonly scope: string | undefined;
  readonly detail: string | undefined;

  constructor(code: ErrorCode, options: ProxyErrorOptions = {}) {
    // These errors are answers, not bugs: a stack trace would cost more than the rest of a rejection
    // (measured ~6 us of ~40 us for a bad signature), and nobody reads it. ERR_INTERNAL keeps its cause.
    const limit = Error.stackTraceLimit;
    Error.stackTraceLimit = 0;
    super(options.message ?? ERRORS[code].message, { cause: options.cause });
    Error.stackTraceLimit = limit;
    this.name = 'ProxyError';
    this.code = code;
    this.status = ERRORS[code].status;
    this.retryAfter = options.retryAfter;
    this.scope = options.scope;
    this.detail = options.detail;
  }
}

/** A result that may be a refusal returned as a value (the token path, see `verifyTokenNow`), with the refusal thrown. */
export function orThrow<T>(result: T | ProxyError): T {
  if (result instanceof ProxyError) throw result;
  return result;
}

export function isProxyError(value: unknown): value is ProxyError {
  return value instanceof ProxyError;
}

/** RFC 9110 §5.6.4 quoted-string: escape backslash and DQUOTE; drop controls that cannot be sent. */
export function quoteHeaderValue(value: string): string {
  // eslint-disable-next-line no-control-regex
  return '"' + value.replace(/[\u0000-\u0008\u000a-\u001f\u007f]/g, '').replace(/["\\]/g, '\\$&') + '"';
}

/** Builds the `WWW-Authenticate` value for an error, or undefined when the answer carries no challenge. */
export function bearerChallenge(error: ProxyError, realm: string): string | undefined {
  const spec: ErrorSpec = ERRORS[error.code];
  if (spec.status !== 401 && spec.oauth === undefined) return undefined;
  let value = `Bearer realm=${quoteHeaderValue(realm)}`;
  if (spec.oauth !== undefined && !spec.challenge) {
    value += `, error=${quoteHeaderValue(spec.oauth)}, error_description=${quoteHeaderValue(error.message)}`;
  }
  if (error.scope !== undefined) value += `, scope=${quoteHeaderValue(error.scope)}`;
  return value;
}
