/**
 * The request flow, stage by stage (DESIGN.md §1). Each stage returns a value or throws a ProxyError; the
 * answer, the access log line and the metrics happen once, in `finish`.
 *
 *   match route -> extract token -> verify token -> authorize -> rewrite -> forward
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import { extractToken } from './auth/extract.ts';
import type { ExtractedToken } from './auth/extract.ts';
import type { VerifiedToken } from './auth/verify.ts';
import { ERRORS, ProxyError, bearerChallenge, isProxyError, orThrow } from './errors.ts';
import type { ErrorCode } from './errors.ts';
import { checkEnvironment } from './policy/environment.ts';
import { evaluatePolicy } from './policy/evaluate.ts';
import type { RuleTrace } from './policy/evaluate.ts';
import type { CelRequest } from './policy/cel.ts';
import { identityOf } from './policy/identity.ts';
import { buildUpstreamHeaders, requestIdOf, stripQueryParam } from './rewrite/headers.ts';
import { rewriteLokiRequest } from './rewrite/loki.ts';
import type { LokiRewrite } from './rewrite/loki.ts';
import { hostOf } from './routing/route-table.ts';
import { normalizeRequestTarget } from './routing/normalize-path.ts';
import { forwardRequest } from './upstream/forward.ts';
import { proxyWebSocket, writeRawResponse } from './upstream/websocket.ts';
import type { TokenLocation, RouteConfig } from './config/types.ts';
import type { Runtime } from './runtime.ts';
import type { Logger } from './logger.ts';
import type { Metrics } from './metrics.ts';
import { serveAuditQuery } from './audit/api.ts';
import { uuidv7 } from './audit/record.ts';
import type { AuditSink } from './audit/sink.ts';

export interface PipelineDeps {
  readonly logger: Logger;
  readonly metrics: Metrics;
  /** The runtime in force when the request arrived; a reload never changes it under a running request. */
  readonly runtime: () => Runtime;
  readonly shuttingDown: () => boolean;
  /** The audit log, when configured: asked before forwarding, told after every decision. */
  readonly audit: AuditSink | undefined;
}

/** One step of an explanation (`portcullis explain`, admin `POST /explain`). */
export interface TraceStep {
  readonly stage: 'route' | 'token' | 'verify' | 'environment' | 'policy' | 'rewrite';
  readonly ok: boolean;
  readonly detail: string;
}

/** What the stages decided about one request, and what the access log reports. */
export interface Exchange {
  readonly requestId: string;
  /** The audit record's event.id, also returned as X-Portcullis-Event-Id; '' when audit is off. */
  eventId: string;
  readonly method: string;
  readonly startedAt: number;
  path: string;
  route: RouteConfig | undefined;
  token: VerifiedToken | undefined;
  ruleId: string | undefined;
  /** Loki routes: the endpoint, original and enforced query, tenant (for the access log and audit). */
  loki: LokiRewrite['log'] | undefined;
  upstream: string | undefined;
  upstreamMs: number | undefined;
  status: number;
  error: ProxyError | undefined;
  aborted: boolean;
  /** Set only when explaining: each stage appends what it saw. Never set on the serving path. */
  trace: TraceStep[] | undefined;
  rules: readonly RuleTrace[] | undefined;
}

export interface Decision {
  readonly route: RouteConfig;
  readonly token: VerifiedToken | undefined;
  readonly upstreamPath: string;
  readonly tokenFrom: TokenLocation | undefined;
  readonly params: Readonly<Record<string, string>>;
  /** A rebuilt body that replaces the client's (enforced Loki form posts). */
  readonly body: Buffer | undefined;
  /** Headers the proxy sets after the client's were cleaned (X-Scope-OrgID). */
  readonly extraHeaders: Readonly<Record<string, string>> | undefined;
}

/**
 * The stages up to (not including) forwarding; shared by plain requests, WebSocket upgrades and `explain`.
 * Synchronous unless a stage must wait: a JWKS refetch or a Loki form body, so the serving path pays no
 * promise per stage. A request refused at the token stage, without a token on a required route or with a
 * refused one, gets its ProxyError returned: those are the floods (scanners without credentials, forged
 * tokens), and a throw there costs more than the rest of the answer (see `verifyTokenNow`). Every other
 * refusal is thrown.
 */
export function decide(req: IncomingMessage, rt: Runtime, ex: Exchange): Decision | ProxyError | Promise<Decision> {
  const target = normalizeRequestTarget(req.url ?? '/');
  ex.path = target.path;
  const { route, params } = rt.routes.match(hostOf(req.headers.host), ex.method, target.path);
  ex.route = route;
  ex.trace?.push({ stage: 'route', ok: true, detail: `route ${route.id} (${route.path.kind} ${route.path.value}) -> upstream ${route.upstream}; auth ${route.auth.mode}${Object.keys(params).length ? `; params ${JSON.stringify(params)}` : ''}` });

  let found: ExtractedToken | undefined;
  let query = target.query;
  if (route.auth.mode !== 'off') {
    found = extractToken(req, query, route.auth.from, rt.config.limits.maxTokenBytes);
    if (found === undefined) {
      ex.trace?.push({ stage: 'token', ok: route.auth.mode !== 'required', detail: `no token in ${route.auth.from.map((l) => `${l.kind} ${l.name}`).join(', ')}` });
      if (route.auth.mode === 'required') return TOKEN_MISSING;
    } else {
      ex.trace?.push({ stage: 'token', ok: true, detail: `token found in ${found.from.kind} ${found.from.name}` });
    }
    for (const loc of route.auth.from) if (loc.kind === 'query') query = stripQueryParam(query, loc.name);
  }
  const stage: Stage = { req, rt, ex, route, params, path: target.path, query, tokenFrom: found?.from };
  if (found === undefined) return authorize(stage, undefined);
  // A token that is present but bad is refused even on optional routes (Envoy's allow_missing, not
  // allow_missing_or_failed): a caller must never be downgraded to anonymous by a broken token.
  const checked = rt.tokens.check(found.token, route.auth.issuers);
  if (checked instanceof ProxyError) return checked;
  return checked instanceof Promise ? checked.then((token) => authorize(stage, token)) : authorize(stage, checked);
}

/** One shared answer for every request without a token: it carries nothing of the request, nobody mutates it. */
const TOKEN_MISSING = new ProxyError('ERR_TOKEN_MISSING');

/** What `decide` hands from token extraction to the later stages. */
interface Stage {
  readonly req: IncomingMessage;
  readonly rt: Runtime;
  readonly ex: Exchange;
  readonly route: RouteConfig;
  readonly params: Readonly<Record<string, string>>;
  /** Normalised path and the query without any token parameter. */
  readonly path: string;
  readonly query: string;
  readonly tokenFrom: TokenLocation | undefined;
}

/** Environment, rules, path rewrite and the Loki rewrite, once the token (if any) is verified. */
function authorize(stage: Stage, token: VerifiedToken | undefined): Decision | Promise<Decision> {
  const { req, rt, ex, route, params, query } = stage;
  const tokenFrom = token === undefined ? undefined : stage.tokenFrom;
  if (token !== undefined) {
    ex.token = token;
    ex.trace?.push({ stage: 'verify', ok: true, detail: `issuer ${token.issuer.config.id} (${token.issuer.config.issuer}); alg ${token.header.alg}${token.header.kid ? `, kid ${token.header.kid}` : ''}; signature, iss, aud, exp, nbf, required claims ok; sub ${String(token.claims.sub)}` });
  }

  // authorize: environment binding first (a token of another environment never reaches any rule), then
  // the route's rules. Rules need an identity: an anonymous caller on a route with rules gets the 401.
  const policy = rt.policies.get(route.id);
  if (route.environment !== undefined || policy !== undefined) {
    if (token === undefined) throw new ProxyError('ERR_TOKEN_MISSING');
    if (route.environment !== undefined) {
      checkEnvironment(token.claims, token.issuer.config.environment, route.environment);
      ex.trace?.push({ stage: 'environment', ok: true, detail: `token environment is ${route.environment}` });
    }
    if (policy !== undefined) {
      const decision = evaluatePolicy(policy, {
        claims: token.claims,
        identity: identityOf(token.claims, token.issuer.config.identity),
        request: policy.needsRequest ? celRequestOf(req, stage.path, query, params) : undefined,
      });
      ex.ruleId = decision.ruleId;
      ex.rules = decision.trace;
      ex.trace?.push({ stage: 'policy', ok: decision.allowed, detail: decision.allowed ? `allowed by rule ${decision.ruleId}` : decision.ruleId ? `denied by rule ${decision.ruleId}` : 'no allow rule matched (default deny)' });
      if (!decision.allowed) throw decision.error!;
    }
  }

  let path = stage.path;
  if (route.rewritePrefix !== undefined && route.path.kind === 'prefix') {
    path = route.rewritePrefix + path.slice(route.path.value.length);
    if (!path.startsWith('/')) path = '/' + path;
  }
  if (route.loki !== undefined) {
    if (token === undefined) throw new ProxyError('ERR_TOKEN_MISSING');
    const withLoki = (loki: LokiRewrite): Decision => {
      ex.loki = loki.log;
      ex.trace?.push({ stage: 'rewrite', ok: true, detail: `loki ${loki.log.endpoint}${loki.log.enforced !== undefined ? `; enforced query ${loki.log.enforced}` : ''}${loki.log.tenant !== undefined ? `; tenant ${loki.log.tenant}` : ''}` });
      return { route, token, tokenFrom, params, upstreamPath: loki.path, body: loki.body, extraHeaders: loki.headers };
    };
    const loki = rewriteLokiRequest(req, route.loki, token.claims, path, query);
    return loki instanceof Promise ? loki.then(withLoki) : withLoki(loki);
  }
  return { route, token, tokenFrom, params, upstreamPath: query === '' ? path : `${path}?${query}`, body: undefined, extraHeaders: undefined };
}

/** The upstream's headers: the client's, cleaned (rewrite/headers.ts), plus the proxy's own and, for a
 * rebuilt body, its framing. */
export function forwardHeaders(req: IncomingMessage, rt: Runtime, requestId: string, decision: Decision, clientIp: string): Record<string, string | string[]> {
  const headers = buildUpstreamHeaders(req, rt.headerPolicies.get(decision.route.id)!, {
    requestId,
    clientIp,
    claims: decision.token?.claims,
    tokenFrom: decision.tokenFrom,
    params: decision.params,
  });
  if (decision.extraHeaders !== undefined) Object.assign(headers, decision.extraHeaders);
  if (decision.body !== undefined) {
    headers['content-type'] = 'application/x-www-form-urlencoded';
    headers['content-length'] = String(decision.body.length);
  }
  return headers;
}

/** The `request` variable of CEL rules: first values only, header names lower-case, no credentials. */
function celRequestOf(req: IncomingMessage, path: string, query: string, params: Readonly<Record<string, string>>): CelRequest {
  const headers: Record<string, string> = {};
  for (const [name, value] of Object.entries(req.headers)) {
    if (name === 'authorization' || name === 'cookie' || value === undefined) continue;
    headers[name] = Array.isArray(value) ? value[0] ?? '' : value;
  }
  const q: Record<string, string> = {};
  for (const [name, value] of new URLSearchParams(query)) if (!Object.hasOwn(q, name)) q[name] = value;
  return { method: req.method ?? 'GET', path, host: hostOf(req.headers.host), params: { ...params }, headers, query: q };
}

/** Handles one HTTP request end to end. Never throws. */
export async function handleRequest(req: IncomingMessage, res: ServerResponse, deps: PipelineDeps): Promise<void> {
  const rt = deps.runtime();
  const ex = newExchange(req);
  try {
    if (deps.shuttingDown()) res.setHeader('connection', 'close');
    if (deps.audit !== undefined) ex.eventId = uuidv7();
    const decided = decide(req, rt, ex);
    const decision = decided instanceof Promise ? await decided : decided;
    if (decision instanceof ProxyError) return refuse(res, decision, ex, deps, req, rt);
    if (decision.route.auditApi) {
      res.setHeader('x-request-id', ex.requestId);
      if (ex.eventId !== '') res.setHeader('x-portcullis-event-id', ex.eventId);
      ex.status = await serveAuditQuery(ex.method, decision.upstreamPath.split('?')[1] ?? '', res, deps.audit!);
      return finish(ex, deps, req);
    }
    // Fail closed: a request the audit log cannot record is not forwarded (DESIGN.md §5).
    if (deps.audit !== undefined && !deps.audit.admit()) throw new ProxyError('ERR_AUDIT_UNAVAILABLE', { retryAfter: 5 });
    const upstream = rt.upstreams.get(decision.route.upstream)!;
    const headers = forwardHeaders(req, rt, ex.requestId, decision, clientIpOf(req));
    const target = upstream.next();
    ex.upstream = upstream.id;
    const outcome = await forwardRequest(req, res, target, {
      method: ex.method,
      path: decision.upstreamPath,
      headers,
      timeoutMs: decision.route.timeoutMs,
      body: decision.body,
      responseHeaders: ex.eventId === '' ? { 'x-request-id': ex.requestId } : { 'x-request-id': ex.requestId, 'x-portcullis-event-id': ex.eventId },
    });
    ex.status = outcome.status;
    ex.upstreamMs = outcome.upstreamMs;
    ex.aborted = outcome.aborted;
  } catch (error) {
    return refuse(res, toProxyError(error, deps.logger, ex.requestId), ex, deps, req, rt);
  }
  finish(ex, deps, req);
}

/** Answers a refused or failed request (or cuts a response already under way), then logs and counts it. */
function refuse(res: ServerResponse, error: ProxyError, ex: Exchange, deps: PipelineDeps, req: IncomingMessage, rt: Runtime): void {
  ex.error = error;
  ex.status = error.status;
  if (!res.headersSent) sendError(res, error, ex, rt.config.realm);
  else res.destroy();
  finish(ex, deps, req);
}

/** Handles a WebSocket upgrade: the same stages, then a byte pipe. Never throws. */
export async function handleUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer, deps: PipelineDeps): Promise<void> {
  const rt = deps.runtime();
  const ex = newExchange(req);
  socket.on('error', () => socket.destroy());
  try {
    if (deps.shuttingDown()) throw new ProxyError('ERR_SHUTTING_DOWN', { retryAfter: 1 });
    if (deps.audit !== undefined) ex.eventId = uuidv7();
    const decided = decide(req, rt, ex);
    const decision = orThrow(decided instanceof Promise ? await decided : decided);
    if (!decision.route.websocket || decision.route.auditApi) throw new ProxyError('ERR_ROUTE_NOT_FOUND', { detail: 'websocket disabled on route' });
    if (deps.audit !== undefined && !deps.audit.admit()) throw new ProxyError('ERR_AUDIT_UNAVAILABLE', { retryAfter: 5 });
    const upstream = rt.upstreams.get(decision.route.upstream)!;
    const headers = forwardHeaders(req, rt, ex.requestId, decision, clientIpOf(req));
    ex.upstream = upstream.id;
    const started = performance.now();
    const result = await proxyWebSocket(req, socket, head, upstream.next(), { path: decision.upstreamPath, headers }, decision.route.timeoutMs);
    ex.upstreamMs = performance.now() - started;
    ex.status = result.status;
  } catch (error) {
    ex.error = toProxyError(error, deps.logger, ex.requestId);
    ex.status = ex.error.status;
    const { headers, body } = errorAnswer(ex.error, ex, rt.config.realm);
    writeRawResponse(socket, ex.status, headers, body);
  }
  finish(ex, deps, req);
}

export function newExchange(req: IncomingMessage): Exchange {
  return {
    requestId: requestIdOf(req),
    eventId: '',
    method: req.method ?? 'GET',
    startedAt: performance.now(),
    path: '',
    route: undefined,
    token: undefined,
    ruleId: undefined,
    loki: undefined,
    upstream: undefined,
    upstreamMs: undefined,
    status: 0,
    error: undefined,
    aborted: false,
    trace: undefined,
    rules: undefined,
  };
}

function toProxyError(error: unknown, logger: Logger, requestId: string): ProxyError {
  if (isProxyError(error)) return error;
  // A bug, not a client problem: keep the stack for the operator, answer a stable 500.
  logger.error({ err: error, request_id: requestId }, 'unexpected error in request pipeline');
  return new ProxyError('ERR_INTERNAL', { cause: error });
}

/** The JSON body and headers of an error answer (RFC 6750 §3 challenge when relevant); `bytes` is the body's length. */
export function errorAnswer(error: ProxyError, ex: { requestId: string; eventId: string }, realm: string): { headers: Record<string, string>; body: string; bytes: number } {
  const requestId = ex.requestId;
  const headers: Record<string, string> = {
    'content-type': 'application/json',
    'cache-control': 'no-store',
    'x-request-id': requestId,
  };
  if (ex.eventId !== '') headers['x-portcullis-event-id'] = ex.eventId;
  // Answers with the table's own message (all token failures) are the same but for the request id:
  // built once per code and realm, since a flood of forged tokens is exactly when this runs most.
  const usual = error.message === ERRORS[error.code].message && error.scope === undefined;
  if (realm !== shapesRealm) {
    shapes.clear();
    shapesRealm = realm;
  }
  let shape = usual ? shapes.get(error.code) : undefined;
  if (shape === undefined) {
    const spec = ERRORS[error.code] as { oauth?: string };
    const json = JSON.stringify({ error: spec.oauth ?? errorName(error.status), code: error.code, message: error.message, request_id: '' });
    const bodyPrefix = json.slice(0, -2);
    shape = { challenge: bearerChallenge(error, realm), bodyPrefix, prefixBytes: Buffer.byteLength(bodyPrefix) };
    if (usual) shapes.set(error.code, shape);
  }
  if (shape.challenge !== undefined) headers['www-authenticate'] = shape.challenge;
  if (error.retryAfter !== undefined) headers['retry-after'] = String(error.retryAfter);
  // Request ids are [A-Za-z0-9._:-] (requestIdOf): nothing in them needs JSON escaping, one byte each.
  return { headers, body: `${shape.bodyPrefix}${requestId}"}`, bytes: shape.prefixBytes + requestId.length + 2 };
}

/** Answer shapes of the current realm, one per error code (a bounded set); a reload with a new realm starts over. */
const shapes = new Map<ErrorCode, { challenge: string | undefined; bodyPrefix: string; prefixBytes: number }>();
let shapesRealm = '';

function sendError(res: ServerResponse, error: ProxyError, ex: Exchange, realm: string): void {
  const { headers, body, bytes } = errorAnswer(error, ex, realm);
  headers['content-length'] = String(bytes);
  res.writeHead(error.status, headers);
  res.end(body);
}

function errorName(status: number): string {
  switch (status) {
    case 400: return 'bad_request';
    case 401: return 'unauthorized';
    case 403: return 'forbidden';
    case 404: return 'not_found';
    case 405: return 'method_not_allowed';
    case 431: return 'request_header_fields_too_large';
    case 502: return 'bad_gateway';
    case 503: return 'service_unavailable';
    case 504: return 'gateway_timeout';
    default: return 'internal_error';
  }
}

export function clientIpOf(req: IncomingMessage): string {
  const ip = req.socket.remoteAddress ?? '';
  return ip.startsWith('::ffff:') ? ip.slice(7) : ip;
}

/**
 * The one place a request is logged, counted and audited. Never logs the token, cookies or query string.
 */
function finish(ex: Exchange, deps: PipelineDeps, req: IncomingMessage): void {
  const durationMs = performance.now() - ex.startedAt;
  const routeId = ex.route?.id ?? '';
  const { metrics } = deps;
  metrics.requests.incValues(routeId, String(ex.status));
  metrics.requestDuration.observeValues(durationMs / 1000, routeId);
  const code = ex.error?.code;
  if (code !== undefined && (ex.error!.status === 401 || code === 'ERR_KEYS_UNAVAILABLE' || code === 'ERR_TOKEN_AMBIGUOUS')) {
    metrics.authFailures.incValues(code);
  }
  if (ex.upstream !== undefined) {
    if (ex.upstreamMs !== undefined && code === undefined) {
      metrics.upstreamDuration.observeValues(ex.upstreamMs / 1000, ex.upstream, String(ex.status));
    }
    if (code?.startsWith('ERR_UPSTREAM_')) metrics.upstreamErrors.inc({ upstream: ex.upstream, reason: code });
    // 499: the client left (not the upstream's fault); any other broken stream is the upstream's.
    if (ex.aborted && ex.status !== 499) metrics.upstreamErrors.inc({ upstream: ex.upstream, reason: 'ERR_UPSTREAM_RESET' });
  }
  // ex.rules is set exactly when the route's policy ran (on the runtime this request used).
  if (ex.rules !== undefined) {
    const denied = code === 'ERR_ACCESS_DENIED' || code === 'ERR_INSUFFICIENT_SCOPE';
    metrics.policyDecisions.inc({ route: routeId, rule: ex.ruleId ?? '', decision: denied ? 'deny' : 'allow' });
  }
  const token = ex.token;
  if (token?.expiresAt !== undefined) {
    metrics.tokenLifetime.observeValues(Math.max(0, token.expiresAt - Date.now() / 1000), token.issuer.config.id);
  }
  // The access-log object is built only when it will be written (the bench and many deployments run at warn).
  if (deps.logger.isLevelEnabled('info')) {
    const sub = token?.claims.sub;
    deps.logger.info(
      {
        request_id: ex.requestId,
        method: ex.method,
        path: ex.path,
        route: ex.route?.id,
        status: ex.status,
        reason: code,
        rule: ex.ruleId,
        detail: ex.error?.detail,
        loki: ex.loki,
        duration_ms: Math.round(durationMs * 1000) / 1000,
        sub: typeof sub === 'string' ? sub : undefined,
        issuer: token?.issuer.config.id,
        upstream: ex.upstream,
        upstream_ms: ex.upstreamMs === undefined ? undefined : Math.round(ex.upstreamMs * 1000) / 1000,
        aborted: ex.aborted || undefined,
        event_id: ex.eventId || undefined,
      },
      'request',
    );
  }
  if (deps.audit !== undefined) {
    const claims = token?.claims;
    deps.audit.record({
      eventId: ex.eventId || uuidv7(),
      requestId: ex.requestId,
      allowed: ex.error === undefined,
      reason: code,
      ruleId: ex.ruleId,
      method: ex.method,
      path: ex.path,
      routeId: ex.route?.id,
      status: ex.status,
      durationMs,
      clientIp: deps.audit.clientIp(req, clientIpOf(req)),
      userAgent: req.headers['user-agent'],
      upstream: ex.upstream,
      traceId: traceIdOf(req),
      claims,
      roles: token === undefined ? undefined : [...identityOf(token.claims, token.issuer.config.identity).roles],
      jwt: token?.header,
      loki: ex.loki,
    });
  }
}

/** W3C Trace Context (traceparent: version-traceid-parentid-flags): the trace id, when well formed. */
function traceIdOf(req: IncomingMessage): string | undefined {
  const tp = req.headers.traceparent;
  const m = typeof tp === 'string' ? /^[0-9a-f]{2}-([0-9a-f]{32})-[0-9a-f]{16}-[0-9a-f]{2}$/.exec(tp) : null;
  return m?.[1];
}
