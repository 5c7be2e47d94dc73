/**
 * Explains what the proxy would do with a request — which route, each verification step, each rule, the
 * final decision, and what would be forwarded — by running the pipeline's own `decide` stages with a trace
 * collector, forwarding nothing. Used by `portcullis explain` and the admin listener's `POST /explain`.
 */
import { IncomingMessage } from 'node:http';
import { Socket } from 'node:net';
import { ERRORS, isProxyError, orThrow, ProxyError } from './errors.ts';
import { decide, forwardHeaders, newExchange } from './pipeline.ts';
import type { TraceStep } from './pipeline.ts';
import type { RuleTrace } from './policy/evaluate.ts';
import type { Runtime } from './runtime.ts';

export interface ExplainInput {
  readonly method: string;
  /** Absolute URL (`https://host/path?q`) or a path. */
  readonly url: string;
  readonly token?: string;
  readonly headers?: Readonly<Record<string, string>>;
}

export interface Explanation {
  readonly request: { readonly method: string; readonly host: string; readonly path: string };
  readonly steps: readonly TraceStep[];
  readonly rules: readonly RuleTrace[];
  readonly decision: { readonly allowed: boolean; readonly status: number; readonly code?: string; readonly rule?: string; readonly detail?: string };
  /** What the upstream would receive, when allowed. Header values of the proxy's own identity headers. */
  readonly forward?: { readonly upstream: string; readonly path: string; readonly headers: Readonly<Record<string, string | string[]>> };
}

export async function explainRequest(rt: Runtime, input: ExplainInput): Promise<Explanation> {
  const parsed = new URL(input.url, 'http://localhost');
  const headers: Record<string, string> = {};
  for (const [k, v] of Object.entries(input.headers ?? {})) headers[k.toLowerCase()] = v;
  if (/^https?:\/\//i.test(input.url)) headers.host = parsed.host;
  if (input.token !== undefined) headers.authorization = `Bearer ${input.token}`;
  const req = syntheticRequest(input.method.toUpperCase(), parsed.pathname + parsed.search, headers);
  const ex = newExchange(req);
  ex.trace = [];
  let decision: Explanation['decision'];
  let forward: Explanation['forward'];
  try {
    const d = orThrow(await decide(req, rt, ex));
    const upstreamHeaders = forwardHeaders(req, rt, ex.requestId, d, '127.0.0.1');
    ex.trace.push({ stage: 'rewrite', ok: true, detail: `forward ${ex.method} ${d.upstreamPath} to upstream ${d.route.upstream}` });
    forward = { upstream: d.route.upstream, path: d.upstreamPath, headers: upstreamHeaders };
    decision = { allowed: true, status: 200, rule: ex.ruleId };
  } catch (error) {
    const e = isProxyError(error) ? error : new ProxyError('ERR_INTERNAL', { cause: error });
    // The policy stage traces its own denial; every other failure is added here, at the stage it hit.
    if (e.code !== 'ERR_ACCESS_DENIED' && e.code !== 'ERR_INSUFFICIENT_SCOPE') {
      ex.trace.push({ stage: failedStage(e, ex.trace), ok: false, detail: `${e.code}: ${e.message}${e.detail ? ` (${e.detail})` : ''}` });
    }
    decision = { allowed: false, status: ERRORS[e.code].status, code: e.code, rule: ex.ruleId, detail: e.detail };
  }
  return {
    request: { method: ex.method, host: headers.host ?? '', path: ex.path },
    steps: ex.trace,
    rules: ex.rules ?? [],
    decision,
    forward,
  };
}

function failedStage(error: ProxyError, trace: readonly TraceStep[]): TraceStep['stage'] {
  if (error.code === 'ERR_ENVIRONMENT_MISMATCH') return 'environment';
  if (!trace.some((s) => s.stage === 'route')) return 'route';
  // A token was found, so the failure came from verifying it.
  return trace.some((s) => s.stage === 'token' && s.ok) ? 'verify' : 'token';
}

/** A request object carrying only what the stages read: method, url, headers and raw headers. */
function syntheticRequest(method: string, url: string, headers: Record<string, string>): IncomingMessage {
  const req = new IncomingMessage(new Socket());
  req.method = method;
  req.url = url;
  req.headers = headers;
  req.rawHeaders = Object.entries(headers).flat();
  return req;
}

export function formatExplanation(e: Explanation): string {
  const lines = [`${e.request.method} ${e.request.host}${e.request.path}`];
  for (const step of e.steps) lines.push(`  ${step.ok ? 'ok  ' : 'FAIL'} ${step.stage.padEnd(11)} ${step.detail}`);
  if (e.rules.length > 0) {
    lines.push('  rules:');
    for (const r of e.rules) lines.push(`    ${r.matched ? 'match' : 'no   '} ${r.effect.padEnd(5)} ${r.id}${r.because ? `  — ${r.because}` : ''}`);
  }
  const d = e.decision;
  lines.push(`decision: ${d.allowed ? 'ALLOW' : 'DENY'} ${d.status}${d.code ? ` ${d.code}` : ''}${d.rule ? ` (rule ${d.rule})` : ''}`);
  if (e.forward) {
    lines.push(`forward: ${e.forward.path} -> ${e.forward.upstream}`);
    for (const [k, v] of Object.entries(e.forward.headers)) if (k.startsWith('x-') && k !== 'x-request-id') lines.push(`  ${k}: ${Array.isArray(v) ? v.join(', ') : v}`);
  }
  return lines.join('\n') + '\n';
}
