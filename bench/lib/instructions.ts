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
    const perRequest = instructionsIn(out) / measure.length;
    o.log(`  ${contestant.id}: ${Math.round(perRequest).toLocaleString('en')} instructions per request ${JSON.stringify(statuses)}`);
    rows.push({ scenario: contestant.baseline ? 'baseline' : scenario.id, contestant: contestant.id, label: contestant.label, perRequest, statuses });
  });
  return rows;
}

/** The table: instructions per request, and each row over the lean proxy's and the pass-through's. */
export function formatInstructions(rows: readonly InstructionsRow[], scenarios: readonly Scenario[]): string {
  const lines = [
    '| scenario | contestant | instructions / request | lean ÷ row | pass-through ÷ row | answers |',
    '|---|---|---:|---:|---:|---|',
  ];
  for (const scenario of ['baseline', ...scenarios.map((s) => s.id)]) {
    const mine = rows.filter((r) => r.scenario === scenario);
    const lean = mine.find((r) => r.contestant === 'lean-verify')?.perRequest;
    const pass = rows.find((r) => r.contestant === 'passthrough')?.perRequest;
    for (const r of mine) {
      const ratio = (base: number | undefined) => (base === undefined ? '' : (base / r.perRequest).toFixed(3));
      const answers = Object.entries(r.statuses).map(([status, n]) => `${n}× ${status}`).join(', ');
      lines.push(`| ${scenario} | ${r.label} | ${Math.round(r.perRequest).toLocaleString('en')} | ${ratio(lean)} | ${ratio(pass)} | ${answers} |`);
    }
  }
  return lines.join('\n');
}

function control(pid: number, args: string[]): void {
  const result = runSync('callgrind_control', [...args, String(pid)]);
  if (result.status !== 0) throw new Error(`callgrind_control ${args.join(' ')} ${pid} failed: ${result.out}`);
}

/** Sum of the `totals:` lines of every dump callgrind wrote for `out` (`out`, `out.1`, ...). */
function instructionsIn(out: string): number {
  let total = 0;
  const name = basename(out);
  for (const file of readdirSync(dirname(out))) {
    if (file !== name && !file.startsWith(`${name}.`)) continue;
    const match = /^totals:\s+(\d+)/m.exec(readFileSync(join(dirname(out), file), 'utf8'));
    if (match !== null) total += Number(match[1]);
  }
  if (total === 0) throw new Error(`callgrind recorded nothing in ${out}*`);
  return total;
}
