/**
 * Typed failures of the audit library. Each carries a stable `code` so the CLI and the pipeline can
 * `switch` on it (as jose's error classes do). These are operator-facing: none of them is ever sent to an
 * HTTP client as-is — the pipeline answers 503 through its own error table when `admit()` says no.
 */

export const AUDIT_ERROR_CODES = [
  /** The store URL is neither `sqlite:<path>` nor `postgres://...` (or is malformed). */
  'ERR_AUDIT_STORE_URL_INVALID',
  /** The store could not be reached or a statement failed for a reason outside our control. */
  'ERR_AUDIT_STORE_UNAVAILABLE',
  /** The store's schema is newer than this code understands. */
  'ERR_AUDIT_SCHEMA_VERSION',
  /** A replayed (idempotent) append met a different row under the same chain_id + seq. */
  'ERR_AUDIT_CONFLICT',
  /** A value cannot be canonicalised (not JSON data: NaN, bigint, lone surrogate, too deep...). */
  'ERR_AUDIT_CANONICAL_INVALID',
  /** A signing key is missing, not Ed25519, or unreadable. */
  'ERR_AUDIT_KEY_INVALID',
  /** The trusted-keys file is missing, unreadable or malformed. */
  'ERR_AUDIT_KEYS_FILE_INVALID',
  /** An anchor file is missing or unreadable. */
  'ERR_AUDIT_ANCHORS_INVALID',
  /** The redaction key is too short or its id is unusable. */
  'ERR_AUDIT_REDACTION_KEY_INVALID',
  /** A spool file is corrupt before its last line (a torn last line is expected after a crash). */
  'ERR_AUDIT_SPOOL_CORRUPT',
  /** Prune refused: the segment does not verify, or the boundary checkpoint is not trusted. */
  'ERR_AUDIT_PRUNE_REFUSED',
  /** A writer option is out of range. */
  'ERR_AUDIT_OPTIONS_INVALID',
] as const;

export type AuditErrorCode = (typeof AUDIT_ERROR_CODES)[number];

/** A failure of the audit library with a stable code; `cause` keeps the driver error for the log. */
export class AuditError extends Error {
  readonly code: AuditErrorCode;

  constructor(code: AuditErrorCode, message: string, options: { cause?: unknown } = {}) {
    super(message, { cause: options.cause });
    this.name = 'AuditError';
    this.code = code;
  }
}

export function isAuditError(value: unknown): value is AuditError {
  return value instanceof AuditError;
}
