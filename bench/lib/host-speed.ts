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

/** One line on the probes of a whole bench, or undefined without any. */
export function describeProbes(probes: readonly number[], core: string | undefined): string | undefined {
  if (probes.length === 0) return undefined;
  const sorted = [...probes].sort((a, b) => a - b);
  const fastest = sorted[0]!;
  const slowest = sorted[sorted.length - 1]!;
  const median = sorted[Math.floor(sorted.length / 2)]!;
  const slowed = probes.filter((p) => p >= SLOW_HOST_FACTOR * fastest).length;
  return (
    `Host probe (a fixed workload${core === undefined ? '' : ` on core ${core}`}, before each run): fastest ${fastest.toFixed(1)} ms, ` +
    `median ${median.toFixed(1)}, slowest ${slowest.toFixed(1)} (${(slowest / fastest).toFixed(2)}×); ${slowed} of ${probes.length} runs began at ≥ ${SLOW_HOST_FACTOR}× the fastest`
  );
}
