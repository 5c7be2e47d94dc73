/**
 * `--soak S --distinct N`: Portcullis (1 process) under wrk load cycling N distinct valid RS256 tokens for
 * S seconds, resident memory sampled every 10 s. The memory target: with a bounded verified-token cache the
 * RSS levels off once the cache is full and stays flat; unbounded growth shows as a steady slope.
 */
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { CONTESTANTS } from './contestants.ts';
import type { BenchContext } from './contestants.ts';
import { httpGet, peakRssMiB, processTree, rssMiB } from './procs.ts';
import { SCENARIOS } from './scenarios.ts';
import { mintFile } from './tokens.ts';
import { runWrk } from './wrk.ts';

export interface SoakOptions {
  readonly ctx: BenchContext;
  readonly seconds: number;
  readonly distinct: number;
  readonly connections: number;
  readonly script: string;
  readonly log: (line: string) => void;
}

const INTERVAL_S = 10;
/** The last third's peak above the earlier peak by more than this fraction counts as growth. */
const FLAT_GROWTH = 0.1;
/** A steady slope above this (after warm-up) is reported even while the growth is still under FLAT_GROWTH. */
const DRIFT_MIB_PER_MIN = 1;

export async function runSoak(o: SoakOptions): Promise<void> {
  const key = o.ctx.keys.keys.RS256;
  const file = join(o.ctx.dir, 'soak.tokens');
  o.log(`signing ${o.distinct} distinct RS256 tokens ...`);
  const ms = await mintFile(key, 1, o.distinct, o.seconds + 3600, file);
  o.log(`  ... ${(ms / 1000).toFixed(1)} s`);
  const scenario = SCENARIOS.find((s) => s.id === 'distinct')!;
  const contestant = CONTESTANTS.find((c) => c.id === 'portcullis')!;
  const running = await contestant.start(scenario, o.ctx);
  try {
    const check = await httpGet(running.port, '/', {});
    if (check.status !== 401) throw new Error(`Portcullis answered ${check.status} without a token`);
    console.log(`soak: Portcullis (1 process) · ${o.distinct} distinct RS256 tokens cycled · wrk -t1 -c${o.connections} · ${o.seconds} s · RSS every ${INTERVAL_S} s`);
    const series: Array<{ t: number; rss: number }> = [];
    const sample = (t: number): void => {
      const rss = rssMiB(processTree(running.pid));
      series.push({ t, rss });
      console.log(`  t=${String(t).padStart(5)} s  RSS ${rss.toFixed(1)} MiB`);
    };
    sample(0);
    const started = Date.now();
    const load = runWrk({ port: running.port, path: '/', tokenFile: file, script: o.script, seconds: o.seconds, connections: o.connections, cpus: o.ctx.cores.gen });
    let finished = false;
    void load.finally(() => (finished = true)).catch(() => undefined);
    for (let next = INTERVAL_S; next <= o.seconds; next += INTERVAL_S) {
      await sleep(Math.max(0, started + next * 1000 - Date.now()));
      if (finished) break;
      sample(next);
    }
    const result = await load;
    const peak = peakRssMiB(processTree(running.pid));
    console.log(
      `load: ${Math.round(result.rps)} req/s, p99 ${result.p99Ms.toFixed(2)} ms, ${result.non2xx} non-2xx, ${result.socketErrors} socket errors; peak RSS (VmHWM) ${peak.toFixed(1)} MiB`,
    );
    console.log(verdict(series, o.distinct / Math.max(1, result.rps)));
  } finally {
    await running.stop();
  }
}

/**
 * Flat or not, judged after the warm-up: the later of 30 s and one full pass over the tokens (a cache fills
 * during the first pass). Between major collections V8 lets old-generation garbage pile up (evicted cache
 * entries had been promoted) and then frees it in bulk, so a bounded process's RSS is a sawtooth whose
 * period can be minutes: any single sample may sit on a rising edge. A leak raises the PEAKS. So the last
 * third's highest sample is compared with the highest before it, and a least-squares slope catches a
 * steady drift that has not yet crossed the growth threshold.
 */
function verdict(series: ReadonlyArray<{ t: number; rss: number }>, passSeconds: number): string {
  const settle = Math.max(30, Math.ceil(passSeconds / INTERVAL_S) * INTERVAL_S);
  const settled = series.filter((s) => s.t >= settle);
  if (settled.length < 3) {
    return `verdict: too short to judge (need samples after ${settle} s: warm-up and one pass over the tokens, ~${passSeconds.toFixed(0)} s)`;
  }
  const split = Math.floor((settled.length * 2) / 3);
  const peakBefore = Math.max(...settled.slice(0, split).map((s) => s.rss));
  const peakEnd = Math.max(...settled.slice(split).map((s) => s.rss));
  const growth = (peakEnd - peakBefore) / peakBefore;
  const n = settled.length;
  const meanT = settled.reduce((a, s) => a + s.t, 0) / n;
  const meanR = settled.reduce((a, s) => a + s.rss, 0) / n;
  const slope =
    settled.reduce((a, s) => a + (s.t - meanT) * (s.rss - meanR), 0) / settled.reduce((a, s) => a + (s.t - meanT) ** 2, 0);
  const perMinute = slope * 60;
  const label = growth > FLAT_GROWTH ? 'GROWING' : perMinute > DRIFT_MIB_PER_MIN ? 'DRIFTING (run longer to tell a plateau from a leak)' : 'FLAT';
  const low = Math.min(...settled.map((s) => s.rss));
  return `verdict: ${label} — peak ${peakBefore.toFixed(1)} MiB from ${settle} s to ${settled[split]!.t} s, ${peakEnd.toFixed(1)} MiB after (${growth >= 0 ? '+' : ''}${(growth * 100).toFixed(1)}%), lowest ${low.toFixed(1)} MiB, slope ${perMinute.toFixed(2)} MiB/min; flat means the last third's peak ≤ +${FLAT_GROWTH * 100}% over the earlier peak and ≤ ${DRIFT_MIB_PER_MIN} MiB/min, after warm-up and one pass over the tokens`;
}
