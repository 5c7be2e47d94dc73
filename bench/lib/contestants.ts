/**
 * The rows of the table: how to start each contestant for a scenario, and why one cannot run where it
 * cannot. Every contestant listens on 127.0.0.1 and forwards to the shared nginx.
 */
import type { ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { generateAuditKey } from '../../src/audit/keys.ts';
import { freePort, repin, runSync, spawnTracked, stopTracked, waitForPort } from './procs.ts';
import { POLICY } from './scenarios.ts';
import type { Scenario } from './scenarios.ts';
import { CLAIM_HEADERS, writeHaproxyConfig } from './servers.ts';
import { AUDIENCE, ISSUER } from './tokens.ts';
import type { KeySet } from './tokens.ts';
import type { Tools } from './tools.ts';

export interface Cores {
  /** wrk and nginx. */
  readonly gen: string | undefined;
  /** A one-process contestant. */
  readonly one: string | undefined;
  /** A two-worker contestant (shares core 0 with wrk/nginx on a 2-core machine). */
  readonly two: string | undefined;
}

export interface BenchContext {
  readonly repo: string;
  readonly dir: string;
  readonly keys: KeySet;
  readonly tools: Tools;
  readonly nginxPort: number;
  readonly nginxPid: number;
  readonly cores: Cores;
  /** `serve --workers` exists in this checkout. */
  readonly workersFlag: boolean;
  /** `serve --no-watch` exists in this checkout. */
  readonly noWatchFlag: boolean;
  /** HAProxy's jwt_verify refusal per alg (undefined: usable), found by `haproxy -c` at start. */
  readonly haproxyProblem: (scenario: Scenario) => string | undefined;
  /** Runs each contestant inside another command (`--instructions`: valgrind). */
  readonly wrap?: Wrapper;
  /** Portcullis's admin listener (`/metrics`) on this port; off when absent, as in every measured row. */
  readonly adminPort?: number;
}

export interface Wrapper {
  command(cmd: string, args: readonly string[]): [string, string[]];
  readonly startTimeoutMs: number;
}

export interface Running {
  readonly port: number;
  /** Root of the process tree whose CPU and RSS are measured. */
  readonly pid: number;
  stop(): Promise<void>;
}

export interface Contestant {
  readonly id: string;
  readonly label: string;
  /** Baselines do not authenticate: measured once per round, scenario-independent. */
  readonly baseline: boolean;
  /** Measured only when `--only` names it: a variant for an A/B, not a row of the default table. */
  readonly optIn?: boolean;
  /** One Portcullis process that `--soak` can run (its admin listener gives V8's heap beside RSS). */
  readonly soakable?: boolean;
  /**
   * The row is one process, so the per-request modes can attach to it: `node` (one Node process, which
   * callgrind can follow: `--instructions` and `--syscalls`) or `native` (`--syscalls` only). Absent for a
   * process tree (nginx's worker, cluster workers). Threads count: the audited rows' counts include their
   * SQLite write thread, but not PostgreSQL's server, another process.
   */
  readonly oneProcess?: 'node' | 'native';
  /** Why it cannot run this scenario here, or undefined. */
  unsupported(scenario: Scenario, ctx: BenchContext): string | undefined;
  start(scenario: Scenario, ctx: BenchContext): Promise<Running>;
}

const START_TIMEOUT_MS = 20_000;

async function startProcess(
  ctx: BenchContext,
  name: string,
  cmd: string,
  args: (port: number) => string[],
  cpus: string | undefined,
): Promise<Running> {
  const port = await freePort();
  const logFile = join(ctx.dir, `${name}.log`);
  const [file, argv] = ctx.wrap === undefined ? [cmd, args(port)] : ctx.wrap.command(cmd, args(port));
  const child: ChildProcess = spawnTracked(file, argv, { cpus, logFile, cwd: ctx.repo });
  try {
    await waitForPort(port, ctx.wrap?.startTimeoutMs ?? START_TIMEOUT_MS, child);
  } catch (error) {
    await stopTracked(child);
    throw new Error(`${name}: ${(error as Error).message} (log: ${logFile})`);
  }
  return { port, pid: child.pid ?? 0, stop: () => stopTracked(child) };
}

function nodeContestant(id: string, label: string, file: string, auth: boolean): Contestant {
  return {
    id,
    label,
    baseline: !auth,
    oneProcess: 'node',
    unsupported(scenario) {
      if (id === 'express-jwt' && scenario.alg === 'EdDSA') return 'jsonwebtoken (express-jwt) has no EdDSA';
      if (auth && scenario.route === 'loki') return NO_LOGQL;
      return undefined;
    },
    start(scenario, ctx) {
      const key = ctx.keys.keys[scenario.alg];
      return startProcess(
        ctx,
        `${id}-${scenario.id}`,
        process.execPath,
        (port) => [
          join(ctx.repo, 'bench', 'contestants', file),
          '--port',
          String(port),
          '--backend',
          `http://127.0.0.1:${ctx.nginxPort}`,
          ...(auth
            ? ['--alg', scenario.alg, '--key', key.publicPemFile, '--iss', ISSUER, '--aud', AUDIENCE]
            : []),
          ...(auth && scenario.claims ? ['--claims', CLAIM_HEADERS.map(([h, p]) => `${h}=${p}`).join(',')] : []),
          ...(auth && scenario.route === 'policy' ? ['--policy'] : []),
        ],
        ctx.cores.one,
      );
    },
  };
}

const NO_LOGQL = 'n/a (no LogQL enforcement: a peer would forward the query as sent)';

/**
 * The route settings a scenario adds to Portcullis's catch-all route: the policy as one CEL deny rule and
 * one shorthand allow rule (the two rule forms), or, for Loki, a second route with label enforcement.
 */
function routeExtras(scenario: Scenario): { bench: string; routes: string } {
  if (scenario.route === 'policy') {
    return {
      bench: `    rules:
      - { id: no-contractors, effect: deny, when: '"${POLICY.denyRole}" in claims.realm_access.roles' }
      - { id: log-readers, require: { roles: [${POLICY.role}], scopes: ["${POLICY.scope}"], claims: { tenant: [${POLICY.tenant}] } } }
`,
      routes: '',
    };
  }
  if (scenario.route === 'loki') {
    return {
      bench: '',
      routes: `  - id: logs
    match: { path_prefix: /loki/ }
    upstream: nginx
    loki:
      enforce: { env: claims.env }
      tenant: claims.tenant
`,
    };
  }
  return { bench: '', routes: '' };
}

/** The Portcullis config for a scenario: static JWKS issuer, one catch-all route to nginx, admin off. */
export function writePortcullisConfig(ctx: BenchContext, scenario: Scenario, port: number, audit?: AuditStoreKind, auditExtra = ''): string {
  const file = join(ctx.dir, `portcullis-${scenario.id}-${port}.yaml`);
  const auditSection = audit === undefined ? '' : auditConfig(ctx, audit) + auditExtra;
  const claims = scenario.claims
    ? `    claims_to_headers:\n${CLAIM_HEADERS.map(([h, p]) => `      ${h}: ${p}`).join('\n')}\n`
    : '';
  const extras = routeExtras(scenario);
  writeFileSync(
    file,
    `# Generated by bench/run.ts for scenario ${scenario.id}
listen: 127.0.0.1:${port}
admin: ${ctx.adminPort === undefined ? 'false' : `127.0.0.1:${ctx.adminPort}`}
log: { level: warn }
issuers:
  bench:
    issuer: ${ISSUER}
    keys:
      - { jwks_file: ${ctx.keys.jwksFile} }
    audiences: [${AUDIENCE}]
${auditSection}upstreams:
  nginx:
    targets: ["http://127.0.0.1:${ctx.nginxPort}"]
routes:
  - id: bench
    match: { path_prefix: / }
    upstream: nginx
${claims}${extras.bench}${extras.routes}`,
  );
  return file;
}

export type AuditStoreKind = 'sqlite' | 'postgres';

/** PostgreSQL for the audited rows: the machine's local server (trust auth, database test), or this URL. */
const BENCH_PG_URL = process.env.PORTCULLIS_BENCH_PG_URL ?? 'postgres://postgres@127.0.0.1:5432/test';

/**
 * An audit section for the audited rows: a fresh store per run (SQLite file in the temp dir, or a fresh
 * PostgreSQL schema) and an Ed25519 signing key generated at run time.
 */
function auditConfig(ctx: BenchContext, kind: AuditStoreKind): string {
  const keyFile = join(ctx.dir, 'audit-signing.pem');
  if (!existsSync(keyFile)) writeFileSync(keyFile, generateAuditKey('bench').privateKeyPem, { mode: 0o600 });
  const id = randomBytes(4).toString('hex');
  const store = kind === 'sqlite' ? `sqlite:${join(ctx.dir, `audit-${id}.db`)}` : `${BENCH_PG_URL}?schema=pc_bench_${id}`;
  return `audit:\n  store: "${store}"\n  signing_key: { file: ${keyFile} }\n  key_id: bench\n`;
}

/**
 * Portcullis with the audit log on (issue 5): one record per request, hash-chained, checkpoints signed.
 * Measured in the same-token scenario, next to the Portcullis row without audit: the difference in p50/p99
 * is the added latency of auditing. With `noWait`, the opt-in A/B row with `batch_wait: 0`: each batch goes
 * as soon as the previous one is written, as before the wait existed, paired round by round with the other.
 */
function portcullisAudited(kind: AuditStoreKind, noWait = false): Contestant {
  return {
    ...portcullis(1, { store: kind, noWait }),
    ...(noWait ? { optIn: true } : {}),
    unsupported(scenario) {
      return scenario.id === 'same' ? undefined : 'n/a (audit rows run in the same-token scenario)';
    },
  };
}

/**
 * Portcullis with V8's young generation capped at 2 × `mib` (`--max-semi-space-size`). Uncapped, V8 grows
 * the nursery under load up to a limit it derives from the machine's memory (128 MiB on a 24 GiB machine),
 * which is most of the proxy's RSS and the steps the forged-token soak sees. This row is the price of a
 * lower, steadier ceiling, paired round by round with the uncapped row. `pinned` also sets the minimum
 * (`--min-semi-space-size`, which NODE_OPTIONS does not accept), so that V8 cannot shrink it either.
 */
function portcullisNursery(mib: number, pinned: boolean): Contestant {
  return { ...portcullis(1, undefined, { mib, pinned }), optIn: true };
}

function portcullis(workers: number, audited?: { store: AuditStoreKind; noWait?: boolean }, nursery?: { mib: number; pinned: boolean }): Contestant {
  const audit = audited?.store;
  const noWait = audited?.noWait === true;
  const id =
    audit !== undefined ? `portcullis-audit-${audit}${noWait ? '-nowait' : ''}`
    : nursery !== undefined ? `portcullis-nursery${nursery.mib}${nursery.pinned ? '-pinned' : ''}`
    : workers === 1 ? 'portcullis'
    : `portcullis-w${workers}`;
  const v8Flags = nursery === undefined ? [] : [`--max-semi-space-size=${nursery.mib}`, ...(nursery.pinned ? [`--min-semi-space-size=${nursery.mib}`] : [])];
  return {
    id,
    label:
      audit !== undefined ? `Portcullis + audit (${audit === 'sqlite' ? 'SQLite' : 'PostgreSQL'}${noWait ? ', batch_wait 0' : ''})`
      : nursery !== undefined ? `Portcullis, ${v8Flags.join(' ')}`
      : workers === 1 ? 'Portcullis (1 process)'
      : `Portcullis --workers ${workers}`,
    baseline: false,
    soakable: workers === 1 && audit === undefined,
    ...(workers === 1 ? { oneProcess: 'node' as const } : {}),
    unsupported(_scenario, ctx) {
      if (workers > 1 && !ctx.workersFlag) return 'n/a (serve --workers not available)';
      return undefined;
    },
    start(scenario, ctx) {
      return startProcess(
        ctx,
        `${id}-${scenario.id}`,
        process.execPath,
        (port) => [
          ...v8Flags,
          join(ctx.repo, 'src', 'cli', 'main.ts'),
          'serve',
          '-c',
          writePortcullisConfig(ctx, scenario, port, audit, noWait ? '  batch_wait: 0\n' : ''),
          ...(ctx.noWatchFlag ? ['--no-watch'] : []),
          ...(workers > 1 ? ['--workers', String(workers)] : []),
        ],
        workers > 1 ? ctx.cores.two : ctx.cores.one,
      );
    },
  };
}

const direct: Contestant = {
  id: 'direct',
  label: 'direct nginx (no proxy)',
  baseline: true,
  unsupported: () => undefined,
  async start(_scenario, ctx) {
    // The shared nginx moves to the contestants' core for its own row, so that like every proxy it has a
    // core of its own while wrk keeps core 0; it goes back when the row is done.
    if (ctx.cores.one !== undefined) repin(ctx.nginxPid, ctx.cores.one);
    return {
      port: ctx.nginxPort,
      pid: ctx.nginxPid,
      stop: async () => {
        if (ctx.cores.gen !== undefined) repin(ctx.nginxPid, ctx.cores.gen);
      },
    };
  },
};

const haproxy: Contestant = {
  id: 'haproxy',
  label: 'HAProxy jwt_verify',
  baseline: false,
  oneProcess: 'native',
  unsupported(scenario, ctx) {
    if (ctx.tools.haproxy === undefined) return 'haproxy not installed';
    if (scenario.route === 'loki') return NO_LOGQL;
    // jwt_payload_query returns strings and numbers only, so a rule over the roles array cannot be written.
    if (scenario.route === 'policy') return 'n/a (jwt_payload_query reads no arrays: no rule over roles)';
    return ctx.haproxyProblem(scenario);
  },
  start(scenario, ctx) {
    const haproxyBin = ctx.tools.haproxy ?? 'haproxy';
    return startProcess(
      ctx,
      `haproxy-${scenario.id}`,
      haproxyBin,
      (port) => [
        '-db',
        '-f',
        writeHaproxyConfig(ctx.dir, haproxyOptions(ctx, scenario, port)),
      ],
      ctx.cores.one,
    );
  },
};

/** Table order. */
export const CONTESTANTS: readonly Contestant[] = [
  direct,
  nodeContestant('passthrough', 'node pass-through (no auth)', 'passthrough.ts', false),
  nodeContestant('lean-verify', 'lean crypto.verify, no cache', 'lean-verify.ts', true),
  portcullis(1),
  portcullis(2),
  portcullisNursery(16, false),
  portcullisNursery(16, true),
  portcullisAudited('sqlite'),
  portcullisAudited('sqlite', true),
  portcullisAudited('postgres'),
  portcullisAudited('postgres', true),
  nodeContestant('fastify-jwt', 'fastify + @fastify/jwt', 'fastify-jwt.ts', true),
  nodeContestant('express-jwt', 'express + express-jwt', 'express-jwt.ts', true),
  haproxy,
];

/** Which `serve` flags this checkout has, from `serve --help`. */
export function serveFlags(repo: string): { workers: boolean; noWatch: boolean } {
  const help = runSync(process.execPath, [join(repo, 'src', 'cli', 'main.ts'), 'serve', '--help'], 30_000).out;
  return { workers: /--workers\b/.test(help), noWatch: /--no-watch\b/.test(help) };
}

/**
 * Whether HAProxy's jwt_verify accepts an alg, by validating a generated config (`haproxy -c`). HAProxy 2.6
 * knows HS*, RS*, ES* (PS* is "unmanaged"), not EdDSA.
 */
/** The HAProxy config for a scenario; `haproxyCheck` validates exactly what the contestant runs. */
function haproxyOptions(ctx: Pick<BenchContext, 'nginxPort' | 'keys'>, scenario: Scenario, port: number): Parameters<typeof writeHaproxyConfig>[1] {
  return {
    port,
    backendPort: ctx.nginxPort,
    alg: scenario.alg,
    publicPemFile: ctx.keys.keys[scenario.alg].publicPemFile,
    issuer: ISSUER,
    audience: AUDIENCE,
    claims: scenario.claims,
  };
}

export function haproxyCheck(ctx: Omit<BenchContext, 'haproxyProblem'>, scenario: Scenario): string | undefined {
  if (ctx.tools.haproxy === undefined) return 'haproxy not installed';
  const file = writeHaproxyConfig(ctx.dir, haproxyOptions(ctx, scenario, 1));
  const result = runSync(ctx.tools.haproxy, ['-c', '-f', file], 30_000);
  if (result.status === 0) return undefined;
  const reason = /jwt_verify' : ([^\n]*?) in ACL/.exec(result.out)?.[1] ?? result.out.trim().split('\n').slice(-2).join(' ');
  const version = /version (\d+\.\d+)/.exec(runSync(ctx.tools.haproxy, ['-v']).out)?.[1] ?? '?';
  return `n/a (HAProxy ${version} jwt_verify: ${reason})`;
}
