/**
 * `npm run bench`: Portcullis against its peers under the same load, one table. See bench/README.md.
 *
 *   npm run bench                                   # compact set (same, distinct, invalid), 3 × 4 s runs
 *   npm run bench -- --scenario all --duration 10 --runs 5
 *   npm run bench -- --only portcullis,passthrough --scenario same
 *   npm run bench -- --soak 600 --distinct 100000    # memory soak: RSS every 10 s under 100k distinct tokens
 *   npm run bench -- --profile distinct              # --cpu-prof of Portcullis under load, top frames
 *   npm run bench -- --instructions                  # callgrind: instructions per request, deterministic
 *
 * One shared nginx backend (one worker) and, in turn, each contestant, all on 127.0.0.1. wrk (-t1 -c50)
 * drives every contestant with the same token file; each measured run starts the contestant fresh (no
 * cache survives from a previous run), warms it up, then measures. Rounds are interleaved (every
 * contestant once per round) and the table shows medians. Everything it starts, it stops.
 */
import { mkdtempSync, mkdirSync, rmSync, writeFileSync, existsSync } from 'node:fs';
import { availableParallelism, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { CONTESTANTS, haproxyCheck, serveFlags } from './lib/contestants.ts';
import type { BenchContext, Contestant, Cores, Running } from './lib/contestants.ts';
import { describeMachine, formatMachine } from './lib/machine.ts';
import {
  coreBusyPercent,
  busySeconds,
  coreTimes,
  cpuDelta,
  cpuSeconds,
  hasCommand,
  httpGet,
  peakRssMiB,
  pinningEnabled,
  processTree,
  resetPeakRss,
  runSync,
  setPinning,
  spawnTracked,
  stopTracked,
  waitForPort,
  freePort,
} from './lib/procs.ts';
import { describeProbes, probeHost, summarizeProbes } from './lib/host-speed.ts';
import { checkTargets, formatTargets, markdownTable, summarize, textTable } from './lib/report.ts';
import type { Row, Sample } from './lib/report.ts';
import { DEFAULT_SCENARIOS, LOKI_QUERY, NO_TOKEN, POLICY, SCENARIOS, authHeaders, selectScenarios } from './lib/scenarios.ts';
import type { Scenario, TokenKind } from './lib/scenarios.ts';
import { CLAIM_HEADERS, ECHO_PATH, writeNginxConfig } from './lib/servers.ts';
import { CONCURRENCY } from './lib/drive.ts';
import type { CountPlan } from './lib/drive.ts';
import { formatInstructions, runInstructions } from './lib/instructions.ts';
import { formatSyscalls, runSyscalls } from './lib/syscalls.ts';
import { runProfile } from './lib/profile.ts';
import { runSoak } from './lib/soak.ts';
import { forgeFile, forgeOne, generateKeys, mintFile, mintOne } from './lib/tokens.ts';
import type { Alg, KeySet } from './lib/tokens.ts';
import { ensureTools } from './lib/tools.ts';
import { runWrk, writeWrkScript } from './lib/wrk.ts';

const HERE = dirname(fileURLToPath(import.meta.url));
const REPO = dirname(HERE);
/** Seconds a measured run costs beyond warm-up + duration (host probe ~0.15, start, checks, stop), for the estimate. */
const OVERHEAD_S = 1.15;
/** Background CPU (other processes, in % of one core) above which a run is measured again, once. */
const NOISY_PERCENT = 25;
/** Background CPU below which a run may start. */
const QUIET_PERCENT = 15;
/** Seconds the whole bench may spend waiting for other processes to calm down (the machine may be shared). */
let quietBudgetS = 120;

const LEGEND =
  'req/s, p50, p99, CPU: medians of the runs; ±%: half the range of the runs\' req/s over the median; ×pt: median over rounds of req/s ÷ node pass-through\'s req/s in the same round; +p99: p99 minus pass-through p99; CPU: user+sys of the contestant\'s process tree over the run (100% = one core); CPU µs/req: that CPU time per request, of which kernel µs/req in the kernel on its behalf (mostly sockets and epoll; loopback packet work done in softirq is not charged to it); peak RSS: VmHWM summed over the tree, reset before the run.';

const HELP = `npm run bench -- [options]
  --scenario LIST    comma list of ${SCENARIOS.map((s) => s.id).join(', ')}; or all; default: ${DEFAULT_SCENARIOS.join(',')}
  --duration S       seconds per measured run (default 4)
  --runs N           interleaved rounds; the table shows medians (default 3)
  --warmup S         seconds of load before each measured run (default 1; 0: none)
  --connections N    wrk connections (default 50)
  --pool N           distinct tokens per file for the distinct/invalid scenarios (default: enough for one run)
  --only LIST        contestants: ${CONTESTANTS.filter((c) => c.optIn !== true).map((c) => c.id).join(', ')};
                     measured only when named: ${CONTESTANTS.filter((c) => c.optIn === true).map((c) => c.id).join(', ')}
  --no-pin           do not pin processes to cores with taskset
  --no-install       do not apt-get install missing tools
  --no-extras        skip the other benches in bench/ run at the end (crypto.verify per algorithm, a new
                     token's whole check against lean's and the bare crypto,
                     LogQL rewrite cost, audit append/verify rates, CEL evaluation)
  --soak S           soak mode: Portcullis under distinct-token load, warmed up until its RSS settles
                     (at most 600 s), then S seconds measured, RSS every 10 s; --only picks the row:
                     ${CONTESTANTS.filter((c) => c.soakable === true).map((c) => c.id).join(', ')} (default portcullis)
  --distinct N       soak: number of distinct tokens (default 100000)
  --soak-tokens K    soak: valid (default) or invalid (distinct bad signatures: rejections stay bounded)
  --profile SCENARIO profile mode: node --cpu-prof on Portcullis under that scenario, top frames
  --audit STORE      profile mode: with the audit log on, in sqlite or postgres
  --instructions     instruction-count mode: the Node contestants under valgrind's callgrind, machine
                     instructions per request (repeatable to ±0.1%, unlike req/s); default contestants
                     passthrough,lean-verify,portcullis and scenarios distinct,invalid
  --syscalls         syscall-count mode: strace -c attached to each one-process contestant after a
                     warm-up, system calls per request by name; default contestants passthrough,
                     lean-verify,portcullis,fastify-jwt,express-jwt,haproxy and scenario same
  --requests N       instruction- and syscall-count modes: measured requests per contestant (default 5000)
  --keep             keep the temp dir (keys, tokens, configs, logs)`;

const { values: opts } = parseArgs({
  // --no-extras and friends: booleans that default to true can be turned off.
  allowNegative: true,
  options: {
    scenario: { type: 'string', default: 'default' },
    duration: { type: 'string', default: '4' },
    runs: { type: 'string', default: '3' },
    warmup: { type: 'string', default: '1' },
    connections: { type: 'string', default: '50' },
    pool: { type: 'string' },
    only: { type: 'string' },
    'no-pin': { type: 'boolean', default: false },
    'no-install': { type: 'boolean', default: false },
    extras: { type: 'boolean', default: true },
    soak: { type: 'string' },
    distinct: { type: 'string', default: '100000' },
    'soak-tokens': { type: 'string', default: 'valid' },
    profile: { type: 'string' },
    audit: { type: 'string' },
    instructions: { type: 'boolean', default: false },
    syscalls: { type: 'boolean', default: false },
    requests: { type: 'string', default: '5000' },
    keep: { type: 'boolean', default: false },
    help: { type: 'boolean', short: 'h', default: false },
  },
  strict: true,
});

if (opts.help) {
  console.log(HELP);
  process.exit(0);
}

// Options of one mode given without it would be ignored silently.
for (const [option, given, mode, inMode] of [
  ['--soak-tokens', opts['soak-tokens'] !== 'valid', '--soak', opts.soak !== undefined],
  ['--audit', opts.audit !== undefined, '--profile', opts.profile !== undefined],
] as const) {
  if (given && !inMode) {
    console.error(`${option} applies to ${mode} only`);
    process.exit(2);
  }
}

// wrk takes whole seconds.
const duration = positive('duration', opts.duration);
const runs = positive('runs', opts.runs);
const warmup = opts.warmup === '0' ? 0 : positive('warmup', opts.warmup);
const connections = positive('connections', opts.connections);

function positive(name: string, value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n <= 0) {
    console.error(`--${name} must be a positive whole number (got ${value})`);
    process.exit(2);
  }
  return n;
}

/** `value` when it is one of `allowed`; otherwise the usage error, exit 2. */
function oneOf<T extends string>(name: string, value: string, allowed: readonly T[]): T {
  if ((allowed as readonly string[]).includes(value)) return value as T;
  console.error(`--${name} must be ${allowed.join(' or ')} (got ${value})`);
  process.exit(2);
}

function log(line: string): void {
  process.stderr.write(`bench: ${line}\n`);
}

// ---- set-up shared by every mode ------------------------------------------------------------------------

setPinning(!opts['no-pin']);
const tools = ensureTools(!opts['no-install'], log, opts.instructions);
for (const problem of tools.problems) log(problem);
if (tools.wrk === undefined || tools.nginx === undefined) {
  console.error('bench: cannot run without wrk and nginx:\n  ' + tools.problems.join('\n  '));
  process.exit(1);
}
const nproc = availableParallelism();
if (nproc < 2) setPinning(false);
const cores: Cores = pinningEnabled()
  ? { gen: '0', one: '1', two: nproc >= 3 ? '1,2' : '0,1' }
  : { gen: undefined, one: undefined, two: undefined };
const machine = describeMachine(tools);

const dir = mkdtempSync(join(tmpdir(), 'portcullis-bench-'));
process.on('exit', () => {
  if (!opts.keep) rmSync(dir, { recursive: true, force: true });
});
log(`temp dir ${dir}${opts.keep ? ' (kept)' : ' (removed at exit; --keep to keep it)'}`);

const keys: KeySet = generateKeys(dir);
const script = writeWrkScript(dir);

const nginxPort = await freePort();
const nginx = spawnTracked(tools.nginx, ['-c', writeNginxConfig(dir, nginxPort), '-p', join(dir, 'nginx')], {
  cpus: cores.gen,
  logFile: join(dir, 'nginx.log'),
});
await waitForPort(nginxPort, 10_000, nginx);
const nginxPid = nginx.pid ?? 0;

const flags = serveFlags(REPO);
const baseCtx = {
  repo: REPO,
  dir,
  keys,
  tools,
  nginxPort,
  nginxPid,
  cores,
  workersFlag: flags.workers,
  noWatchFlag: flags.noWatch,
};
const haproxyProblems = new Map<string, string | undefined>();
const ctx: BenchContext = {
  ...baseCtx,
  haproxyProblem(scenario) {
    const key = `${scenario.alg}${scenario.claims ? '+claims' : ''}`;
    if (!haproxyProblems.has(key)) haproxyProblems.set(key, haproxyCheck(baseCtx, scenario));
    return haproxyProblems.get(key);
  },
};

try {
  if (opts.soak !== undefined) {
    await runSoak({
      ctx,
      seconds: positive('soak', opts.soak),
      distinct: positive('distinct', opts.distinct),
      tokens: oneOf('soak-tokens', opts['soak-tokens'], ['valid', 'invalid'] as const),
      connections,
      script,
      log,
      contestant: opts.only ?? 'portcullis',
    });
  } else if (opts.profile !== undefined) {
    const [scenario] = selectScenarios(opts.profile);
    if (scenario === undefined) throw new Error('--profile needs one scenario');
    const files = await makeTokenFiles([scenario], defaultPool(duration));
    await runProfile({ ctx, scenario, files: files.get(fileKey(scenario))!, seconds: duration, warmup, connections, script, audit: opts.audit === undefined ? undefined : oneOf('audit', opts.audit, ['sqlite', 'postgres'] as const), log });
  } else if (opts.instructions) {
    await runInstructionsMode();
  } else if (opts.syscalls) {
    await runSyscallsMode();
  } else {
    await runBench();
  }
} finally {
  await stopTracked(nginx);
}
process.exit(process.exitCode ?? 0);

// ---- instruction counts ---------------------------------------------------------------------------------

async function runInstructionsMode(): Promise<void> {
  if (tools.valgrind === undefined) throw new Error('--instructions needs valgrind (apt-get install valgrind)');
  const plan = await countPlan('distinct,invalid', ['passthrough', 'lean-verify', 'portcullis'], (c) => c.oneProcess === 'node', 'instruction-count mode (not one Node process)', 4);
  const { scenarios, requests, warmRequests } = plan;
  const started = Date.now();
  const rows = await runInstructions(plan);
  writeCounts(
    'instructions.md',
    'Instructions per request',
    `each contestant under valgrind's callgrind, ${warmRequests} warm-up requests uninstrumented, then ${requests} measured requests over ${CONCURRENCY} keep-alive connections; every thread of the process counted. Measured in ${formatDuration((Date.now() - started) / 1000)}.`,
    formatInstructions(rows, scenarios),
    'lean ÷ row and pass-through ÷ row read like throughput ratios: 0.95 means the row executes 1/0.95 times the instructions of the reference per request.',
  );
}

// ---- syscall counts -------------------------------------------------------------------------------------

async function runSyscallsMode(): Promise<void> {
  if (!hasCommand('strace')) throw new Error('--syscalls needs strace (apt-get install strace)');
  const plan = await countPlan('same', ['passthrough', 'lean-verify', 'portcullis', 'fastify-jwt', 'express-jwt', 'haproxy'], (c) => c.oneProcess !== undefined, 'syscall-count mode (not one process)', 1);
  const { requests, warmRequests } = plan;
  const rows = await runSyscalls(plan);
  writeCounts(
    'syscalls.md',
    'System calls per request',
    `each contestant started normally, ${warmRequests} warm-up requests, then \`strace -c\` attached to every thread and ${requests} measured requests over ${CONCURRENCY} keep-alive connections.`,
    formatSyscalls(rows),
  );
}

/**
 * What a per-request mode measures: `--scenario` and `--only` or the mode's defaults, the contestants the
 * mode can measure (others are named), `--requests` measured after `warmFactor` × as many warm-up requests.
 */
async function countPlan(
  defaultScenarios: string,
  defaultIds: readonly string[],
  measurable: (c: Contestant) => boolean,
  why: string,
  warmFactor: number,
): Promise<CountPlan> {
  const scenarios = selectScenarios(opts.scenario === 'default' ? defaultScenarios : opts.scenario);
  const ids = opts.only?.split(',') ?? defaultIds;
  const contestants = CONTESTANTS.filter((c) => ids.includes(c.id) && measurable(c));
  for (const id of ids) if (!contestants.some((c) => c.id === id)) log(`${id}: not measured in ${why}`);
  const requests = positive('requests', opts.requests);
  const warmRequests = warmFactor * requests;
  const files = await makeTokenFiles(scenarios, warmRequests + requests);
  return { ctx, scenarios, contestants, tokenFile: (scenario) => files.get(fileKey(scenario))!.measure, requests, warmRequests, log };
}

/** Prints a per-request mode's table and writes its results file: title, machine, command and method, table. */
function writeCounts(file: string, title: string, method: string, table: string, footer?: string): void {
  const command = `npm run bench -- ${process.argv.slice(2).join(' ')}`;
  const text = [`# ${title}`, '', formatMachine(machine), '', `Command: \`${command}\` — ${method}`, '', table, '', ...(footer === undefined ? [] : [footer, ''])].join('\n');
  console.log('');
  console.log(table);
  const resultsDir = join(HERE, 'results');
  mkdirSync(resultsDir, { recursive: true });
  writeFileSync(join(resultsDir, file), text);
  log(`wrote ${join('bench', 'results', file)}`);
}

// ---- the bench ------------------------------------------------------------------------------------------

interface TokenFiles {
  /** Cycled during the measured run. */
  readonly measure: string;
  /** Cycled during warm-up (disjoint from `measure` for distinct kinds). */
  readonly warm: string;
  /** Distinct tokens in `measure`. */
  readonly count: number;
  /** One token of the kind, for the correctness check. */
  readonly sample: string;
  /** A valid token of the same alg (for the claims echo check). */
  readonly valid: string;
  /** A bad-signature token of the same alg. */
  readonly forged: string;
  /** A valid token of the same alg that the `policy` scenario's rules deny. */
  readonly denied: string;
}

function fileKey(scenario: Pick<Scenario, 'alg' | 'tokens'>): string {
  return `${scenario.alg}-${scenario.tokens}`;
}

/** Token files for every (alg, kind) the scenarios need, plus the baselines' same-RS256 file. */
async function makeTokenFiles(scenarios: readonly Scenario[], pool: number): Promise<Map<string, TokenFiles>> {
  const needed = new Map<string, { alg: Alg; tokens: TokenKind }>([['RS256-same', { alg: 'RS256', tokens: 'same' }]]);
  for (const s of scenarios) needed.set(fileKey(s), { alg: s.alg, tokens: s.tokens });
  const ttl = 6 * 3600;
  const out = new Map<string, TokenFiles>();
  for (const [name, { alg, tokens }] of needed) {
    const key = keys.keys[alg];
    const measure = join(dir, `${name}.tokens`);
    const warm = join(dir, `${name}.warm.tokens`);
    const valid = mintOne(key, 0, ttl);
    const forged = forgeOne(key, 0, ttl);
    const denied = mintOne(key, 0, ttl, [POLICY.denyRole, POLICY.role]);
    let count = 1;
    if (tokens === 'same') {
      writeFileSync(measure, valid + '\n');
      writeFileSync(warm, valid + '\n');
    } else if (tokens === 'none') {
      writeFileSync(measure, NO_TOKEN + '\n');
      writeFileSync(warm, NO_TOKEN + '\n');
    } else if (tokens === 'invalid-same') {
      writeFileSync(measure, forged + '\n');
      writeFileSync(warm, forged + '\n');
    } else if (tokens === 'invalid') {
      // Forging needs no signing, so this pool is sized for the fastest refusers (HAProxy: ~40k/s).
      count = Math.max(pool, 50_000 * duration + 10_000);
      forgeFile(key, 1, count, ttl, measure);
      forgeFile(key, count + 1, warmPool(warmup, 'forged'), ttl, warm);
    } else {
      const warmCount = warmPool(warmup, 'signed');
      log(`signing ${pool + warmCount} distinct ${alg} tokens ...`);
      const ms = (await mintFile(key, 1, pool, ttl, measure)) + (await mintFile(key, pool + 1, warmCount, ttl, warm));
      log(`  ... ${(ms / 1000).toFixed(1)} s`);
      count = pool;
    }
    const sample = tokens === 'same' ? valid : tokens === 'invalid-same' ? forged : tokens === 'none' ? NO_TOKEN : firstLine(measure);
    out.set(name, { measure, warm, count, sample, valid, forged, denied });
  }
  return out;
}

/** Distinct valid tokens per file: enough for one run of the fastest verifier here (HAProxy, ~20k/s). */
function defaultPool(seconds: number): number {
  return Math.max(50_000, 20_000 * seconds + 5_000);
}

/**
 * Distinct tokens for the warm-up: as many as the fastest contestant can use in it (verifying ~20k/s,
 * refusing forgeries ~50k/s), so that no token repeats there either. With a few thousand cycled, a caching
 * proxy spent its warm-up answering from its cache, and V8 then met the path the measurement takes
 * (verify every token, admit none) only in the measured seconds: deoptimisations and recompiles counted
 * as the scenario's cost.
 */
function warmPool(seconds: number, kind: 'signed' | 'forged'): number {
  return kind === 'signed' ? Math.max(3_000, Math.ceil(20_000 * seconds) + 5_000) : Math.max(3_000, Math.ceil(50_000 * seconds) + 10_000);
}

function firstLine(file: string): string {
  const out = runSync('head', ['-n', '1', file]).out.trim();
  return out;
}

/**
 * Before measuring: the contestant answers the scenario's token as it should, refuses a forged one, and
 * (claims scenario) forwards the claim headers and no Authorization; (policy) denies what the rules deny;
 * (loki) forwards the query with the env matcher added. Returns notes; throws when the contestant is wrong
 * enough that its numbers would mean nothing.
 */
async function checkContestant(c: Contestant, s: Scenario, running: Running, files: TokenFiles): Promise<string[]> {
  const notes: string[] = [];
  const expect = c.baseline ? 200 : s.expect;
  const got = await httpGet(running.port, s.path, { ...authHeaders(files.sample), 'x-bench-echo': '1' });
  if (got.status !== expect) throw new Error(`answered ${got.status} instead of ${expect} to the scenario's token`);
  if (c.baseline) return notes;
  const forged = await httpGet(running.port, s.path, authHeaders(files.forged));
  if (forged.status !== 401) throw new Error(`answered ${forged.status} to a forged token`);
  if (s.route === 'policy') {
    const denied = await httpGet(running.port, s.path, authHeaders(files.denied));
    if (denied.status !== 403) throw new Error(`answered ${denied.status} instead of 403 to a token the policy denies`);
  }
  if (s.route === 'loki') {
    const sent = got.headers['x-bench-query'];
    const received = typeof sent === 'string' ? decodeURIComponent(sent.replace(/\+/g, ' ')) : '';
    if (!received.includes('env="staging"')) throw new Error(`forwarded the LogQL query without the env matcher: ${received.slice(0, 160)}`);
    if (received === LOKI_QUERY) throw new Error('forwarded the LogQL query unchanged');
  }
  const none = await httpGet(running.port, s.path, {});
  if (none.status !== 401) throw new Error(`answered ${none.status} without a token`);
  const echo = await httpGet(running.port, ECHO_PATH, authHeaders(files.valid));
  if (echo.status !== 200) throw new Error(`answered ${echo.status} to a valid token on ${ECHO_PATH}`);
  if (!echo.body.endsWith('authorization=')) notes.push('forwards Authorization');
  if (s.claims) {
    const want: Record<string, string> = { sub: 'user-0000000', roles: 'offline_access,log-reader,default-roles-bench', tenant: 'acme' };
    const missing = Object.entries(want)
      .filter(([name, value]) => !echo.body.includes(`${name}=${value};`))
      .map(([name]) => name);
    if (missing.length > 0) notes.push(`claim headers missing: ${missing.join(', ')}`);
  }
  return notes;
}

/**
 * One measured run, retried once when other processes on the machine took more than NOISY_PERCENT of a
 * core meanwhile (the machine may be shared); the quieter of the two is kept.
 */
async function measure(c: Contestant, s: Scenario, files: TokenFiles, round: number, row: Row): Promise<void> {
  try {
    let sample = await measureOnce(c, s, files, round, row);
    if (sample.foreignPercent > NOISY_PERCENT) {
      log(`  ${c.id.padEnd(14)} other processes used ${sample.foreignPercent.toFixed(0)}% of a core: measuring again`);
      const again = await measureOnce(c, s, files, round, row);
      if (again.foreignPercent < sample.foreignPercent) sample = again;
      if (sample.foreignPercent > NOISY_PERCENT) {
        row.notes.add(`run ${round}: other processes used ${sample.foreignPercent.toFixed(0)}% of a core`);
      }
    }
    row.samples.push(sample);
  } catch (error) {
    // A contestant that failed is not retried in later rounds: its samples so far stay, with the reason.
    row.notes.add(`failed in run ${round}: ${(error as Error).message.slice(0, 160)}`);
    row.stopped = true;
    log(`  ${c.id.padEnd(14)} FAILED: ${(error as Error).message}`);
  }
}

async function measureOnce(c: Contestant, s: Scenario, files: TokenFiles, round: number, row: Row): Promise<Sample> {
  await waitForQuiet(c.id);
  const hostProbeMs = probeHost(process.execPath, cores.one);
  const running = await c.start(s, ctx);
  try {
    for (const note of await checkContestant(c, s, running, files)) row.notes.add(note);
    if (warmup > 0) {
      await runWrk({ port: running.port, path: s.path, tokenFile: files.warm, script, seconds: warmup, connections, cpus: cores.gen });
    }
    const before = processTree(running.pid);
    if (!resetPeakRss(before)) row.notes.add('peak RSS includes start-up (clear_refs refused)');
    const nginxTree = c.id === 'direct' ? [] : processTree(nginxPid);
    const cpuBefore = cpuSeconds(before);
    const sysBefore = cpuSeconds(before, true);
    const nginxBefore = cpuSeconds(nginxTree);
    const coresBefore = coreTimes();
    const result = await runWrk({ port: running.port, path: s.path, tokenFile: files.measure, script, seconds: duration, connections, cpus: cores.gen });
    const coresAfter = coreTimes();
    const after = [...new Set([...before, ...processTree(running.pid)])];
    const cpu = cpuDelta(cpuBefore, cpuSeconds(after));
    const sys = cpuDelta(sysBefore, cpuSeconds(after, true));
    const nginxCpu = cpuDelta(nginxBefore, cpuSeconds(nginxTree));
    // Everything busy on the machine that was neither the contestant, nor nginx, nor wrk.
    const foreign = Math.max(0, busySeconds(coresBefore, coresAfter) - cpu - nginxCpu - result.cpuSeconds);
    const sample: Sample = {
      round,
      rps: result.rps,
      p50Ms: result.p50Ms,
      p99Ms: result.p99Ms,
      p999Ms: result.p999Ms,
      cpuPercent: (100 * cpu) / result.seconds,
      cpuUsPerRequest: result.requests > 0 ? (cpu * 1e6) / result.requests : 0,
      sysUsPerRequest: result.requests > 0 ? (sys * 1e6) / result.requests : 0,
      peakRssMiB: peakRssMiB(after),
      requests: result.requests,
      non2xx: result.non2xx,
      socketErrors: result.socketErrors,
      coreBusy: coreBusyPercent(coresBefore, coresAfter),
      wrkCpuPercent: (100 * result.cpuSeconds) / result.seconds,
      nginxCpuPercent: (100 * nginxCpu) / result.seconds,
      foreignPercent: (100 * foreign) / result.seconds,
      ...(hostProbeMs === undefined ? {} : { hostProbeMs }),
    };
    const expected401 = !c.baseline && s.expect === 401;
    if (!expected401 && result.non2xx > 0) row.notes.add(`${result.non2xx} non-2xx answers in run ${round}`);
    if (expected401 && result.non2xx !== result.requests) row.notes.add(`${result.requests - result.non2xx} answers were not 401 in run ${round}`);
    if (result.socketErrors > 0) row.notes.add(`${result.socketErrors} socket errors in run ${round}`);
    if (files.count > 1 && result.requests > files.count) row.notes.add(`tokens repeated: ${result.requests} requests > pool ${files.count}`);
    log(
      `  ${c.id.padEnd(14)} ${String(Math.round(result.rps)).padStart(6)} req/s  p99 ${result.p99Ms.toFixed(2)} ms  CPU ${sample.cpuPercent.toFixed(0)}%  RSS ${sample.peakRssMiB.toFixed(0)} MiB  wrk ${sample.wrkCpuPercent.toFixed(0)}%  nginx ${sample.nginxCpuPercent.toFixed(0)}%  other ${sample.foreignPercent.toFixed(0)}%`,
    );
    return sample;
  } finally {
    await running.stop();
  }
}

async function runBench(): Promise<void> {
  const scenarios = selectScenarios(opts.scenario);
  const only = opts.only?.split(',');
  if (only !== undefined) {
    const unknown = only.filter((id) => !CONTESTANTS.some((c) => c.id === id));
    if (unknown.length > 0) throw new Error(`unknown contestant ${unknown.join(', ')}`);
  }
  const selected = CONTESTANTS.filter((c) => (only === undefined ? c.optIn !== true : only.includes(c.id)));
  const baselines = selected.filter((c) => c.baseline);
  const authed = selected.filter((c) => !c.baseline);

  // Rows in table order; those that cannot run say why instead of failing.
  const rows: Row[] = [];
  const rowOf = new Map<string, Row>();
  const addRow = (scenario: string, c: Contestant, problem: string | undefined): void => {
    const row: Row = { scenario, contestant: c.id, label: c.label, problem, stopped: false, notes: new Set(), samples: [] };
    rows.push(row);
    rowOf.set(`${scenario}/${c.id}`, row);
  };
  const baselineScenario = SCENARIOS.find((s) => s.id === 'same')!;
  for (const c of baselines) addRow('baseline', c, c.unsupported(baselineScenario, ctx));
  for (const s of scenarios) for (const c of authed) addRow(s.id, c, c.unsupported(s, ctx));
  const measured = rows.filter((r) => r.problem === undefined).length;

  const pool = opts.pool !== undefined ? positive('pool', opts.pool) : defaultPool(duration);
  const distinctRsa = new Set(scenarios.filter((s) => s.tokens === 'distinct').map((s) => s.alg));
  const mintEstimate = [...distinctRsa].reduce((t, alg) => t + ((pool + warmPool(warmup, 'signed')) / (alg === 'RS256' ? 3500 : 15000)) / Math.min(nproc, 4), 0);
  const estimate = measured * runs * (warmup + duration + OVERHEAD_S) + mintEstimate + 5;
  console.log(`Portcullis bench — ${formatMachine(machine)}`);
  console.log(
    `scenarios: ${scenarios.map((s) => s.id).join(', ')} · ${runs} interleaved runs × ${duration} s (+${warmup} s warm-up) · wrk -t1 -c${connections} · ${measured} rows · estimated ${formatDuration(estimate)}`,
  );
  console.log(
    pinningEnabled()
      ? `pinning: wrk + nginx on core ${cores.gen}, a contestant on core ${cores.one}, --workers 2 on cores ${cores.two}${nproc < 3 ? ' (shared with wrk/nginx: only 2 cores)' : ''}`
      : 'pinning: off (no taskset, --no-pin, or 1 core)',
  );
  if (!flags.workers) console.log('note: serve --workers is not in this checkout; that row is n/a');

  const files = await makeTokenFiles(scenarios, pool);
  const idle = await backgroundLoad();
  if (idle > 15) console.log(`warning: before starting, other processes kept ${idle.toFixed(0)}% of a core busy; numbers will be noisy (runs with more than ${NOISY_PERCENT}% are measured again once)`);
  const started = Date.now();
  for (let round = 1; round <= runs; round++) {
    log(`round ${round}/${runs}`);
    // Rotate the order every round so that no contestant always runs first (or right after a heavy one).
    const rotate = <T>(list: readonly T[]): T[] => list.map((_, i) => list[(i + round - 1) % list.length] as T);
    for (const c of rotate(baselines)) {
      const row = rowOf.get(`baseline/${c.id}`)!;
      if (row.problem === undefined && !row.stopped) await measure(c, baselineScenario, files.get('RS256-same')!, round, row);
    }
    for (const s of scenarios) {
      log(` scenario ${s.id}: ${s.title}`);
      for (const c of rotate(authed)) {
        const row = rowOf.get(`${s.id}/${c.id}`)!;
        if (row.problem === undefined && !row.stopped) await measure(c, s, files.get(fileKey(s))!, round, row);
      }
    }
  }
  const elapsed = (Date.now() - started) / 1000;

  const probes = rows.flatMap((r) => r.samples.flatMap((x) => (x.hostProbeMs === undefined ? [] : [x.hostProbeMs])));
  const probeSummary = summarizeProbes(probes);
  const probeLine = probeSummary === undefined ? undefined : describeProbes(probeSummary, cores.one);
  const summaries = summarize(rows);
  const targets = checkTargets(rows, summaries);
  const table = textTable(summaries);
  const command = `npm run bench${process.argv.length > 2 ? ' -- ' + process.argv.slice(2).join(' ') : ''}`;
  console.log('');
  console.log(table);
  console.log('');
  console.log('Targets (Portcullis, 1 process):');
  console.log(formatTargets(targets));
  console.log('');
  if (probeLine !== undefined) console.log(probeLine);
  console.log(LEGEND);
  console.log(`measured in ${formatDuration(elapsed)} · ${command}`);

  const resultsDir = join(HERE, 'results');
  mkdirSync(resultsDir, { recursive: true });
  const meta = { machine, command, scenarios: scenarios.map((s) => ({ id: s.id, title: s.title })), runs, duration, warmup, connections, pool, pinning: pinningEnabled() ? cores : false, hostProbe: probeSummary ?? null };
  writeFileSync(join(resultsDir, 'latest.json'), JSON.stringify({ ...meta, summaries, targets, rows: rows.map((r) => ({ ...r, notes: [...r.notes] })) }, null, 2) + '\n');
  writeFileSync(
    join(resultsDir, 'latest.md'),
    [
      `# Bench results`,
      '',
      `${formatMachine(machine)}`,
      '',
      `Command: \`${command}\` — ${runs} interleaved runs × ${duration} s (+${warmup} s warm-up), wrk -t1 -c${connections}, medians. Scenarios: ${scenarios.map((s) => `\`${s.id}\` (${s.title})`).join(', ')}.`,
      '',
      ...(probeLine === undefined ? [] : [`${probeLine}.`, '']),
      markdownTable(summaries),
      '',
      LEGEND,
      '',
      'Targets (Portcullis, 1 process):',
      '',
      ...targets.map((t) => `- ${t.pass === undefined ? '–' : t.pass ? 'PASS' : 'FAIL'} ${t.target}: ${t.measured}`),
      '',
    ].join('\n'),
  );
  log(`wrote ${join('bench', 'results', 'latest.json')} and latest.md`);

  if (opts.extras) runExtras();
}

/** The other benches in bench/ (owned by others), run as extra sections when asked and present. */
function runExtras(): void {
  for (const [file, args] of [
    ['crypto-verify.ts', []],
    ['verify-path.ts', []],
    ['cel.ts', ['--quick']],
    ['logql-rewrite.ts', []],
    ['audit.ts', []],
  ] as const) {
    const path = join(HERE, file);
    if (!existsSync(path)) continue;
    console.log(`\n## extra: bench/${file}\n`);
    const result = runSync(process.execPath, [path, ...args], 300_000);
    console.log(result.out.trimEnd());
    if (result.status !== 0) console.log(`(bench/${file} exited ${result.status})`);
  }
}

/** CPU busy on the whole machine over `ms` while the bench itself is idle, in % of one core. */
async function backgroundLoad(ms = 1000): Promise<number> {
  const before = coreTimes();
  await new Promise((resolve) => setTimeout(resolve, ms));
  return (100 * busySeconds(before, coreTimes()) * 1000) / ms;
}

/** Before a run: while other processes keep more than QUIET_PERCENT of a core busy, wait (up to 15 s per run). */
async function waitForQuiet(id: string): Promise<void> {
  const started = Date.now();
  let load = await backgroundLoad(250);
  if (load <= QUIET_PERCENT || quietBudgetS <= 0) return;
  log(`  ${id.padEnd(14)} other processes use ${load.toFixed(0)}% of a core: waiting for quiet ...`);
  while (load > QUIET_PERCENT && Date.now() - started < 15_000 && quietBudgetS - (Date.now() - started) / 1000 > 0) {
    load = await backgroundLoad(1000);
  }
  quietBudgetS -= (Date.now() - started) / 1000;
}

function formatDuration(seconds: number): string {
  const m = Math.floor(seconds / 60);
  const s = Math.round(seconds % 60);
  return m > 0 ? `${m} min ${s} s` : `${s} s`;
}
