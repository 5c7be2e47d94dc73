/**
 * Turns a validated raw config into frozen runtime objects, checking what a schema cannot: references
 * between sections, key files that must be readable, algorithm lists that must match the keys. Every
 * problem is collected with its position; a config that compiles cannot fail at request time.
 */
import { isIP } from 'node:net';
import { dirname, isAbsolute, resolve } from 'node:path';
import { parseAuditStoreUrl } from '../audit/open-store.ts';
import { loadStaticKeys } from '../auth/static-keys.ts';
import { parseClaimPath } from '../policy/claim-path.ts';
import { compileCel } from '../policy/cel.ts';
import { ConfigError, loadConfigFile, sortProblems } from './load.ts';
import type { ConfigProblem, LoadedConfig } from './load.ts';
import type { RawConfig, RawIssuer, RawRequirement, RawRoute } from './schema.ts';
import type {
  AuditConfig,
  ClaimHeader,
  SecretSource,
  CompiledConfig,
  EnvironmentSource,
  HeaderTemplate,
  IssuerConfig,
  LokiRouteConfig,
  PolicyRule,
  Requirement,
  RouteConfig,
  StaticKeySpec,
  TokenLocation,
  UpstreamConfig,
} from './types.ts';

/** Asymmetric algorithms allowed when an issuer lists none: HMAC needs an explicit shared secret. */
const DEFAULT_ASYMMETRIC = ['RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512', 'ES256', 'ES384', 'ES512', 'EdDSA', 'Ed25519'];
const HMAC = ['HS256', 'HS384', 'HS512'];

/**
 * Headers the proxy itself owns or that would break framing; a claim may never be written into them.
 * (RFC 9110 §7.6.1 hop-by-hop fields, message framing, and credentials.)
 */
const RESERVED_HEADERS = new Set([
  'host', 'content-length', 'transfer-encoding', 'connection', 'keep-alive', 'upgrade', 'te', 'trailer',
  'proxy-connection', 'proxy-authorization', 'proxy-authenticate', 'authorization', 'cookie', 'expect',
  'x-forwarded-for', 'x-forwarded-proto', 'x-forwarded-host', 'x-request-id', 'forwarded',
]);

const HEADER_TOKEN = /^[!#$%&'*+.^_`|~0-9a-z-]+$/;

export const DEFAULT_TOKEN_LOCATION: TokenLocation = Object.freeze({ kind: 'header', name: 'authorization', prefix: 'Bearer ' });

/** Loads, validates and compiles a config file. Throws ConfigError listing every problem. */
export async function compileConfigFile(file: string, env: NodeJS.ProcessEnv = process.env): Promise<CompiledConfig> {
  return compileConfig(loadConfigFile(file, env), env);
}

export async function compileConfig(loaded: LoadedConfig, env: NodeJS.ProcessEnv = process.env): Promise<CompiledConfig> {
  const { raw, locator } = loaded;
  const problems: ConfigProblem[] = [];
  const baseDir = dirname(resolve(locator.file));
  const filePath = (p: string): string => (isAbsolute(p) ? p : resolve(baseDir, p));

  const issuers: IssuerConfig[] = [];
  const seenIss = new Map<string, string>();
  for (const [id, rawIssuer] of Object.entries(raw.issuers)) {
    const other = seenIss.get(rawIssuer.issuer);
    if (other !== undefined) {
      problems.push(locator.problem(['issuers', id, 'issuer'], `issuer "${rawIssuer.issuer}" is already configured as "${other}": a token's iss must select exactly one issuer`));
    }
    seenIss.set(rawIssuer.issuer, id);
    issuers.push(await compileIssuer(id, rawIssuer, filePath, env, (path, message) => problems.push(locator.problem(['issuers', id, ...path], message))));
  }

  const upstreams: UpstreamConfig[] = Object.entries(raw.upstreams).map(([id, u]) =>
    Object.freeze({
      id,
      targets: Object.freeze(u.targets.map((t) => new URL(t).origin)),
      connectTimeoutMs: u.connect_timeout,
      timeoutMs: u.timeout,
      bodyTimeoutMs: u.body_timeout,
      connections: u.connections,
    }),
  );

  const routes: RouteConfig[] = [];
  const seenRoutes = new Set<string>();
  raw.routes.forEach((rawRoute, index) => {
    const report = (path: (string | number)[], message: string): void => {
      problems.push(locator.problem(['routes', index, ...path], message));
    };
    if (seenRoutes.has(rawRoute.id)) report(['id'], `duplicate route id "${rawRoute.id}"`);
    seenRoutes.add(rawRoute.id);
    routes.push(compileRoute(rawRoute, raw, report));
  });

  const audit = raw.audit === undefined ? undefined : compileAudit(raw.audit, filePath, (path, message) => problems.push(locator.problem(['audit', ...path], message)));

  if (problems.length > 0) throw new ConfigError(sortProblems(problems));

  return deepFreeze({
    audit,
    source: locator.file,
    listen: raw.listen,
    admin: raw.admin === false ? undefined : raw.admin,
    realm: raw.realm,
    trustForwarded: raw.trust_forwarded,
    issuers,
    upstreams,
    routes,
    limits: {
      maxTokenBytes: raw.limits.max_token_bytes,
      maxHeaderBytes: raw.limits.max_header_bytes,
      requestTimeoutMs: raw.limits.request_timeout,
      drainTimeoutMs: raw.limits.drain_timeout,
      tokenCacheEntries: raw.limits.token_cache_entries,
    },
    log: { level: raw.log.level },
    devIssuer: raw.dev_issuer ? { jwksFile: filePath(raw.dev_issuer.jwks_file), path: raw.dev_issuer.path } : undefined,
  });
}

async function compileIssuer(
  id: string,
  raw: RawIssuer,
  filePath: (p: string) => string,
  env: NodeJS.ProcessEnv,
  report: (path: (string | number)[], message: string) => void,
): Promise<IssuerConfig> {
  const staticKeys: StaticKeySpec[] = raw.keys.map((k): StaticKeySpec => {
    if ('jwks_file' in k) return { kind: 'jwks_file', path: filePath(k.jwks_file) };
    if ('jwk_file' in k) return { kind: 'jwk_file', path: filePath(k.jwk_file) };
    if ('pem_file' in k) return { kind: 'pem_file', path: filePath(k.pem_file), kid: k.kid, alg: k.alg };
    if ('hmac_secret_env' in k) return { kind: 'hmac_env', name: k.hmac_secret_env, kid: k.kid };
    return { kind: 'hmac_file', path: filePath(k.hmac_secret_file), kid: k.kid };
  });
  let hasSecret = false;
  for (const [index, spec] of staticKeys.entries()) {
    try {
      const keys = await loadStaticKeys(spec, env);
      if (keys.some((k) => k.kind === 'secret')) hasSecret = true;
    } catch (error) {
      report(['keys', index], (error as Error).message);
    }
  }

  let discoveryUrl: string | undefined;
  if (raw.discovery === true) discoveryUrl = raw.issuer.replace(/\/$/, '') + '/.well-known/openid-configuration';
  else if (typeof raw.discovery === 'string') discoveryUrl = raw.discovery;
  if (discoveryUrl !== undefined) {
    try {
      new URL(discoveryUrl);
    } catch {
      report(['discovery'], `discovery: true needs an issuer that is a URL, got "${raw.issuer}"`);
    }
  }
  if (discoveryUrl === undefined && raw.jwks_uri === undefined && staticKeys.length === 0) {
    report([], `issuer "${id}" has no keys: set discovery, jwks_uri or keys`);
  }

  let algorithms: string[];
  if (raw.algorithms === undefined) {
    algorithms = hasSecret ? [...DEFAULT_ASYMMETRIC, ...HMAC] : [...DEFAULT_ASYMMETRIC];
  } else {
    algorithms = [...new Set(raw.algorithms)];
    if (algorithms.length === 0) report(['algorithms'], 'at least one algorithm is required');
    const hmac = algorithms.filter((a) => HMAC.includes(a));
    if (hmac.length > 0 && !hasSecret) {
      report(['algorithms'], `${hmac.join(', ')} needs an HMAC secret in keys (hmac_secret_env or hmac_secret_file); without one an HMAC token could be checked against a public key`);
    }
  }

  const paths = (key: 'roles' | 'scopes' | 'groups'): string[][] =>
    raw.identity[key].flatMap((text, i) => {
      try {
        return [parseClaimPath(text)];
      } catch (error) {
        report(['identity', key, i], (error as Error).message);
        return [];
      }
    });
  let environment: EnvironmentSource | undefined;
  if (raw.environment !== undefined) {
    if ('claim' in raw.environment) {
      try {
        environment = { kind: 'claim', claim: parseClaimPath(raw.environment.claim) };
      } catch (error) {
        report(['environment', 'claim'], (error as Error).message);
      }
    } else {
      environment = { kind: 'audience', audiences: raw.environment.audiences };
    }
  }

  return {
    id,
    issuer: raw.issuer,
    identity: { roles: paths('roles'), scopes: paths('scopes'), groups: paths('groups') },
    environment,
    audiences: raw.audiences,
    algorithms,
    clockSkewSeconds: Math.floor(raw.clock_skew / 1000),
    requiredClaims: [...new Set(raw.required_claims)],
    discoveryUrl,
    jwksUri: raw.jwks_uri,
    staticKeys,
    jwks: {
      timeoutMs: raw.jwks.timeout,
      minTtlMs: raw.jwks.min_ttl,
      maxTtlMs: Math.max(raw.jwks.max_ttl, raw.jwks.min_ttl),
      cooldownMs: raw.jwks.cooldown,
      staleMaxMs: raw.jwks.stale_max,
      retryAfterSeconds: Math.max(1, Math.ceil(raw.jwks.retry_after / 1000)),
      maxBytes: raw.jwks.max_bytes,
    },
  };
}

function compileRoute(raw: RawRoute, config: RawConfig, report: (path: (string | number)[], message: string) => void): RouteConfig {
  if (raw.audit_api) {
    if (config.audit === undefined) report(['audit_api'], 'audit_api needs an audit section');
    if (raw.upstream !== undefined) report(['upstream'], 'an audit_api route answers itself; remove upstream');
    if (raw.rules === undefined && raw.require === undefined && raw.allow === undefined) {
      report(['audit_api'], 'an audit_api route needs rules (e.g. require: { roles: [auditor] }): the audit log is not for every token');
    }
  } else if (raw.upstream === undefined) {
    report([], 'a route needs an upstream');
  } else if (!Object.hasOwn(config.upstreams, raw.upstream)) {
    report(['upstream'], `unknown upstream "${raw.upstream}"${known(Object.keys(config.upstreams))}`);
  }
  raw.auth.issuers.forEach((issuerId, i) => {
    if (!Object.hasOwn(config.issuers, issuerId)) {
      report(['auth', 'issuers', i], `unknown issuer "${issuerId}"${known(Object.keys(config.issuers))}`);
    }
  });
  if (raw.auth.mode !== 'off' && Object.keys(config.issuers).length === 0) {
    report(['auth', 'mode'], `auth mode "${raw.auth.mode}" needs at least one issuer under issuers`);
  }
  const pathValue = raw.match.path ?? raw.match.path_prefix ?? '/';
  if (raw.rewrite_prefix !== undefined && raw.match.path_prefix === undefined) {
    report(['rewrite_prefix'], 'rewrite_prefix needs match.path_prefix');
  }

  const claimHeaders: ClaimHeader[] = [];
  for (const [header, claim] of Object.entries(raw.claims_to_headers)) {
    if (RESERVED_HEADERS.has(header)) {
      report(['claims_to_headers', header], `header "${header}" is owned by the proxy and cannot carry a claim`);
      continue;
    }
    try {
      claimHeaders.push({ header, claim: parseClaimPath(claim) });
    } catch (error) {
      report(['claims_to_headers', header], (error as Error).message);
    }
  }

  const from: TokenLocation[] = raw.auth.from === undefined
    ? [DEFAULT_TOKEN_LOCATION]
    : raw.auth.from.map((loc): TokenLocation => {
      if ('header' in loc) return { kind: 'header', name: loc.header, prefix: loc.prefix };
      if ('cookie' in loc) return { kind: 'cookie', name: loc.cookie };
      return { kind: 'query', name: loc.query };
    });

  const headerTemplates: HeaderTemplate[] = [];
  for (const [rawName, template] of Object.entries(raw.set_headers)) {
    const name = rawName.toLowerCase();
    try {
      const value = parseTemplate(template);
      const brace = name.indexOf('{{');
      if (brace < 0) {
        if (!HEADER_TOKEN.test(name)) throw new Error(`"${rawName}" is not an HTTP header name (RFC 9110 token)`);
        if (RESERVED_HEADERS.has(name) || raw.claims_to_headers[name] !== undefined) throw new Error(`header "${name}" is owned by the proxy or set twice`);
        headerTemplates.push({ header: name, nameParts: undefined, parts: value });
        continue;
      }
      // A templated name needs a fixed prefix ending in "-": every client header with that prefix is
      // stripped, so a caller can never pre-set a name the template might render.
      const prefix = name.slice(0, brace);
      if (!/^[a-z0-9][a-z0-9-]{1,}-$/.test(prefix)) throw new Error(`a templated header name needs a fixed prefix ending in "-" (e.g. x-claim-{{claims.team}}), got "${rawName}"`);
      if ([...RESERVED_HEADERS].some((r) => r.startsWith(prefix))) throw new Error(`prefix "${prefix}" would cover a header the proxy owns`);
      headerTemplates.push({ header: prefix, nameParts: parseTemplate(name.slice(prefix.length)), parts: value });
    } catch (error) {
      report(['set_headers', rawName], (error as Error).message);
    }
  }

  const rules = compileRules(raw, report);
  if (rules !== undefined && raw.auth.mode === 'off') {
    report(['auth', 'mode'], 'a route with rules needs authentication (auth mode required or optional)');
  }
  const environment = raw.environment ?? config.environment;
  if (environment !== undefined && raw.auth.mode !== 'off') {
    const selected = raw.auth.issuers.length > 0 ? raw.auth.issuers : Object.keys(config.issuers);
    for (const id of selected) {
      if (config.issuers[id] !== undefined && config.issuers[id].environment === undefined) {
        report(raw.environment !== undefined ? ['environment'] : ['auth'], `route environment "${environment}" needs issuer "${id}" to say where tokens name their environment (issuers.${id}.environment)`);
      }
    }
  }

  let loki: LokiRouteConfig | undefined;
  if (raw.loki !== undefined) {
    const claimRef = (text: string, path: (string | number)[]): string[] | undefined => {
      const m = /^claims(?:\.|(?=\[))(.+)$/.exec(text);
      if (!m) {
        report(path, `expected a claim reference such as claims.env, got "${text}"`);
        return undefined;
      }
      try {
        return parseClaimPath(m[1]!);
      } catch (error) {
        report(path, (error as Error).message);
        return undefined;
      }
    };
    const enforce: { label: string; claim: string[] }[] = [];
    for (const [label, ref] of Object.entries(raw.loki.enforce)) {
      const claim = claimRef(ref, ['loki', 'enforce', label]);
      if (claim) enforce.push({ label, claim });
    }
    if (enforce.length === 0 && !raw.loki.allow_push) {
      report(['loki', 'enforce'], 'a Loki route needs at least one enforced label (loki.enforce)');
    }
    if (raw.auth.mode !== 'required') report(['auth', 'mode'], 'a Loki route needs auth mode required');
    loki = {
      enforce,
      tenant: raw.loki.tenant === undefined ? undefined : claimRef(raw.loki.tenant, ['loki', 'tenant']),
      multiTenant: raw.loki.multi_tenant,
      allowPush: raw.loki.allow_push,
      maxBodyBytes: raw.loki.max_body_bytes,
    };
  }

  const upstreamTimeout = (raw.upstream !== undefined ? config.upstreams[raw.upstream]?.timeout : undefined) ?? 30_000;
  return {
    id: raw.id,
    host: raw.match.host?.toLowerCase().replace(/:\d+$/, ''),
    path: { kind: raw.match.path !== undefined ? 'exact' : 'prefix', value: pathValue },
    methods: [...new Set(raw.match.methods.map((m) => m.toUpperCase()))],
    auth: { mode: raw.auth.mode, issuers: raw.auth.issuers, from },
    upstream: raw.upstream ?? '',
    rewritePrefix: raw.rewrite_prefix,
    stripAuthorization: raw.strip_authorization,
    claimHeaders,
    headerTemplates,
    rules,
    environment: raw.auth.mode === 'off' ? undefined : environment,
    loki,
    auditApi: raw.audit_api,
    timeoutMs: raw.timeout ?? upstreamTimeout,
    websocket: raw.websocket,
  };
}

/**
 * Route-level `require`, `allow` and `deny` are shorthands for rules with those ids; `rules` adds more.
 * Returns undefined when the route has no policy at all (authentication only).
 */
function compileRules(raw: RawRoute, report: (path: (string | number)[], message: string) => void): PolicyRule[] | undefined {
  if (raw.require === undefined && raw.allow === undefined && raw.deny === undefined && raw.rules === undefined) return undefined;
  const rules: PolicyRule[] = [];
  const checkCel = (source: string, path: (string | number)[]): string | undefined => {
    try {
      compileCel(source);
      return source;
    } catch (error) {
      report(path, `invalid expression: ${(error as Error).message}`);
      return undefined;
    }
  };
  if (raw.deny !== undefined) rules.push({ id: 'deny', effect: 'deny', require: undefined, when: checkCel(raw.deny, ['deny']) });
  if (raw.require !== undefined) rules.push({ id: 'require', effect: 'allow', require: compileRequirement(raw.require, ['require'], report), when: undefined });
  if (raw.allow !== undefined) rules.push({ id: 'allow', effect: 'allow', require: undefined, when: checkCel(raw.allow, ['allow']) });
  const ids = new Set(rules.map((r) => r.id));
  (raw.rules ?? []).forEach((r, i) => {
    const id = r.id ?? `rule-${i + 1}`;
    if (ids.has(id)) report(['rules', i, 'id'], `duplicate rule id "${id}"`);
    ids.add(id);
    rules.push({
      id,
      effect: r.effect,
      require: r.require === undefined ? undefined : compileRequirement(r.require, ['rules', i, 'require'], report),
      when: r.when === undefined ? undefined : checkCel(r.when, ['rules', i, 'when']),
    });
  });
  return rules;
}

function compileRequirement(raw: RawRequirement, path: (string | number)[], report: (path: (string | number)[], message: string) => void): Requirement {
  const claims: { claim: string[]; values: (string | number | boolean)[] }[] = [];
  for (const [claimPath, values] of Object.entries(raw.claims)) {
    try {
      claims.push({ claim: parseClaimPath(claimPath), values: Array.isArray(values) ? values : [values] });
    } catch (error) {
      report([...path, 'claims', claimPath], (error as Error).message);
    }
  }
  return { roles: raw.roles, scopes: raw.scopes, groups: raw.groups, claims };
}

/** `{{claims.<path>}}` and `{{request.params.<name>}}` placeholders; the rest is literal text. */
export function parseTemplate(template: string): HeaderTemplate['parts'] {
  const parts: HeaderTemplate['parts'][number][] = [];
  const re = /\{\{\s*([^}]*?)\s*\}\}/g;
  let last = 0;
  for (let m = re.exec(template); m !== null; m = re.exec(template)) {
    if (m.index > last) parts.push({ text: template.slice(last, m.index) });
    const expr = m[1]!;
    if (expr.startsWith('claims.') || expr.startsWith('claims[')) parts.push({ claim: parseClaimPath(expr.slice(expr.startsWith('claims.') ? 7 : 6)) });
    else if (/^request\.params\.[A-Za-z_][A-Za-z0-9_]*$/.test(expr)) parts.push({ param: expr.slice(15) });
    else throw new Error(`unknown placeholder "{{${expr}}}": use {{claims.<path>}} or {{request.params.<name>}}`);
    last = m.index + m[0].length;
  }
  if (last < template.length) parts.push({ text: template.slice(last) });
  // eslint-disable-next-line no-control-regex
  if (parts.some((p) => 'text' in p && /[\u0000-\u001f\u007f]/.test(p.text))) throw new Error('control characters in a header template');
  return parts;
}

function compileAudit(raw: NonNullable<RawConfig['audit']>, filePath: (p: string) => string, report: (path: (string | number)[], message: string) => void): AuditConfig {
  try {
    parseAuditStoreUrl(raw.store);
  } catch (error) {
    report(['store'], (error as Error).message);
  }
  const secret = (s: { file: string } | { env: string }): SecretSource => ('file' in s ? { file: filePath(s.file) } : s);
  for (const [i, hop] of raw.trusted_hops.entries()) {
    if (isIP(hop.split('/')[0]!) === 0) report(['trusted_hops', i], `"${hop}" is not an IP address or CIDR range`);
  }
  const store = raw.store.startsWith('sqlite:') && !raw.store.startsWith('sqlite::memory:') && !raw.store.startsWith('sqlite:///')
    ? `sqlite:${filePath(raw.store.slice('sqlite:'.length))}`
    : raw.store;
  return {
    store,
    mode: raw.mode,
    signingKey: secret(raw.signing_key),
    keyId: raw.key_id,
    redaction: raw.redaction === undefined ? undefined : {
      key: secret(raw.redaction.key),
      keyId: raw.redaction.key_id,
      fields: raw.redaction.fields,
      logqlLabels: raw.redaction.logql_labels,
      emails: raw.redaction.emails,
    },
    checkpointEvery: raw.checkpoint.every,
    checkpointIntervalMs: raw.checkpoint.interval,
    queueMax: raw.queue_max,
    batchWaitMs: raw.batch_wait,
    spool: raw.spool === undefined ? undefined : { dir: filePath(raw.spool.dir), maxBytes: raw.spool.max_bytes },
    anchorFile: raw.anchor_file === undefined ? undefined : filePath(raw.anchor_file),
    trustedHops: raw.trusted_hops,
    retention: raw.retention === undefined ? undefined : { olderThanMs: raw.retention.older_than, everyMs: raw.retention.every, trustedKeysFile: filePath(raw.retention.trusted_keys) },
  };
}

function known(names: string[]): string {
  return names.length > 0 ? ` (known: ${names.join(', ')})` : ' (none configured)';
}

function deepFreeze<T>(value: T): T {
  if (value !== null && typeof value === 'object' && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const child of Object.values(value)) deepFreeze(child);
  }
  return value;
}
