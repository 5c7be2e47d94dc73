/**
 * A runtime is everything a request needs, built from one compiled config: the route table, the issuer
 * registry, the upstream pools and per-route header policies. A reload builds a new runtime and swaps it in;
 * requests hold the runtime they started with (DESIGN.md §1, "compile at load, run per request").
 */
import { createIssuerRegistry } from './auth/issuers.ts';
import type { IssuerRegistry } from './auth/issuers.ts';
import { createTokenVerifier } from './auth/token-cache.ts';
import type { TokenVerifier } from './auth/token-cache.ts';
import { createHeaderPolicy, ownedHeaderNames } from './rewrite/headers.ts';
import type { HeaderPolicy } from './rewrite/headers.ts';
import { compilePolicy } from './policy/evaluate.ts';
import type { CompiledPolicy } from './policy/evaluate.ts';
import { createRouteTable } from './routing/route-table.ts';
import type { RouteTable } from './routing/route-table.ts';
import { createUpstream } from './upstream/pool.ts';
import type { Upstream } from './upstream/pool.ts';
import type { CompiledConfig } from './config/types.ts';
import type { Metrics } from './metrics.ts';

export interface Runtime {
  readonly config: CompiledConfig;
  readonly routes: RouteTable;
  readonly registry: IssuerRegistry;
  /** Verification with the verified-token cache in front. */
  readonly tokens: TokenVerifier;
  readonly upstreams: ReadonlyMap<string, Upstream>;
  readonly headerPolicies: ReadonlyMap<string, HeaderPolicy>;
  /** Route id -> compiled policy; absent for authentication-only routes. */
  readonly policies: ReadonlyMap<string, CompiledPolicy>;
}

export async function createRuntime(
  config: CompiledConfig,
  options: { metrics: Metrics; previous?: Runtime; env?: NodeJS.ProcessEnv },
): Promise<Runtime> {
  const registry = await createIssuerRegistry(config.issuers, {
    observer: {
      jwksFetch(issuerId, outcome, reason) {
        options.metrics.jwksFetches.inc({ issuer: issuerId, outcome, reason: reason ?? '' });
      },
    },
    previous: options.previous?.registry,
    env: options.env,
  });
  const upstreams = new Map<string, Upstream>();
  for (const upstream of config.upstreams) upstreams.set(upstream.id, createUpstream(upstream));
  const headerPolicies = new Map<string, HeaderPolicy>();
  const policies = new Map<string, CompiledPolicy>();
  const owned = ownedHeaderNames(config.routes);
  for (const route of config.routes) {
    headerPolicies.set(route.id, createHeaderPolicy(route, config.trustForwarded, owned));
    if (route.rules !== undefined) policies.set(route.id, compilePolicy(route.rules));
  }
  const tokens = createTokenVerifier(registry, { maxEntries: config.limits.tokenCacheEntries, maxTokenBytes: 4096 });
  return { config, routes: createRouteTable(config.routes), registry, tokens, upstreams, headerPolicies, policies };
}

export async function closeRuntime(runtime: Runtime): Promise<void> {
  runtime.registry.close();
  await Promise.all([...runtime.upstreams.values()].map((u) => u.close()));
}
