/**
 * The audit record: one per decision (allowed and denied), named after the Elastic Common Schema.
 *
 * Shape: FLAT dotted keys (`{"user.id": "alice", "http.response.status_code": 200}`), not nested objects.
 * Elasticsearch and most SIEMs expand dotted names into objects on ingest, so nothing is lost, and flat keys
 * make the allowlist a plain set, make every field one lookup for query/verify, and keep the canonical form
 * obvious. The chain fields (`audit.chain_id/seq/prev_hash/hash`) are columns of the store, not part of the
 * hashed body; `query` and `export` add them back to what they return.
 *
 * Fields are an ALLOWLIST ({@link AUDIT_FIELDS}): `buildAuditRecord` drops every other key, so a header
 * object, the raw claims or a token handed to it by mistake never reach the store. On top of that every string
 * goes through `scrubSecrets` (a JWT-looking or `Bearer ...` value becomes `[redacted]`) and, when configured,
 * the redactor (sensitive values become `hmac-sha256:<key id>:<hex>`).
 */
import { randomFillSync } from 'node:crypto';
import type { JsonValue } from './canonical.ts';
import { scrubSecrets } from './secrets.ts';
import type { Redactor } from './redact.ts';

/** How a field's value is checked and bounded. */
type FieldKind = 'timestamp' | 'string' | 'long-string' | 'integer' | 'decision' | 'string-list' | 'string-or-list';

/**
 * Every field a decision record may carry, with its kind. Anything else is dropped by `buildAuditRecord`.
 * `event.action` is not listed: the builder sets it (`http-request`) and system records use their own.
 */
export const AUDIT_FIELDS = {
  '@timestamp': 'timestamp',
  'event.id': 'string',
  'event.type': 'decision',
  /** Our stable error code (`ERR_TOKEN_EXPIRED`, ...) for denials; absent when allowed. */
  'event.reason': 'string',
  /** Nanoseconds, as ECS defines `event.duration`. */
  'event.duration': 'integer',
  'rule.id': 'string',
  /** The token's `sub`. */
  'user.id': 'string',
  'user.name': 'string',
  'user.email': 'string',
  'user.roles': 'string-list',
  'jwt.iss': 'string',
  'jwt.aud': 'string-or-list',
  'jwt.kid': 'string',
  'jwt.alg': 'string',
  /** Seconds since the epoch, as in the token. */
  'jwt.exp': 'integer',
  'http.request.id': 'string',
  'http.request.method': 'string',
  'url.path': 'string',
  /** The route id that matched. */
  'http.route': 'string',
  'http.response.status_code': 'integer',
  'client.ip': 'string',
  'user_agent.original': 'string',
  /** The upstream the request went to. */
  'destination.address': 'string',
  'trace.id': 'string',
  /** Log routes: the query as enforced (what the upstream received). */
  'logql.query': 'long-string',
  /** Log routes: the query as the client sent it. */
  'logql.original': 'long-string',
  /** Log routes: the requested time range, as sent (RFC 3339 or Unix nanoseconds). */
  'logql.start': 'string',
  'logql.end': 'string',
  /** Log routes: the tenant (`X-Scope-OrgID`) forwarded. */
  tenant: 'string',
} as const satisfies Record<string, FieldKind>;

export type AuditField = keyof typeof AUDIT_FIELDS;

/** `event.action` values: one for decision records, the rest written by the writer itself. */
export const AUDIT_ACTIONS = {
  request: 'http-request',
  chainStart: 'audit-chain-start',
  chainEnd: 'audit-chain-end',
  loss: 'audit-loss',
} as const;

export type AuditAction = (typeof AUDIT_ACTIONS)[keyof typeof AUDIT_ACTIONS];

export type AuditDecision = 'allowed' | 'denied';

/** A decision record as stored (flat ECS keys). Build it with {@link buildAuditRecord}. */
export interface AuditRecord {
  readonly '@timestamp': string;
  readonly 'event.id': string;
  readonly 'event.action': typeof AUDIT_ACTIONS.request;
  readonly 'event.type'?: AuditDecision;
  readonly 'event.reason'?: string;
  readonly 'event.duration'?: number;
  readonly 'rule.id'?: string;
  readonly 'user.id'?: string;
  readonly 'user.name'?: string;
  readonly 'user.email'?: string;
  readonly 'user.roles'?: readonly string[];
  readonly 'jwt.iss'?: string;
  readonly 'jwt.aud'?: string | readonly string[];
  readonly 'jwt.kid'?: string;
  readonly 'jwt.alg'?: string;
  readonly 'jwt.exp'?: number;
  readonly 'http.request.id'?: string;
  readonly 'http.request.method'?: string;
  readonly 'url.path'?: string;
  readonly 'http.route'?: string;
  readonly 'http.response.status_code'?: number;
  readonly 'client.ip'?: string;
  readonly 'user_agent.original'?: string;
  readonly 'destination.address'?: string;
  readonly 'trace.id'?: string;
  readonly 'logql.query'?: string;
  readonly 'logql.original'?: string;
  readonly 'logql.start'?: string;
  readonly 'logql.end'?: string;
  readonly tenant?: string;
}

/** Any JSON object the chain can carry: decision records and the writer's own system records. */
export type ChainRecord = { readonly [key: string]: JsonValue };

/**
 * What the pipeline hands to {@link buildAuditRecord}: the allowlisted fields, flat (`'user.id'`) or nested
 * (`{ user: { id } }`), with looser input types (`Date` or epoch ms for `@timestamp`, `bigint` durations).
 * Any other key is accepted by the type and dropped at run time, so callers can spread what they have.
 */
export type AuditInput = {
  readonly '@timestamp'?: string | number | Date;
  readonly 'event.type': AuditDecision;
  readonly 'event.duration'?: number | bigint;
  readonly 'jwt.exp'?: number;
} & { readonly [K in Exclude<AuditField, '@timestamp' | 'event.type' | 'event.duration' | 'jwt.exp'>]?: unknown } & {
  readonly [other: string]: unknown;
};

export interface BuildAuditRecordOptions {
  /** Applies the configured HMAC redaction (sensitive fields, LogQL label values, emails). */
  readonly redactor?: Redactor;
  /** Told once per secret-looking substring replaced by `[redacted]`, with the field it was found in. */
  readonly onSecret?: (field: string) => void;
  /** Clock for the default `@timestamp` (tests). */
  readonly now?: () => number;
}

/** Bounds keep one hostile request from inflating the store (a 1 MB user agent, a 10k-role token). */
const MAX_STRING = 2048;
const MAX_LONG_STRING = 16384;
const MAX_LIST = 64;
const TRUNCATED = '…[truncated]';

/** Prefixes of allowlisted names (`user.`, `http.`, `http.request.`...), so nested input is walked only where it can lead somewhere. */
const PREFIXES: ReadonlySet<string> = new Set(
  Object.keys(AUDIT_FIELDS).flatMap((name) => {
    const parts = name.split('.');
    return parts.slice(1).map((_, i) => parts.slice(0, i + 1).join('.') + '.');
  }),
);

/**
 * Builds a decision record from `input`, keeping only {@link AUDIT_FIELDS}, checking each value's type
 * (a wrong type drops the field), bounding sizes, removing anything that looks like a credential and applying
 * the redactor. Never throws: it runs on the request path and a bad field must not turn into a 500.
 *
 * @example
 * const record = buildAuditRecord({ 'event.type': 'denied', 'event.reason': 'ERR_TOKEN_EXPIRED',
 *   user: { id: 'alice' }, 'http.request.method': 'GET', 'url.path': '/api' }, { redactor });
 */
export function buildAuditRecord(input: AuditInput, options: BuildAuditRecordOptions = {}): AuditRecord {
  const flat = new Map<string, unknown>();
  flatten(input, '', flat, 0);
  const out: Record<string, JsonValue> = {};
  for (const [name, raw] of flat) {
    const kind: FieldKind | undefined = (AUDIT_FIELDS as Record<string, FieldKind>)[name];
    if (kind === undefined) continue;
    const value = coerce(kind, raw);
    if (value !== undefined) out[name] = value;
  }
  const now = options.now ?? Date.now;
  if (typeof out['@timestamp'] !== 'string') out['@timestamp'] = new Date(now()).toISOString();
  if (typeof out['event.id'] !== 'string' || out['event.id'] === '') out['event.id'] = uuidv7(now());
  out['event.action'] = AUDIT_ACTIONS.request;

  for (const name of Object.keys(out)) {
    const value = out[name];
    if (typeof value === 'string') out[name] = scrubField(name, value, options.onSecret);
    else if (Array.isArray(value)) out[name] = value.map((item) => (typeof item === 'string' ? scrubField(name, item, options.onSecret) : item));
  }
  const redacted = options.redactor === undefined ? out : options.redactor.redact(out);
  return redacted as unknown as AuditRecord;
}

function scrubField(name: string, value: string, onSecret: ((field: string) => void) | undefined): string {
  const scrubbed = scrubSecrets(value);
  if (scrubbed.count > 0 && onSecret !== undefined) for (let i = 0; i < scrubbed.count; i++) onSecret(name);
  return scrubbed.value;
}

function flatten(value: unknown, prefix: string, out: Map<string, unknown>, depth: number): void {
  if (depth > 6 || value === null || typeof value !== 'object' || Array.isArray(value) || value instanceof Date) return;
  for (const key of Object.keys(value)) {
    const name = prefix + key;
    const member = (value as Record<string, unknown>)[key];
    if (Object.hasOwn(AUDIT_FIELDS, name)) {
      // A flat key wins over the same field given nested: the flat form is the documented one.
      if (!out.has(name) || prefix === '') out.set(name, member);
    } else if (PREFIXES.has(name + '.')) {
      flatten(member, name + '.', out, depth + 1);
    }
  }
}

function coerce(kind: FieldKind, raw: unknown): JsonValue | undefined {
  switch (kind) {
    case 'timestamp': {
      const ms = raw instanceof Date ? raw.getTime() : typeof raw === 'number' ? raw : typeof raw === 'string' ? Date.parse(raw) : NaN;
      return Number.isFinite(ms) ? new Date(ms).toISOString() : undefined;
    }
    case 'string':
      return typeof raw === 'string' ? bound(raw, MAX_STRING) : undefined;
    case 'long-string':
      return typeof raw === 'string' ? bound(raw, MAX_LONG_STRING) : undefined;
    case 'integer': {
      const n = typeof raw === 'bigint' ? Number(raw) : raw;
      return typeof n === 'number' && Number.isFinite(n) ? Math.round(n) : undefined;
    }
    case 'decision':
      return raw === 'allowed' || raw === 'denied' ? raw : undefined;
    case 'string-list':
      return Array.isArray(raw) ? stringList(raw) : undefined;
    case 'string-or-list':
      if (typeof raw === 'string') return bound(raw, MAX_STRING);
      return Array.isArray(raw) ? stringList(raw) : undefined;
  }
}

function stringList(raw: readonly unknown[]): string[] {
  const out: string[] = [];
  for (const item of raw) {
    if (typeof item !== 'string') continue;
    if (out.length === MAX_LIST) {
      out.push(TRUNCATED);
      break;
    }
    out.push(bound(item, MAX_STRING));
  }
  return out;
}

function bound(value: string, max: number): string {
  if (value.length <= max) return value;
  // Cut on a code point boundary so the result stays well-formed (canonical JSON refuses lone surrogates).
  let cut = max;
  const code = value.charCodeAt(cut - 1);
  if (code >= 0xd800 && code <= 0xdbff) cut -= 1;
  return value.slice(0, cut) + TRUNCATED;
}

const uuidBytes = Buffer.alloc(16);

/**
 * A UUIDv7 (RFC 9562 §5.7): 48-bit Unix milliseconds then random bits, so ids sort by creation time
 * (chain ids list oldest first; event ids index well).
 */
export function uuidv7(nowMs: number = Date.now()): string {
  randomFillSync(uuidBytes);
  uuidBytes.writeUIntBE(Math.max(0, Math.floor(nowMs)) % 2 ** 48, 0, 6);
  uuidBytes[6] = (uuidBytes[6]! & 0x0f) | 0x70;
  uuidBytes[8] = (uuidBytes[8]! & 0x3f) | 0x80;
  const hex = uuidBytes.toString('hex');
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}
