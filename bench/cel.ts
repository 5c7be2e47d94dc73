/**
 * CEL engines, compile once / evaluate many: evaluations per second for three typical policy expressions.
 *
 *   node bench/cel.ts            (about 20 s)
 *   node bench/cel.ts --quick    (about 3 s)
 *
 * Rows:
 * - `portcullis`: `compileCel()` from src/policy/cel.ts (@marcbachmann/cel-js plus our JSON -> CEL claims
 *   conversion, which runs on every evaluation);
 * - `marcbachmann raw`: the same library called directly on the plain JSON claims (the conversion's cost is
 *   the difference between the two rows);
 * - `cel-js`: the ChromeGG `cel-js` package (parse once to a CST, `evaluate(cst, context)`).
 * Expression 4 uses string methods `cel-js` 0.8.2 lacks, so it has no `cel-js` row.
 */
import { parse as celJsParse, evaluate as celJsEvaluate } from 'cel-js';
import { Environment } from '@marcbachmann/cel-js';
import { compileCel } from '../src/policy/cel.ts';
import type { CelRequest } from '../src/policy/cel.ts';

const quick = process.argv.includes('--quick');
const runMs = quick ? 150 : 1000;
const rounds = quick ? 3 : 5;

/** A Keycloak access token's payload, with an Auth0-style namespaced claim and an Okta-style `scp`. */
const claims: Record<string, unknown> = {
  exp: 1767225600,
  iat: 1767222000,
  auth_time: 1767221990,
  jti: 'b6a7c1b2-51f0-4a3e-9f3c-1d2e3f4a5b6c',
  iss: 'https://idp.example.com/realms/corp',
  aud: ['logs-api', 'account'],
  sub: '7d3f0b8e-1c2a-4f5e-8d9c-0a1b2c3d4e5f',
  typ: 'Bearer',
  azp: 'grafana',
  sid: '0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0',
  acr: '1',
  'allowed-origins': ['https://grafana.example.com'],
  realm_access: { roles: ['offline_access', 'uma_authorization', 'default-roles-corp', 'log-reader'] },
  resource_access: { account: { roles: ['manage-account', 'view-profile'] } },
  scope: 'openid profile email',
  scp: ['openid', 'profile', 'logs:read'],
  email_verified: true,
  name: 'Ada Lovelace',
  preferred_username: 'ada',
  given_name: 'Ada',
  family_name: 'Lovelace',
  email: 'ada@example.com',
  envs: ['dev', 'staging'],
  level: 2,
  'https://example.com/tenant': 'acme',
};

const request: CelRequest = {
  method: 'GET',
  path: '/loki/api/v1/query_range',
  host: 'logs.example.com',
  params: { env: 'staging' },
  headers: { 'x-scope-orgid': 'acme', 'user-agent': 'Grafana/11.0', accept: 'application/json' },
  query: { query: '{app="api"}', limit: '100' },
};

const expressions: Array<{ name: string; source: string; celJs: boolean }> = [
  { name: '1 keycloak role', source: `'log-reader' in claims.realm_access.roles`, celJs: true },
  {
    name: '2 env + method',
    source: `request.params.env in claims.envs && request.method in ['GET', 'HEAD'] && claims.level >= 2`,
    celJs: true,
  },
  {
    name: '3 scope + tenant',
    source:
      `claims.scp.exists(s, s == 'logs:read') && ` +
      `claims['https://example.com/tenant'] == request.headers['x-scope-orgid'] && claims.email_verified`,
    celJs: true,
  },
  {
    name: '4 strings + regex',
    source:
      `request.path.startsWith('/loki/api/v1/') && request.path.matches('^/loki/api/v1/(query|query_range|labels)$') && ` +
      `claims.email.endsWith('@example.com')`,
    celJs: false,
  },
];

/** Runs `fn` for `runMs` per round; returns the median evaluations per second over the rounds. */
function measure(fn: () => unknown): number {
  for (let i = 0; i < 20_000; i++) fn(); // warm-up: let V8 optimise before timing
  const rates: number[] = [];
  for (let r = 0; r < rounds; r++) {
    let n = 0;
    const start = performance.now();
    let elapsed = 0;
    while (elapsed < runMs) {
      for (let i = 0; i < 1000; i++) fn();
      n += 1000;
      elapsed = performance.now() - start;
    }
    rates.push((n / elapsed) * 1000);
  }
  rates.sort((a, b) => a - b);
  return rates[Math.floor(rates.length / 2)] ?? 0;
}

function compileRate(compile: () => unknown): number {
  const start = performance.now();
  let n = 0;
  while (performance.now() - start < runMs / 2) {
    compile();
    n++;
  }
  return (n / (performance.now() - start)) * 1000;
}

const rawEnv = new Environment()
  .registerVariable('claims', 'map<string, dyn>')
  .registerVariable('request', 'map<string, dyn>');

const fmt = (n: number): string => Math.round(n).toLocaleString('en-US').padStart(12);
console.log(`node ${process.version}, ${rounds} rounds x ${runMs} ms, median evaluations/s\n`);
console.log(`${'expression'.padEnd(20)} ${'engine'.padEnd(18)} ${'evals/s'.padStart(12)} ${'compiles/s'.padStart(12)}  result`);

for (const { name, source, celJs } of expressions) {
  const compiled = compileCel(source);
  const check = compiled.evaluate({ claims, request });
  if (!check.ok || check.value !== true) throw new Error(`${name}: expected true, got ${JSON.stringify(check)}`);
  const ours = measure(() => compiled.evaluate({ claims, request }));
  console.log(`${name.padEnd(20)} ${'portcullis'.padEnd(18)} ${fmt(ours)} ${fmt(compileRate(() => compileCel(source)))}  ${check.value}`);

  const raw = rawEnv.parse(source);
  raw.check();
  const rawValue: unknown = raw({ claims, request });
  const rawRate = measure(() => raw({ claims, request }));
  console.log(`${''.padEnd(20)} ${'marcbachmann raw'.padEnd(18)} ${fmt(rawRate)} ${fmt(compileRate(() => rawEnv.parse(source).check()))}  ${String(rawValue)}`);

  if (celJs) {
    const parsed = celJsParse(source);
    if (!parsed.isSuccess) throw new Error(`cel-js cannot parse ${name}: ${parsed.errors.join('; ')}`);
    const cst = parsed.cst;
    const value = celJsEvaluate(cst, { claims, request });
    const rate = measure(() => celJsEvaluate(cst, { claims, request }));
    console.log(`${''.padEnd(20)} ${'cel-js'.padEnd(18)} ${fmt(rate)} ${fmt(compileRate(() => celJsParse(source)))}  ${String(value)}`);
  }
}
