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
import { canonicalize } from './canonical.ts';
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

/** Every member a request record can have, in RFC 8785 order (UTF-16 code units), with its kind. */
const RECORD_ORDER: readonly { readonly name: string; readonly kind: FieldKind | 'action'; readonly key: string }[] = [...Object.keys(AUDIT_FIELDS), 'event.action']
  .sort()
  .map((name) => ({ name, kind: (AUDIT_FIELDS as Record<string, FieldKind>)[name] ?? 'action', key: `${JSON.stringify(name)}:` }));
/** Field name -> its position in {@link RECORD_ORDER}. */
const SLOT: ReadonlyMap<string, number> = new Map(RECORD_ORDER.flatMap((f, i) => (f.kind === 'action' ? [] : [[f.name, i] as const])));
/** Marks a slot no input has filled (`undefined` is a value a flat key can set). */
const UNSET: unique symbol = Symbol('unset');

/**
 * A decision record ready for the chain: its canonical text and `@timestamp` in epoch ms, computed while
 * building (every value's type is known then), so the writer neither walks nor re-scrubs an object.
 */
export class PreparedRecord {
  readonly canonical: string;
  readonly ts: number;

  constructor(canonical: string, ts: number) {
    this.canonical = canonical;
    this.ts = ts;
  }

  /** The record as an object, parsed from its canonical text on demand (the request path never needs it). */
  get record(): AuditRecord {
    return JSON.parse(this.canonical) as AuditRecord;
  }
}

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
  return prepareAuditRecord(input, options).record;
}

/** {@link buildAuditRecord}, returning the record in the form the audit writer takes on the request path. */
export function prepareAuditRecord(input: AuditInput, options: BuildAuditRecordOptions = {}): PreparedRecord {
  const raw: unknown[] = new Array<unknown>(RECORD_ORDER.length).fill(UNSET);
  flatten(input, '', raw, 0);
  const now = options.now ?? Date.now;
  const redactor = options.redactor;
  const out: Record<string, JsonValue> | undefined = redactor === undefined ? undefined : {};
  // Members come in RFC 8785 order and every value is a scalar or a list of strings of a known kind by now,
  // so the canonical text is written here, without the generic canonicaliser.
  let text = '{';
  let ts = 0;
  for (let i = 0; i < RECORD_ORDER.length; i++) {
    const { name, kind, key } = RECORD_ORDER[i]!;
    const given = raw[i] === UNSET ? undefined : raw[i];
    let value: JsonValue | undefined;
    if (kind === 'action') value = AUDIT_ACTIONS.request;
    else if (kind === 'timestamp') {
      ts = epochMs(given) ?? Math.trunc(now());
      value = isoTime(ts);
    } else {
      value = coerce(kind, given);
      if (name === 'event.id' && (typeof value !== 'string' || value === '')) value = uuidv7(now());
      else if (value === undefined) continue;
    }
    if (typeof value === 'string') value = scrubField(name, value, options.onSecret);
    else if (Array.isArray(value)) value = value.map((item) => (typeof item === 'string' ? scrubField(name, item, options.onSecret) : item));
    if (out !== undefined) out[name] = value;
    else text += (text.length === 1 ? key : `,${key}`) + jsonScalarOrList(value);
  }
  return new PreparedRecord(out === undefined ? text + '}' : canonicalize(redactor!.redact(out)), ts);
}

/** JSON text of a string, number or list of strings, as RFC 8785 writes it (strings are well-formed here). */
function jsonScalarOrList(value: JsonValue): string {
  if (typeof value === 'string') return NEEDS_ESCAPE.test(value) ? JSON.stringify(value) : `"${value}"`;
  if (typeof value === 'number') return String(value);
  return JSON.stringify(value);
}
/** Characters JSON.stringify escapes in a well-formed string. */
// eslint-disable-next-line no-control-regex
const NEEDS_ESCAPE = /["\\\u0000-\u001f]/;

/** `@timestamp` input as epoch ms (whole, within Date's range), or undefined when it is not a time. */
function epochMs(raw: unknown): number | undefined {
  const ms = raw instanceof Date ? raw.getTime() : typeof raw === 'number' ? raw : typeof raw === 'string' ? Date.parse(raw) : NaN;
  // Date keeps whole milliseconds within ±8.64e15 (ECMA-262 TimeClip); toISOString throws outside it.
  return Number.isFinite(ms) && Math.abs(ms) <= 8.64e15 ? Math.trunc(ms) : undefined;
}

// toISOString costs more than the rest of a record; requests in the same second share the formatted second.
let isoSecond = NaN;
let isoPrefix = '';

/** `new Date(ms).toISOString()`, formatting each second once. */
export function isoTime(ms: number): string {
  const second = Math.floor(ms / 1000);
  if (second !== isoSecond) {
    const full = new Date(second * 1000).toISOString();
    // Years outside 0000-9999 use the six-digit form; those are not cached.
    if (full.length !== 24) return new Date(ms).toISOString();
    isoSecond = second;
    isoPrefix = full.slice(0, 20);
  }
  const milli = ms - second * 1000;
  return `${isoPrefix}${milli < 10 ? '00' : milli < 100 ? '0' : ''}${milli}Z`;
}

function scrubField(name: string, value: string, onSecret: ((field: string) => void) | undefined): string {
  const scrubbed = scrubSecrets(value);
  if (scrubbed.count > 0 && onSecret !== undefined) for (let i = 0; i < scrubbed.count; i++) onSecret(name);
  return scrubbed.value;
}

function flatten(value: unknown, prefix: string, out: unknown[], depth: number): void {
  if (depth > 6 || value === null || typeof value !== 'object' || Array.isArray(value) || value instanceof Date) return;
  // Not Object.entries: that allocates a pair per member.
  for (const key of Object.keys(value)) {
    const member = (value as Record<string, unknown>)[key];
    const name = prefix === '' ? key : prefix + key;
    const slot = SLOT.get(name);
    if (slot !== undefined) {
      // A flat key wins over the same field given nested: the flat form is the documented one.
      if (out[slot] === UNSET || prefix === '') out[slot] = member;
    } else if (PREFIXES.has(name + '.')) {
      flatten(member, name + '.', out, depth + 1);
    }
  }
}

function coerce(kind: FieldKind, raw: unknown): JsonValue | undefined {
  switch (kind) {
    case 'timestamp': {
      const ms = epochMs(raw);
      return ms === undefined ? undefined : isoTime(ms);
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
  // A lone surrogate (a claim can carry one as a JSON escape) becomes U+FFFD: canonical JSON refuses lone
  // surrogates, and the record must still be written.
  const text = value.isWellFormed() ? value : value.toWellFormed();
  if (text.length <= max) return text;
  // Cut on a code point boundary so the result stays well-formed.
  let cut = max;
  const code = text.charCodeAt(cut - 1);
  if (code >= 0xd800 && code <= 0xdbff) cut -= 1;
  return text.slice(0, cut) + TRUNCATED;
}

const uuidBytes = Buffer.alloc(16);
// Random bits are drawn 128 ids at a time, as crypto.randomUUID() does: one call into the CSPRNG (and its
// getpid() fork check) per 128 records instead of one per record.
const entropy = Buffer.alloc(16 * 128);
let entropyAt = entropy.length;

/**
 * A UUIDv7 (RFC 9562 §5.7): 48-bit Unix milliseconds then random bits, so ids sort by creation time
 * (chain ids list oldest first; event ids index well).
 */
export function uuidv7(nowMs: number = Date.now()): string {
  if (entropyAt === entropy.length) {
    randomFillSync(entropy);
    entropyAt = 0;
  }
  entropy.copy(uuidBytes, 6, entropyAt + 6, entropyAt + 16);
  entropyAt += 16;
  uuidBytes.writeUIntBE(Math.max(0, Math.floor(nowMs)) % 2 ** 48, 0, 6);
  uuidBytes[6] = (uuidBytes[6]! & 0x0f) | 0x70;
  uuidBytes[8] = (uuidBytes[8]! & 0x3f) | 0x80;
  const hex = uuidBytes.toString('hex');
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}
