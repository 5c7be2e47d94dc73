/**
 * How fast the host runs a fixed piece of work right now, on the contestants' core, just before each
 * measured run. On a shared VM the hypervisor can slow one vCPU for seconds at a time (another tenant on
 * its SMT sibling, a frequency change) while /proc inside shows no steal and no load: on session 12's host
 * this workload took 13.8–25.1 ms on an idle core, in bursts, independently on each core. The harness
 * cannot prevent that, so it records it: each run's probe goes in latest.json and the table's header gives
 * their spread. The probe is taken before the run, and the bursts come and go within a run, so one run's
 * probe does not tell whether that run was slowed (session 12: 17.9 ms before a run at 2.3× the CPU per
 * request of the same row's fast run); the spread over the whole bench says whether the host was steady.
 */
import { runSync } from './procs.ts';
import { median } from './report.ts';

/**
 * SHA-256 over 4 MiB and 3000 JSON round trips, three times after one warm-up, timed inside the child so
 * that Node's start-up is not counted: native and JavaScript work, as in a proxy.
 */
const WORKLOAD = `
const { createHash } = require('node:crypto');
const data = Buffer.alloc(1 << 20, 7);
const obj = { a: 'x'.repeat(100), b: [1, 2, 3], c: { d: 'y'.repeat(50) } };
const work = () => {
  const h = createHash('sha256');
  for (let i = 0; i < 4; i++) h.update(data);
  h.digest();
  let n = 0;
  for (let i = 0; i < 3000; i++) n += JSON.parse(JSON.stringify(obj)).a.length;
  return n;
};
work();
const t = process.hrtime.bigint();
for (let i = 0; i < 3; i++) work();
process.stdout.write(String(Number(process.hrtime.bigint() - t) / 1e6));
`;

/** A run whose probe took this many times the fastest probe began on a slowed host. */
export const SLOW_HOST_FACTOR = 1.3;

/**
 * Milliseconds the workload took, run by `node` on `core` (taskset) or unpinned; undefined when the
 * probe could not run (the bench goes on without it).
 */
export function probeHost(node: string, core: string | undefined): number | undefined {
  const [cmd, args] = core === undefined ? [node, ['-e', WORKLOAD]] : ['taskset', ['-c', core, node, '-e', WORKLOAD]];
  const result = runSync(cmd, args, 30_000);
  const ms = Number(result.out.trim());
  return result.status === 0 && Number.isFinite(ms) && ms > 0 ? ms : undefined;
}

export interface ProbeSummary {
  readonly fastestMs: number;
  readonly medianMs: number;
  readonly slowestMs: number;
  /** Runs whose probe took SLOW_HOST_FACTOR or more times the fastest. */
  readonly slowed: number;
  readonly runs: number;
}

/** The probes of a whole bench, or undefined without any. */
export function summarizeProbes(probes: readonly number[]): ProbeSummary | undefined {
  if (probes.length === 0) return undefined;
  const fastestMs = Math.min(...probes);
  return {
    fastestMs,
    medianMs: median(probes),
    slowestMs: Math.max(...probes),
    slowed: probes.filter((p) => p >= SLOW_HOST_FACTOR * fastestMs).length,
    runs: probes.length,
  };
}

/** One line for the table's header. */
export function describeProbes(s: ProbeSummary, core: string | undefined): string {
  return (
    `Host probe (a fixed workload${core === undefined ? '' : ` on core ${core}`}, before each run): fastest ${s.fastestMs.toFixed(1)} ms, ` +
    `median ${s.medianMs.toFixed(1)}, slowest ${s.slowestMs.toFixed(1)} (${(s.slowestMs / s.fastestMs).toFixed(2)}×); ${s.slowed} of ${s.runs} runs began at ≥ ${SLOW_HOST_FACTOR}× the fastest`
  );
}
