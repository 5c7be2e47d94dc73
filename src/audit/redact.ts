/**
 * Keyed redaction of audit records: configured sensitive values become `hmac-sha256:<key id>:<hex>`, as
 * Vault's audit devices do. Equal values stay equal (you can still search and correlate), the value itself is
 * not stored, and `hashForSearch` (behind `portcullis audit hash`) computes the same string from a value an
 * investigator already knows. The always-on credential scrub is `secrets.ts`.
 */
import { createHmac } from 'node:crypto';
import type { JsonValue } from './canonical.ts';
import { AuditError } from './errors.ts';
import { AUDIT_FIELDS } from './record.ts';

/** Prefix of every HMAC-redacted value. */
export const HMAC_PREFIX = 'hmac-sha256:';

/** Configuration of {@link createRedactor}; compile it once at load. */
export interface RedactorOptions {
  /** Names the key inside every HMAC so a rotation stays searchable: `[A-Za-z0-9._-]{1,64}`. */
  readonly keyId: string;
  /** At least 32 bytes (the HMAC-SHA256 output size; shorter keys weaken it, RFC 2104 §3). */
  readonly key: Uint8Array;
  /** Record fields whose whole value is replaced, e.g. `['user.id', 'user.email', 'client.ip']`. */
  readonly fields?: readonly string[];
  /** LogQL label names whose matcher values are replaced in `logql.query` and `logql.original`, e.g. `['user']`. */
  readonly logqlLabels?: readonly string[];
  /** Replace email addresses found inside any string field (default true). */
  readonly emails?: boolean;
}

/** A compiled redaction policy. */
export interface Redactor {
  readonly keyId: string;
  /** `hmac-sha256:<keyId>:<hex>` of `value`. */
  hash(value: string): string;
  /** A copy of `record` with the configured values replaced. */
  redact(record: { readonly [key: string]: JsonValue }): Record<string, JsonValue>;
}

const KEY_ID = /^[A-Za-z0-9._-]{1,64}$/;
const LABEL = /^[A-Za-z_][A-Za-z0-9_]*$/;

/**
 * Compiles a redaction policy.
 *
 * @throws AuditError `ERR_AUDIT_REDACTION_KEY_INVALID` for a short key or an unusable key id, and
 *   `ERR_AUDIT_OPTIONS_INVALID` for a field that is not in the allowlist or a malformed label name.
 */
export function createRedactor(options: RedactorOptions): Redactor {
  if (!KEY_ID.test(options.keyId)) {
    throw new AuditError('ERR_AUDIT_REDACTION_KEY_INVALID', 'redaction key id must match [A-Za-z0-9._-]{1,64}');
  }
  if (options.key.byteLength < 32) {
    throw new AuditError('ERR_AUDIT_REDACTION_KEY_INVALID', 'redaction key must be at least 32 bytes');
  }
  const key = Buffer.from(options.key);
  const keyId = options.keyId;
  const fields = new Set(options.fields ?? []);
  for (const field of fields) {
    if (!Object.hasOwn(AUDIT_FIELDS, field) || field === '@timestamp' || field === 'event.type') {
      throw new AuditError('ERR_AUDIT_OPTIONS_INVALID', `cannot redact ${JSON.stringify(field)}: not a redactable audit field`);
    }
  }
  const labels = options.logqlLabels ?? [];
  for (const label of labels) {
    if (!LABEL.test(label)) throw new AuditError('ERR_AUDIT_OPTIONS_INVALID', `not a LogQL label name: ${JSON.stringify(label)}`);
  }
  // A matcher `label op "value"` or `label op \`value\``; the value inside the quotes is what gets hashed.
  // Over-matching (the same text inside a line-filter string) only redacts more, never less.
  const matcher =
    labels.length === 0
      ? undefined
      : new RegExp(`(?<![\\w.])(${labels.join('|')})(\\s*(?:=~|!~|!=|=)\\s*)(?:"((?:[^"\\\\]|\\\\.)*)"|\`([^\`]*)\`)`, 'g');
  const emails = options.emails ?? true;
  const own = `${HMAC_PREFIX}${keyId}:`;

  const hash = (value: string): string => own + createHmac('sha256', key).update(value, 'utf8').digest('hex');
  const hashOnce = (value: string): string => (value.startsWith(own) ? value : hash(value));

  const redactString = (name: string, value: string): string => {
    if (fields.has(name)) return hashOnce(value);
    let out = value;
    if (matcher !== undefined && (name === 'logql.query' || name === 'logql.original')) {
      out = out.replace(matcher, (_m, label: string, op: string, dq: string | undefined, bq: string | undefined) => {
        const inner = dq ?? bq ?? '';
        return `${label}${op}"${hashOnce(inner)}"`;
      });
    }
    if (emails && out.includes('@')) out = replaceEmails(out, hash);
    return out;
  };

  return {
    keyId,
    hash,
    redact(record) {
      const out: Record<string, JsonValue> = {};
      for (const [name, value] of Object.entries(record)) {
        if (typeof value === 'string' && name !== '@timestamp') out[name] = redactString(name, value);
        else if (Array.isArray(value)) out[name] = value.map((item: JsonValue) => (typeof item === 'string' ? redactString(name, item) : item));
        else out[name] = value;
      }
      return out;
    },
  };
}

/**
 * The value `createRedactor({ keyId, key })` stores for `value`; behind `portcullis audit hash` so an
 * investigator can search for a known subject or email without the store ever holding it.
 *
 * @example hashForSearch('k1', key, 'alice@example.com') // 'hmac-sha256:k1:5c0f...'
 */
export function hashForSearch(keyId: string, key: Uint8Array, value: string): string {
  return createRedactor({ keyId, key }).hash(value);
}

const LOCAL = /[A-Za-z0-9._%+-]/;
const DOMAIN = /[A-Za-z0-9.-]/;

/**
 * Replaces addresses around each `@` by scanning outwards instead of one big regex, so the cost stays linear
 * even for hostile strings (a backtracking email regex is quadratic on `aaaa...a@`).
 */
function replaceEmails(value: string, hash: (v: string) => string): string {
  let out = '';
  let copied = 0;
  let at = value.indexOf('@');
  while (at !== -1) {
    let start = at;
    while (start > copied && LOCAL.test(value[start - 1]!)) start--;
    let end = at + 1;
    while (end < value.length && DOMAIN.test(value[end]!)) end++;
    // Trailing dots and hyphens are punctuation around the address, not part of it.
    while (end > at + 1 && (value[end - 1] === '.' || value[end - 1] === '-')) end--;
    const domain = value.slice(at + 1, end);
    const dot = domain.lastIndexOf('.');
    const tld = dot === -1 ? '' : domain.slice(dot + 1);
    if (start < at && dot > 0 && /^[A-Za-z]{2,}$/.test(tld)) {
      out += value.slice(copied, start) + hash(value.slice(start, end));
      copied = end;
      at = value.indexOf('@', end);
    } else {
      at = value.indexOf('@', at + 1);
    }
  }
  return copied === 0 ? value : out + value.slice(copied);
}
