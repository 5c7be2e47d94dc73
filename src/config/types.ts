/**
 * Compiled configuration: what the rest of the code sees after `compileConfig`. Durations are numbers
 * (milliseconds unless the name says seconds), names are camelCase, every object is frozen. The snake_case
 * YAML keys exist only in `schema.ts`.
 */

/** Where a static key comes from. Files are read at compile time so a bad path fails `portcullis check`. */
export type StaticKeySpec =
  | { readonly kind: 'jwks_file'; readonly path: string }
  | { readonly kind: 'pem_file'; readonly path: string; readonly kid?: string; readonly alg?: string }
  | { readonly kind: 'jwk_file'; readonly path: string }
  | { readonly kind: 'hmac_env'; readonly name: string; readonly kid?: string }
  | { readonly kind: 'hmac_file'; readonly path: string; readonly kid?: string };

export interface JwksPolicy {
  /** Timeout of one JWKS or discovery fetch. */
  readonly timeoutMs: number;
  /** Cache-Control max-age is clamped into [minTtlMs, maxTtlMs]; without it, maxTtlMs applies. */
  readonly minTtlMs: number;
  readonly maxTtlMs: number;
  /** At most one refetch per cooldown when a token names an unknown `kid`. */
  readonly cooldownMs: number;
  /** After the last successful fetch, keys keep serving this long while the IdP fails (stale-if-error). */
  readonly staleMaxMs: number;
  /** Seconds advertised in Retry-After when an issuer never had keys. */
  readonly retryAfterSeconds: number;
  /** Largest JWKS / discovery body accepted. */
  readonly maxBytes: number;
}

/** Where an issuer's tokens keep roles, scopes and groups (claim paths, unioned). */
export interface IdentityMapping {
  readonly roles: readonly (readonly string[])[];
  readonly scopes: readonly (readonly string[])[];
  readonly groups: readonly (readonly string[])[];
}

/** How a token names its environment: a claim, or its audience mapped to an environment. */
export type EnvironmentSource =
  | { readonly kind: 'claim'; readonly claim: readonly string[] }
  | { readonly kind: 'audience'; readonly audiences: Readonly<Record<string, string>> };

export interface IssuerConfig {
  /** The config key, used in metrics labels and logs. */
  readonly id: string;
  /** Exact `iss` value. */
  readonly issuer: string;
  /** Any-of; empty means `aud` is not checked. */
  readonly audiences: readonly string[];
  /** Allowed JWS algorithms; never contains `none`. */
  readonly algorithms: readonly string[];
  readonly clockSkewSeconds: number;
  /** Claims that must be present (default `['exp']`). */
  readonly requiredClaims: readonly string[];
  /** OIDC discovery document URL (`<issuer>/.well-known/openid-configuration` when `discovery: true`). */
  readonly discoveryUrl: string | undefined;
  readonly jwksUri: string | undefined;
  readonly staticKeys: readonly StaticKeySpec[];
  readonly jwks: JwksPolicy;
  readonly identity: IdentityMapping;
  readonly environment: EnvironmentSource | undefined;
}

export type TokenLocation =
  /** `name` is lower-case (the config schema folds header names). */
  | { readonly kind: 'header'; readonly name: string; readonly prefix: string }
  | { readonly kind: 'cookie'; readonly name: string }
  | { readonly kind: 'query'; readonly name: string };

export type AuthMode = 'required' | 'optional' | 'off';

export interface ClaimHeader {
  /** Lower-case header name. */
  readonly header: string;
  /** Claim path segments, e.g. ['realm_access', 'roles'] or ['https://example.com/roles']. */
  readonly claim: readonly string[];
}

/** A shorthand requirement: every listed key must hold; within a key, any listed value suffices. */
export interface Requirement {
  readonly roles: readonly string[];
  readonly scopes: readonly string[];
  readonly groups: readonly string[];
  readonly claims: readonly { readonly claim: readonly string[]; readonly values: readonly (string | number | boolean)[] }[];
}

export interface PolicyRule {
  readonly id: string;
  readonly effect: 'allow' | 'deny';
  /** Both conditions must hold when both are given. */
  readonly require: Requirement | undefined;
  /** CEL source over `claims` and `request`; compiled into the runtime. */
  readonly when: string | undefined;
}

/** A header the proxy sets from a template such as `{{claims.sub}}@{{request.params.env}}`. */
export interface HeaderTemplate {
  /** The lower-case header name; for a templated name, its fixed prefix (ending in `-`). */
  readonly header: string;
  /** A templated name (`x-env-{{request.params.env}}`): rendered per request, always under `header`. */
  readonly nameParts: HeaderTemplate['parts'] | undefined;
  readonly parts: readonly ({ readonly text: string } | { readonly claim: readonly string[] } | { readonly param: string })[];
}

/** A route in front of Grafana Loki: every read is label-enforced, everything else denied. */
export interface LokiRouteConfig {
  /** Stream label -> claim path whose value (string or list) gives the allowed label values. */
  readonly enforce: readonly { readonly label: string; readonly claim: readonly string[] }[];
  /** Claim naming the tenant(s) for X-Scope-OrgID; undefined: the header is stripped, never set. */
  readonly tenant: readonly string[] | undefined;
  /** Several tenants may be joined with `|` (Loki multi-tenant queries). */
  readonly multiTenant: boolean;
  readonly allowPush: boolean;
  /** Largest form body read to enforce a POSTed query. */
  readonly maxBodyBytes: number;
}

export interface RouteConfig {
  readonly id: string;
  /** Lower-case host without port; undefined matches any host. A leading `*.` matches subdomains. */
  readonly host: string | undefined;
  readonly path: { readonly kind: 'exact' | 'prefix'; readonly value: string };
  /** Upper-case methods; empty means any. */
  readonly methods: readonly string[];
  readonly auth: {
    readonly mode: AuthMode;
    /** Issuer ids allowed on this route; empty means every configured issuer. */
    readonly issuers: readonly string[];
    readonly from: readonly TokenLocation[];
  };
  readonly upstream: string;
  /** Replaces the matched prefix (`''` strips it). undefined keeps the path. */
  readonly rewritePrefix: string | undefined;
  readonly stripAuthorization: boolean;
  readonly claimHeaders: readonly ClaimHeader[];
  readonly headerTemplates: readonly HeaderTemplate[];
  /** undefined: any verified token (authentication only). Otherwise default deny. */
  readonly rules: readonly PolicyRule[] | undefined;
  /** The environment this route serves; a token of another environment is refused. */
  readonly environment: string | undefined;
  readonly loki: LokiRouteConfig | undefined;
  /** This route serves the audit query API (no upstream): reads are themselves audited. */
  readonly auditApi: boolean;
  readonly timeoutMs: number;
  readonly websocket: boolean;
}

export interface UpstreamConfig {
  readonly id: string;
  /** Origins such as `http://127.0.0.1:3000` (no path). */
  readonly targets: readonly string[];
  readonly connectTimeoutMs: number;
  /** Time to wait for response headers. */
  readonly timeoutMs: number;
  /** Idle time between body chunks. */
  readonly bodyTimeoutMs: number;
  readonly connections: number;
}

export interface LimitsConfig {
  readonly maxTokenBytes: number;
  readonly maxHeaderBytes: number;
  readonly requestTimeoutMs: number;
  readonly drainTimeoutMs: number;
  /** Verified tokens kept in memory (0 disables the cache). */
  readonly tokenCacheEntries: number;
}

export type SecretSource = { readonly file: string } | { readonly env: string };

export interface AuditConfig {
  /** `sqlite:path` or `postgres://...` */
  readonly store: string;
  readonly mode: 'fail-closed' | 'fail-open';
  readonly signingKey: SecretSource;
  readonly keyId: string | undefined;
  readonly redaction: {
    readonly key: SecretSource;
    readonly keyId: string;
    /** Audit fields replaced by keyed HMACs, e.g. user.id, user.email, client.ip. */
    readonly fields: readonly string[];
    /** LogQL label names whose values are replaced in the recorded queries. */
    readonly logqlLabels: readonly string[];
    readonly emails: boolean;
  } | undefined;
  readonly checkpointEvery: number;
  readonly checkpointIntervalMs: number;
  readonly queueMax: number;
  /** Longest a record waits in memory for others to share its batch (writer.ts). */
  readonly batchWaitMs: number;
  readonly spool: { readonly dir: string; readonly maxBytes: number } | undefined;
  /** Checkpoints are also appended here (an external anchor). */
  readonly anchorFile: string | undefined;
  /** Peers whose X-Forwarded-For is believed for client.ip (addresses or CIDR ranges). */
  readonly trustedHops: readonly string[];
  readonly retention: { readonly olderThanMs: number; readonly everyMs: number; readonly trustedKeysFile: string } | undefined;
}

export interface CompiledConfig {
  readonly source: string;
  readonly listen: { readonly host: string; readonly port: number };
  readonly admin: { readonly host: string; readonly port: number } | undefined;
  readonly realm: string;
  readonly trustForwarded: boolean;
  readonly issuers: readonly IssuerConfig[];
  readonly upstreams: readonly UpstreamConfig[];
  readonly routes: readonly RouteConfig[];
  readonly limits: LimitsConfig;
  readonly log: { readonly level: string };
  /** Key folders the admin listener serves as `/.well-known/...` JWKS (the quickstart's dev issuer). */
  readonly devIssuer: { readonly jwksFile: string; readonly path: string } | undefined;
  readonly audit: AuditConfig | undefined;
}
