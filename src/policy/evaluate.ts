/**
 * Route policies: compiled once from the config's rules (CEL expressions compiled here), evaluated per
 * request. Semantics, as Envoy RBAC and Kubernetes: any matching `deny` rule denies; otherwise any
 * matching `allow` rule allows; otherwise deny (default deny). A CEL error makes an allow rule not match
 * and a deny rule match: an expression that cannot be evaluated never opens a door.
 */
import { ProxyError } from '../errors.ts';
import { compileCel } from './cel.ts';
import type { CelRequest, CompiledCel } from './cel.ts';
import { getClaim } from './claim-path.ts';
import type { Identity } from './identity.ts';
import type { PolicyRule, Requirement } from '../config/types.ts';

export interface CompiledRule {
  readonly id: string;
  readonly effect: 'allow' | 'deny';
  readonly require: Requirement | undefined;
  readonly when: CompiledCel | undefined;
}

export interface CompiledPolicy {
  readonly rules: readonly CompiledRule[];
  /** True when some rule needs `request` (CEL): only then is the request activation built. */
  readonly needsRequest: boolean;
}

/** One line of an explanation: what a rule checked and what came out. */
export interface RuleTrace {
  readonly id: string;
  readonly effect: 'allow' | 'deny';
  readonly matched: boolean;
  /** Why it did not match (or the CEL error). */
  readonly because: string | undefined;
}

export interface PolicyDecision {
  readonly allowed: boolean;
  /** The rule that decided; undefined for a default deny. */
  readonly ruleId: string | undefined;
  readonly trace: readonly RuleTrace[];
  /** On denial: the error to answer with. */
  readonly error: ProxyError | undefined;
}

export function compilePolicy(rules: readonly PolicyRule[]): CompiledPolicy {
  const compiled = rules.map((r) => ({
    id: r.id,
    effect: r.effect,
    require: r.require,
    // The config compiler already rejected bad expressions with their positions.
    when: r.when === undefined ? undefined : compileCel(r.when),
  }));
  return { rules: compiled, needsRequest: compiled.some((r) => r.when !== undefined) };
}

export interface PolicyInput {
  readonly claims: Record<string, unknown>;
  readonly identity: Identity;
  readonly request: CelRequest | undefined;
}

/**
 * Evaluates every rule (not short-circuited: the trace must show each one for `explain`; policies are a
 * handful of rules, so the cost is the same order as one short-circuited pass).
 */
export function evaluatePolicy(policy: CompiledPolicy, input: PolicyInput): PolicyDecision {
  const trace: RuleTrace[] = [];
  let denyBy: string | undefined;
  let allowBy: string | undefined;
  let missingScopes: readonly string[] | undefined;
  for (const rule of policy.rules) {
    const result = evaluateRule(rule, input);
    trace.push({ id: rule.id, effect: rule.effect, matched: result.matched, because: result.because });
    if (rule.effect === 'deny' && result.matched) denyBy ??= rule.id;
    if (rule.effect === 'allow' && result.matched) allowBy ??= rule.id;
    if (rule.effect === 'allow' && !result.matched && result.onlyScopes) missingScopes ??= rule.require!.scopes;
  }
  if (denyBy !== undefined) {
    return { allowed: false, ruleId: denyBy, trace, error: new ProxyError('ERR_ACCESS_DENIED', { detail: `denied by rule ${denyBy}` }) };
  }
  if (allowBy !== undefined) return { allowed: true, ruleId: allowBy, trace, error: undefined };
  // RFC 6750 §3.1: insufficient_scope when the token lacks scopes that would have granted access.
  const error = missingScopes !== undefined
    ? new ProxyError('ERR_INSUFFICIENT_SCOPE', { scope: missingScopes.join(' '), detail: 'no rule matched; missing scope' })
    : new ProxyError('ERR_ACCESS_DENIED', { detail: 'no rule matched (default deny)' });
  return { allowed: false, ruleId: undefined, trace, error };
}

interface RuleResult {
  readonly matched: boolean;
  readonly because: string | undefined;
  /** True when the rule failed only because of its scopes requirement. */
  readonly onlyScopes: boolean;
}

function evaluateRule(rule: CompiledRule, input: PolicyInput): RuleResult {
  const failures: string[] = [];
  let scopesFailed = false;
  if (rule.require !== undefined) {
    const r = rule.require;
    const missing = (required: readonly string[], have: ReadonlySet<string>) => required.length > 0 && !required.some((v) => have.has(v));
    if (missing(r.roles, input.identity.roles)) failures.push(`needs a role of [${r.roles.join(', ')}]`);
    if (missing(r.groups, input.identity.groups)) failures.push(`needs a group of [${r.groups.join(', ')}]`);
    for (const c of r.claims) {
      if (!claimMatches(getClaim(input.claims, c.claim), c.values)) failures.push(`needs claim ${c.claim.join('.')} in [${c.values.join(', ')}]`);
    }
    if (missing(r.scopes, input.identity.scopes)) {
      scopesFailed = true;
      failures.push(`needs a scope of [${r.scopes.join(', ')}]`);
    }
  }
  if (rule.when !== undefined) {
    const result = rule.when.evaluate({ claims: input.claims, request: input.request ?? EMPTY_REQUEST });
    if (!result.ok) {
      // Fail closed: an error never allows, and always denies.
      return { matched: rule.effect === 'deny', because: `expression error: ${result.error}`, onlyScopes: false };
    }
    if (!result.value) failures.push('expression is false');
  }
  return {
    matched: failures.length === 0,
    because: failures.length === 0 ? undefined : failures.join('; '),
    onlyScopes: scopesFailed && failures.length === 1,
  };
}

/** A claim holds when it equals one of the values, or (for list claims) contains one of them. */
function claimMatches(value: unknown, allowed: readonly (string | number | boolean)[]): boolean {
  if (Array.isArray(value)) return value.some((v) => allowed.includes(v as string));
  if (typeof value === 'string' || typeof value === 'number' || typeof value === 'boolean') return allowed.includes(value);
  return false;
}

const EMPTY_REQUEST: CelRequest = Object.freeze({ method: '', path: '', host: '', params: {}, headers: {}, query: {} });
