/**
 * `--instructions`: each Node contestant under valgrind's callgrind, driven with a fixed number of requests,
 * reports machine instructions per request. Unlike req/s on a shared 2-core VM (±10-20% between runs), the
 * count is the same from one run to the next (±0.1%), so it settles A/B questions of a few hundred
 * instructions that wrk cannot see. It does not see what instructions do not: cache misses, syscall time in
 * the kernel, the other core. It complements the wrk table; it does not replace it.
 *
 * Per contestant: start it under `valgrind --tool=callgrind --instr-atstart=no` (start-up runs
 * uninstrumented), send a warm-up so V8 has optimised the request path, switch instrumentation on with
 * `callgrind_control -i on`, send the measured requests, switch it off, dump, and sum the dump's totals.
 *
 * The count weighs signature checks several times heavier than the CPU does. valgrind's CPU lacks ADX
 * and SHA-NI, so OpenSSL takes its portable big-number and SHA-256 code: one RS256 check counts ~300k
 * instructions in OpenSSL (`bn_sqr8x_internal`), where natively the MULX/ADX code (`bn_sqrx8x_internal`)
 * takes ~20 µs, about what 60k instructions of the proxy's own code take. Hence the OpenSSL column, and
 * a ratio without it: the proxies' own cost, which is what a real CPU spends most of its time on.
 */
import { readFileSync, readdirSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import type { BenchContext } from './contestants.ts';
import { createDriver, forEachCount } from './drive.ts';
import type { CountPlan } from './drive.ts';
import { runSync } from './procs.ts';
import type { Scenario } from './scenarios.ts';

/** Compilation runs on a thread callgrind counts, hence the warm-up of new tokens where tokens are new. */
export type InstructionsOptions = CountPlan;

export interface InstructionsRow {
  readonly scenario: string;
  readonly contestant: string;
  readonly label: string;
  /** Instructions per request, every thread of the process. */
  readonly perRequest: number;
  /** Of which V8's garbage collector, its optimising compilers and OpenSSL (GC_SYMBOL, JIT_SYMBOL, OPENSSL_SYMBOL). */
  readonly gcPerRequest: number;
  readonly jitPerRequest: number;
  readonly opensslPerRequest: number;
  /** Answers by status code during the measured requests. */
  readonly statuses: Readonly<Record<string, number>>;
}

/** Node start-up under valgrind takes tens of seconds (the JIT's code is translated as it appears). */
const START_TIMEOUT_MS = 300_000;

export async function runInstructions(o: InstructionsOptions): Promise<InstructionsRow[]> {
  const rows: InstructionsRow[] = [];
  await forEachCount(o, async (contestant, scenario, warm, measure) => {
    const out = join(o.ctx.dir, `callgrind-${contestant.id}-${scenario.id}.out`);
    const ctx: BenchContext = {
      ...o.ctx,
      wrap: {
        startTimeoutMs: START_TIMEOUT_MS,
        command: (cmd, args) => [
          'valgrind',
          ['--tool=callgrind', '--smc-check=all-non-file', '--instr-atstart=no', `--callgrind-out-file=${out}`, cmd, ...args],
        ],
      },
    };
    o.log(`  ${contestant.id}: starting under callgrind ...`);
    const running = await contestant.start(scenario, ctx);
    const driver = createDriver(running.port, scenario.path);
    let statuses: Record<string, number>;
    try {
      await driver.send(warm);
      control(running.pid, ['-i', 'on']);
      statuses = await driver.send(measure);
      control(running.pid, ['-i', 'off']);
      control(running.pid, ['-d']);
    } finally {
      driver.close();
      await running.stop();
    }
    const costs = instructionsIn(out);
    const perRequest = costs.total / measure.length;
    const gcPerRequest = costs.gc / measure.length;
    const jitPerRequest = costs.jit / measure.length;
    const opensslPerRequest = costs.openssl / measure.length;
    o.log(`  ${contestant.id}: ${n(perRequest)} instructions per request (GC ${n(gcPerRequest)}, JIT ${n(jitPerRequest)}, OpenSSL ${n(opensslPerRequest)}) ${JSON.stringify(statuses)}`);
    rows.push({ scenario: contestant.baseline ? 'baseline' : scenario.id, contestant: contestant.id, label: contestant.label, perRequest, gcPerRequest, jitPerRequest, opensslPerRequest, statuses });
  });
  return rows;
}

/**
 * The table: instructions per request, and each row over the lean proxy's and the pass-through's, with
 * and without the optimising compilers. Compiling is warm-up that reached the window (natively, after
 * 40000 requests, --trace-opt shows none in the next 10000), so the second pair is the steady state's
 * ratio; the garbage collector stays in both, as a proxy in service pays it. The last ratio also leaves
 * out OpenSSL (see the file comment): the proxy's own cost over lean's.
 */
export function formatInstructions(rows: readonly InstructionsRow[], scenarios: readonly Scenario[]): string {
  const lines = [
    '| scenario | contestant | instructions / request | of which GC | of which JIT | of which OpenSSL | lean ÷ row | pass-through ÷ row | lean ÷ row, JIT excluded | pass-through ÷ row, JIT excluded | lean ÷ row, JIT and OpenSSL excluded | answers |',
    '|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|',
  ];
  for (const scenario of ['baseline', ...scenarios.map((s) => s.id)]) {
    const mine = rows.filter((r) => r.scenario === scenario);
    const lean = mine.find((r) => r.contestant === 'lean-verify');
    const pass = rows.find((r) => r.contestant === 'passthrough');
    for (const r of mine) {
      const ratio = (base: InstructionsRow | undefined, without: Excluded) =>
        base === undefined ? '' : (own(base, without) / own(r, without)).toFixed(3);
      const answers = Object.entries(r.statuses).map(([status, count]) => `${count}× ${status}`).join(', ');
      lines.push(
        `| ${scenario} | ${r.label} | ${n(r.perRequest)} | ${n(r.gcPerRequest)} | ${n(r.jitPerRequest)} | ${n(r.opensslPerRequest)} | ${ratio(lean, 'none')} | ${ratio(pass, 'none')} | ${ratio(lean, 'jit')} | ${ratio(pass, 'jit')} | ${ratio(lean, 'jit+openssl')} | ${answers} |`,
      );
    }
  }
  return lines.join('\n');
}

type Excluded = 'none' | 'jit' | 'jit+openssl';

/** A row's instructions per request less what `without` names. */
function own(row: InstructionsRow, without: Excluded): number {
  return row.perRequest - (without === 'none' ? 0 : row.jitPerRequest) - (without === 'jit+openssl' ? row.opensslPerRequest : 0);
}

function n(x: number): string {
  return Math.round(x).toLocaleString('en');
}

function control(pid: number, args: string[]): void {
  const result = runSync('callgrind_control', [...args, String(pid)]);
  if (result.status !== 0) throw new Error(`callgrind_control ${args.join(' ')} ${pid} failed: ${result.out}`);
}

/** Instructions in every dump callgrind wrote for `out` (`out`, `out.1`, ...), and how many went to V8's heap and compilers and to OpenSSL. */
function instructionsIn(out: string): Costs {
  const costs = { total: 0, gc: 0, jit: 0, openssl: 0 };
  const name = basename(out);
  for (const file of readdirSync(dirname(out))) {
    if (file !== name && !file.startsWith(`${name}.`)) continue;
    const text = readFileSync(join(dirname(out), file), 'utf8');
    const match = /^totals:\s+(\d+)/m.exec(text);
    if (match === null) continue;
    costs.total += Number(match[1]);
    const split = splitCosts(text);
    costs.gc += split.gc;
    costs.jit += split.jit;
    costs.openssl += split.openssl;
  }
  if (costs.total === 0) throw new Error(`callgrind recorded nothing in ${out}*`);
  return costs;
}

interface Costs {
  readonly total: number;
  readonly gc: number;
  readonly jit: number;
  readonly openssl: number;
}

/**
 * V8's garbage collector and its optimising compilers, by symbol (node's binary keeps its C++ symbols).
 * Both run in bursts: a major collection or a burst of recompiles lands in a 5000-request window or not,
 * and moved one row by 3% between two counts of the same code. The columns say when that happened.
 */
const GC_SYMBOL = /v8::internal::(?:\w*(?:Scaveng|Marking|MarkCompact|Sweep|Evacuat|RememberedSet|StringTableCleaner)|Heap::|.*IterateObjectCache)|heap::base::|cppgc::/;
const JIT_SYMBOL = /v8::internal::(?:compiler::|maglev::|turboshaft::|Pipeline|OptimizingCompile)/;
/**
 * OpenSSL, linked into node: its public names are upper-case prefixes (`BN_`, `EVP_`, `RSA_`, `OPENSSL_`),
 * its internal ones lower-case (`bn_`, `ossl_`, `sha256_block_data_order_avx2`). node's and V8's own symbols
 * are C++ names with `::`, libc's are plain lower-case (`malloc`), V8's builtins `Builtins_`, so none match.
 * Self cost only: the malloc and free OpenSSL calls count as libc's. On a loop of 1000 RS256 checks this
 * took 300k of the 329k instructions each check added. P-256's assembly has internal routines named with
 * leading underscores (`__ecp_nistz256_mul_montq`), allowed before every prefix, and Ed25519's field and
 * group arithmetic is `fe_*`, `ge_*`, `sc_*` and `slide`. Until session 11 those were missed: ~687k of an
 * ES256 check's 992k and ~1.42M of an EdDSA check's 1.46M were left out of the column. An RS256 check
 * runs none of them (323.7k before and after).
 */
const OPENSSL_SYMBOL = /^(?:[A-Z][A-Z0-9]*_\w|_*(?:bn|ossl|evp|rsa|rsaz|ec|ecp|ecx|ecdsa|sha\d+|x25519|ed25519|asn1|pkey|int_rsa|bin2bn|bn2binpad|getrn|fe|fe51|fe64|ge|sc|slide)(?:_|$)|\w*_block_data_order)/;

/** Self cost by function category in one callgrind dump. */
function splitCosts(text: string): { gc: number; jit: number; openssl: number } {
  const out = { gc: 0, jit: 0, openssl: 0 };
  for (const [fn, ir] of selfCosts(text)) {
    const kind = GC_SYMBOL.test(fn) ? 'gc' : JIT_SYMBOL.test(fn) ? 'jit' : OPENSSL_SYMBOL.test(fn) ? 'openssl' : undefined;
    if (kind !== undefined) out[kind] += ir;
  }
  return out;
}

/**
 * Self instructions by function name in one callgrind dump (the raw file, not callgrind_annotate's print,
 * whose layout is not an interface). A function is named in full at its first `fn=(id)` or `cfn=(id)` and
 * by id after; cost lines after `fn=` are that function's own, except the line after `calls=`, which is the
 * callee's inclusive cost. Every instruction is counted once, so the values add up to the dump's total.
 * Code without a symbol, such as V8's compiled JavaScript, is named by its address (`0x…`).
 */
export function selfCosts(text: string): Map<string, number> {
  const names = new Map<string, string>();
  const costs = new Map<string, number>();
  let fn: string | undefined;
  let own = 0;
  let skipNext = false;
  const flush = () => {
    if (fn !== undefined && own !== 0) costs.set(fn, (costs.get(fn) ?? 0) + own);
    own = 0;
  };
  for (const line of text.split('\n')) {
    const c = line.charCodeAt(0);
    if (c >= 48 && c <= 57 || c === 43 || c === 45 || c === 42) {
      if (skipNext) skipNext = false;
      else if (fn !== undefined) own += Number(line.slice(line.indexOf(' ') + 1));
    } else if (line.startsWith('fn=') || line.startsWith('cfn=')) {
      const m = /^c?fn=\((\d+)\)(?: (.*))?$/.exec(line);
      if (m === null) continue;
      if (m[2] !== undefined) names.set(m[1]!, m[2]);
      if (line.startsWith('fn=')) {
        flush();
        fn = names.get(m[1]!) ?? `(${m[1]})`;
      }
    } else if (line.startsWith('calls=')) {
      skipNext = true;
    }
  }
  flush();
  return costs;
}
