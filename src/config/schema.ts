/**
 * The configuration file's shape: the single source of truth for what a YAML file may say. Every object is
 * strict, so an unknown (often misspelled) key is an error with its line, not a silently ignored setting.
 * Cross-references (a route naming an unknown issuer) and file contents are checked in `compile.ts`.
 */
import { z } from 'zod';
import { parseDuration } from '../tools/duration.ts';

/** A duration such as `30s`, `15m`, `1h30m`, or a bare number of seconds; compiled to milliseconds. */
export const duration = z.union([z.string(), z.number()]).transform((value, ctx) => {
  try {
    return parseDuration(value);
  } catch (error) {
    ctx.addIssue({ code: 'custom', message: (error as Error).message });
    return z.NEVER;
  }
});

/** `host:port`, `[v6]:port` or `:port` (all interfaces is never implied: `:port` means 127.0.0.1). */
export const listenAddress = z.string().transform((value, ctx) => {
  const match = /^(?:\[([0-9a-fA-F:.]+)\]|([^:\s[\]]*)):(\d{1,5})$/.exec(value);
  const port = match ? Number(match[3]) : NaN;
  if (!match || port > 65535) {
    ctx.addIssue({ code: 'custom', message: `invalid listen address "${value}": expected host:port` });
    return z.NEVER;
  }
  return { host: match[1] ?? (match[2] || '127.0.0.1'), port };
});

const httpUrl = z.string().refine((value) => {
  try {
    const url = new URL(value);
    return url.protocol === 'http:' || url.protocol === 'https:';
  } catch {
    return false;
  }
}, 'expected an http(s) URL');

const origin = z.string().refine((value) => {
  try {
    const url = new URL(value);
    return (url.protocol === 'http:' || url.protocol === 'https:') && (url.pathname === '/' || url.pathname === '') && !url.search;
  } catch {
    return false;
  }
}, 'expected an origin such as http://127.0.0.1:3000 (no path)');

const headerName = z
  .string()
  .regex(/^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/, 'expected an HTTP header name (RFC 9110 token)')
  // Header sets are plain objects on the request path, where this name would set the prototype instead.
  .refine((value) => value.toLowerCase() !== '__proto__', 'the header name __proto__ is not supported')
  .transform((value) => value.toLowerCase());

/**
 * A map keyed by header names. zod drops a `__proto__` key without a word; refuse it instead, at its
 * position, so a configured header is never silently ignored.
 */
function headerRecord<T extends z.ZodType>(record: T) {
  return z.preprocess((value, ctx) => {
    if (value !== null && typeof value === 'object' && Object.keys(value).some((k) => k.toLowerCase() === '__proto__')) {
      ctx.addIssue({ code: 'custom', message: 'the header name __proto__ is not supported', path: ['__proto__'] });
    }
    return value;
  }, record);
}

/** Algorithms a JWS may use. `none` is not in the list, so no configuration can allow it. */
export const ALGORITHMS = [
  'RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512',
  'ES256', 'ES384', 'ES512', 'EdDSA', 'Ed25519',
  'HS256', 'HS384', 'HS512',
] as const;

const staticKey = z.union([
  z.strictObject({ jwks_file: z.string().min(1) }),
  z.strictObject({ jwk_file: z.string().min(1) }),
  z.strictObject({ pem_file: z.string().min(1), kid: z.string().optional(), alg: z.enum(ALGORITHMS).optional() }),
  z.strictObject({ hmac_secret_env: z.string().min(1), kid: z.string().optional() }),
  z.strictObject({ hmac_secret_file: z.string().min(1), kid: z.string().optional() }),
], { error: 'expected one of jwks_file, jwk_file, pem_file, hmac_secret_env, hmac_secret_file' });

const jwksPolicy = z.strictObject({
  timeout: duration.prefault('5s'),
  min_ttl: duration.prefault('5m'),
  max_ttl: duration.prefault('24h'),
  cooldown: duration.prefault('30s'),
  stale_max: duration.prefault('24h'),
  retry_after: duration.prefault('5s'),
  max_bytes: z.number().int().min(1024).max(16 * 1024 * 1024).default(1024 * 1024),
});

const claimPathList = z.array(z.string().min(1));

/** Shorthand requirement: all listed keys must hold; any listed value within a key suffices. */
export const requirement = z.strictObject({
  roles: z.array(z.string().min(1)).default([]),
  scopes: z.array(z.string().min(1)).default([]),
  groups: z.array(z.string().min(1)).default([]),
  claims: z.record(z.string().min(1), z.union([z.array(z.union([z.string(), z.number(), z.boolean()])).min(1), z.string(), z.number(), z.boolean()])).default({}),
});

const rule = z.strictObject({
  id: z.string().regex(/^[A-Za-z0-9_.:-]+$/, 'a rule id is letters, digits and _.:-').optional(),
  effect: z.enum(['allow', 'deny']).default('allow'),
  require: requirement.optional(),
  when: z.string().min(1).optional(),
}).refine((r) => r.require !== undefined || r.when !== undefined, 'a rule needs require or when');

const issuer = z.strictObject({
  issuer: z.string().min(1),
  discovery: z.union([z.boolean(), httpUrl]).default(false),
  jwks_uri: httpUrl.optional(),
  keys: z.array(staticKey).default([]),
  audiences: z.array(z.string().min(1)).default([]),
  algorithms: z.array(z.enum(ALGORITHMS, { error: `expected one of ${ALGORITHMS.join(', ')} (never "none")` })).optional(),
  clock_skew: duration.prefault('30s'),
  required_claims: z.array(z.string().min(1)).default(['exp']),
  jwks: jwksPolicy.prefault({}),
  /** Where roles, scopes and groups live in this issuer's tokens (claim paths, values unioned). */
  identity: z.strictObject({
    roles: claimPathList.default(['roles', 'realm_access.roles']),
    scopes: claimPathList.default(['scope', 'scp', 'permissions']),
    groups: claimPathList.default(['groups']),
  }).prefault({}),
  environment: z.union([
    z.strictObject({ claim: z.string().min(1) }),
    z.strictObject({ audiences: z.record(z.string().min(1), z.string().min(1)) }),
  ], { error: 'expected { claim: path } or { audiences: { <aud>: <environment> } }' }).optional(),
});

const upstream = z.strictObject({
  targets: z.array(origin).min(1, 'an upstream needs at least one target'),
  connect_timeout: duration.prefault('5s'),
  timeout: duration.prefault('30s'),
  body_timeout: duration.prefault('5m'),
  connections: z.number().int().min(1).max(4096).default(128),
});

const tokenLocation = z.union([
  z.strictObject({ header: headerName, prefix: z.string().default('') }),
  z.strictObject({ cookie: z.string().min(1) }),
  z.strictObject({ query: z.string().min(1) }),
], { error: 'expected { header, prefix }, { cookie } or { query }' });

const routeMatch = z
  .strictObject({
    host: z.string().min(1).optional(),
    path: z.string().startsWith('/', 'a path starts with "/"').optional(),
    path_prefix: z.string().startsWith('/', 'a path prefix starts with "/"').optional(),
    methods: z.array(z.string().regex(/^[A-Za-z]+$/, 'expected an HTTP method')).default([]),
  })
  .refine((m) => !(m.path !== undefined && m.path_prefix !== undefined), 'use either path or path_prefix, not both');

const route = z.strictObject({
  id: z.string().regex(/^[A-Za-z0-9_.:-]+$/, 'a route id is letters, digits and _.:-'),
  match: routeMatch,
  auth: z
    .strictObject({
      mode: z.enum(['required', 'optional', 'off']).default('required'),
      issuers: z.array(z.string()).default([]),
      from: z.array(tokenLocation).min(1).optional(),
    })
    .prefault({}),
  upstream: z.string().min(1).optional(),
  /** Serve the audit query API here instead of forwarding (needs `audit`). */
  audit_api: z.boolean().default(false),
  rewrite_prefix: z.string().optional(),
  strip_authorization: z.boolean().default(true),
  claims_to_headers: headerRecord(z.record(headerName, z.string().min(1))).default({}),
  /** Header name (optionally templated after a fixed `prefix-`) -> value template. */
  set_headers: headerRecord(z.record(z.string().min(1), z.string())).default({}),
  environment: z.string().min(1).optional(),
  require: requirement.optional(),
  allow: z.string().min(1).optional(),
  deny: z.string().min(1).optional(),
  rules: z.array(rule).optional(),
  loki: z.strictObject({
    enforce: z.record(z.string().regex(/^[a-zA-Z_][a-zA-Z0-9_]*$/, 'a Loki label name'), z.string().min(1)).default({}),
    tenant: z.string().min(1).optional(),
    multi_tenant: z.boolean().default(false),
    allow_push: z.boolean().default(false),
    max_body_bytes: z.number().int().min(1024).max(16 * 1024 * 1024).default(1024 * 1024),
  }).optional(),
  timeout: duration.optional(),
  websocket: z.boolean().default(true),
});

const secretSource = z.union([z.strictObject({ file: z.string().min(1) }), z.strictObject({ env: z.string().min(1) })], {
  error: 'expected { file: path } or { env: NAME }',
});

const audit = z.strictObject({
  store: z.string().min(1),
  mode: z.enum(['fail-closed', 'fail-open']).default('fail-closed'),
  signing_key: secretSource,
  key_id: z.string().regex(/^[A-Za-z0-9._-]{1,64}$/).optional(),
  redaction: z.strictObject({
    key: secretSource,
    key_id: z.string().regex(/^[A-Za-z0-9._-]{1,64}$/),
    fields: z.array(z.string().min(1)).default([]),
    logql_labels: z.array(z.string().min(1)).default([]),
    emails: z.boolean().default(true),
  }).optional(),
  checkpoint: z.strictObject({ every: z.number().int().min(1).max(1_000_000).default(1000), interval: duration.prefault('10s') }).prefault({}),
  queue_max: z.number().int().min(1).max(10_000_000).default(10_000),
  // Bounded: a record waits this long in memory before it is written; beyond a second that is a risk, not a saving.
  batch_wait: duration.prefault('10ms').refine((ms) => ms <= 1000, 'batch_wait must be at most 1s'),
  spool: z.strictObject({ dir: z.string().min(1), max_bytes: z.number().int().min(4096).default(64 * 1024 * 1024) }).optional(),
  anchor_file: z.string().min(1).optional(),
  trusted_hops: z.array(z.string().min(1)).default([]),
  retention: z.strictObject({ older_than: duration, every: duration.prefault('24h'), trusted_keys: z.string().min(1) }).optional(),
});

export const configSchema = z.strictObject({
  listen: listenAddress.prefault('127.0.0.1:8080'),
  admin: z.union([listenAddress, z.literal(false)]).prefault('127.0.0.1:9090'),
  realm: z.string().min(1).default('portcullis'),
  /** The environment every route serves unless it names its own (a staging proxy never admits prod tokens). */
  environment: z.string().min(1).optional(),
  trust_forwarded: z.boolean().default(false),
  limits: z
    .strictObject({
      max_token_bytes: z.number().int().min(256).max(1024 * 1024).default(8192),
      max_header_bytes: z.number().int().min(1024).max(1024 * 1024).default(32 * 1024),
      request_timeout: duration.prefault('5m'),
      drain_timeout: duration.prefault('10s'),
      token_cache_entries: z.number().int().min(0).max(1_000_000).default(10_000),
    })
    .prefault({}),
  log: z.strictObject({ level: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info') }).prefault({}),
  issuers: z.record(z.string().regex(/^[A-Za-z0-9_.-]+$/, 'an issuer id is letters, digits and _.-'), issuer).default({}),
  upstreams: z.record(z.string().regex(/^[A-Za-z0-9_.-]+$/, 'an upstream id is letters, digits and _.-'), upstream),
  routes: z.array(route).min(1, 'at least one route is required'),
  audit: audit.optional(),
  dev_issuer: z.strictObject({ jwks_file: z.string().min(1), path: z.string().startsWith('/').default('/.well-known/jwks.json') }).optional(),
});

export type RawConfig = z.output<typeof configSchema>;
export type RawRoute = RawConfig['routes'][number];
export type RawIssuer = RawConfig['issuers'][string];
export type RawRequirement = z.output<typeof requirement>;
