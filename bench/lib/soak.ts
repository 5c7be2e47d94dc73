/**
 * `--soak S --distinct N [--soak-tokens invalid]`: Portcullis (1 process) under wrk load cycling N distinct
 * valid (or, with `invalid`, badly signed) RS256 tokens for S seconds after a warm-up, resident memory
 * sampled every 10 s. The memory target: with a bounded verified-token cache the RSS levels off once the
 * cache is full and stays flat; unbounded growth shows as rising peaks or a steady slope.
 */
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { CONTESTANTS } from './contestants.ts';
import type { BenchContext } from './contestants.ts';
import { freePort, httpGet, peakRssMiB, processTree, rssMiB } from './procs.ts';
import { SCENARIOS, authHeaders } from './scenarios.ts';
import { forgeFile, forgeOne, mintFile } from './tokens.ts';
import { runWrk } from './wrk.ts';

export interface SoakOptions {
  readonly ctx: BenchContext;
  readonly seconds: number;
  readonly distinct: number;
  /** `valid`: distinct valid tokens (the cache's bound); `invalid`: distinct bad signatures (failures uncached). */
  readonly tokens: 'valid' | 'invalid';
  readonly connections: number;
  readonly script: string;
  readonly log: (line: string) => void;
  /** Which Portcullis row to soak (`--only`): `portcullis`, or a variant started with other V8 flags. */
  readonly contestant: string;
}

const INTERVAL_S = 10;
/** The last third's peak above the earlier peak by more than this fraction counts as growth. */
const FLAT_GROWTH = 0.1;
/** A steady slope above this (after warm-up) is reported even while the growth is still under FLAT_GROWTH. */
const DRIFT_MIB_PER_MIN = 1;
/** Warm-up: load in windows of this length, and compare each window's peak RSS with the one before. */
const WARMUP_CHUNK_S = 60;
/** Settled: windows whose peak is at most this fraction above the highest peak of the warm-up so far ... */
const SETTLED = 0.02;
/** ... this many in a row. */
const SETTLED_WINDOWS = 2;
/** The warm-up never takes longer than this. */
const MAX_WARMUP_S = 600;

export async function runSoak(o: SoakOptions): Promise<void> {
  const contestant = CONTESTANTS.find((c) => c.id === o.contestant && c.soakable === true);
  if (contestant === undefined) throw new Error(`--soak runs one of ${CONTESTANTS.filter((c) => c.soakable === true).map((c) => c.id).join(', ')}, not ${o.contestant}`);
  const key = o.ctx.keys.keys.RS256;
  const file = join(o.ctx.dir, 'soak.tokens');
  const ttl = o.seconds + MAX_WARMUP_S + 3600;
  if (o.tokens === 'invalid') {
    forgeFile(key, 1, o.distinct, ttl, file);
  } else {
    o.log(`signing ${o.distinct} distinct RS256 tokens ...`);
    const ms = await mintFile(key, 1, o.distinct, ttl, file);
    o.log(`  ... ${(ms / 1000).toFixed(1)} s`);
  }
  const scenario = SCENARIOS.find((s) => s.id === (o.tokens === 'invalid' ? 'invalid' : 'distinct'))!;
  // The admin listener gives V8's own view beside RSS (prom-client's default metrics), so that a step in
  // RSS can be told apart: heap spaces growing, external memory (Buffers), or neither (the allocator).
  const adminPort = await freePort();
  const running = await contestant.start(scenario, { ...o.ctx, adminPort });
  try {
    const check = await httpGet(running.port, '/', {});
    if (check.status !== 401) throw new Error(`Portcullis answered ${check.status} without a token`);
    if (o.tokens === 'invalid') {
      const forged = await httpGet(running.port, '/', authHeaders(forgeOne(key, 0, ttl)));
      if (forged.status !== 401) throw new Error(`Portcullis answered ${forged.status} to a forged token`);
    }
    // Each wrk run resumes where the previous one stopped in the token file, so the token order is one
    // continuous cycle from warm-up to the end, as with a single run.
    let sent = 0;
    const load = async (seconds: number) => {
      const result = await runWrk({ port: running.port, path: '/', tokenFile: file, script: o.script, seconds, connections: o.connections, cpus: o.ctx.cores.gen, offset: sent });
      sent += result.requests;
      return result;
    };
    const rss = () => rssMiB(processTree(running.pid));

    console.log(`soak: ${contestant.label} · ${o.distinct} distinct ${o.tokens} RS256 tokens cycled · wrk -t1 -c${o.connections} · warm-up until RSS settles, then ${o.seconds} s · RSS every ${INTERVAL_S} s`);
    console.log(await warmUp(load, rss, () => sent, o.distinct));

    const series: Sample[] = [];
    const held: Sample[] = [];
    const sample = async (t: number): Promise<void> => {
      const value = rss();
      series.push({ t, mib: value });
      const heap = await heapSample(adminPort);
      if (heap !== undefined && heap.held !== undefined) held.push({ t, mib: heap.held });
      console.log(`  t=${String(t).padStart(5)} s  RSS ${value.toFixed(1)} MiB${heap?.line ?? ''}`);
    };
    await sample(0);
    const result = await sampleDuring(load(o.seconds), o.seconds, sample);
    const peak = peakRssMiB(processTree(running.pid));
    console.log(
      `load: ${Math.round(result.rps)} req/s, p99 ${result.p99Ms.toFixed(2)} ms, ${result.non2xx} non-2xx${o.tokens === 'invalid' ? ` of ${result.requests}${result.non2xx === result.requests ? ' (every forged token refused)' : ` — WARNING: ${result.requests - result.non2xx} forged tokens were let through`}` : ''}, ${result.socketErrors} socket errors; peak RSS (VmHWM) ${peak.toFixed(1)} MiB`,
    );
    console.log(verdict('RSS', series));
    // The young generation resizes itself in steps (8 to 128 MiB here) and RSS follows; what a leak grows
    // is what survives: old space, large objects, external memory (session 10).
    if (held.length === series.length) console.log(verdict('old + large-object space + external', held));
    else console.log(`verdict (old + large-object space + external): not judged, /metrics answered ${held.length} of ${series.length} samples`);
  } finally {
    await running.stop();
  }
}

/**
 * Load before the measured window until the process has reached its working size: at least one full pass
 * over the tokens (the verified-token cache and the doorkeeper fill during the first), and then until
 * SETTLED_WINDOWS windows of WARMUP_CHUNK_S in a row have not raised the highest peak RSS by more than
 * SETTLED. V8 sizes its heap by the allocation rate it sees, and at this load took ~200 s to reach its size (session 5: 273 → 400 MiB, then
 * level for 1000 s); judging from the start measured that growth, not the proxy's. Bounded by MAX_WARMUP_S:
 * a process that never settles is measured anyway, and the line says so.
 */
async function warmUp(
  load: (seconds: number) => Promise<{ rps: number }>,
  rss: () => number,
  sent: () => number,
  distinct: number,
): Promise<string> {
  const peaks: number[] = [];
  let highest = 0;
  let level = 0;
  let elapsed = 0;
  while (elapsed < MAX_WARMUP_S) {
    let peak = rss();
    const result = await sampleDuring(load(WARMUP_CHUNK_S), WARMUP_CHUNK_S, () => {
      peak = Math.max(peak, rss());
    });
    elapsed += WARMUP_CHUNK_S;
    peaks.push(peak);
    // A window without a top of the sawtooth has a lower peak: only a window that does not raise the
    // highest peak so far counts, and it takes SETTLED_WINDOWS of them in a row.
    level = highest > 0 && peak <= highest * (1 + SETTLED) ? level + 1 : 0;
    highest = Math.max(highest, peak);
    console.log(`  warm-up ${String(elapsed).padStart(4)} s  peak RSS ${peak.toFixed(1)} MiB  ${Math.round(result.rps)} req/s`);
    if (sent() >= distinct && level >= SETTLED_WINDOWS) {
      return `warm-up: settled after ${elapsed} s (${SETTLED_WINDOWS} windows of ${WARMUP_CHUNK_S} s within ${SETTLED * 100}% of the highest peak, ${highest.toFixed(1)} MiB; ${sent()} requests, ≥ one pass over the tokens)`;
    }
  }
  return `warm-up: NOT settled after ${MAX_WARMUP_S} s (peaks ${peaks.map((p) => p.toFixed(0)).join(', ')} MiB); measuring anyway`;
}

/**
 * V8's sizes from the proxy's `/metrics`: heap committed and used, external (Buffers, outside the heap),
 * and each heap space's committed size where it is over 1 MiB; `held` is old + large-object space +
 * external, in MiB. undefined when the scrape fails: RSS is still judged.
 */
async function heapSample(adminPort: number): Promise<{ line: string; held: number | undefined } | undefined> {
  try {
    const { status, body } = await httpGet(adminPort, '/metrics', {});
    if (status !== 200) return undefined;
    // One pass over the exposition: series text (name and labels) to value in MiB.
    const values = new Map<string, number>();
    for (const m of body.matchAll(/^portcullis_(\S+) (\S+)$/gm)) values.set(m[1]!, Number(m[2]) / 2 ** 20);
    const f = (v: number | undefined) => (v === undefined ? '?' : v.toFixed(1));
    const space = (name: string) => values.get(`nodejs_heap_space_size_total_bytes{space="${name}"}`);
    const spaces = [...values]
      .map(([series, size]) => [/^nodejs_heap_space_size_total_bytes\{space="(\w+)"\}$/.exec(series)?.[1], size] as const)
      .filter(([name, size]) => name !== undefined && size >= 1)
      .map(([name, size]) => `${name} ${size.toFixed(1)}`);
    const old = space('old');
    const external = values.get('nodejs_external_memory_bytes');
    const held = old === undefined || external === undefined ? undefined : old + (space('large_object') ?? 0) + external;
    const line = `  heap ${f(values.get('nodejs_heap_size_total_bytes'))} (used ${f(values.get('nodejs_heap_size_used_bytes'))}), external ${f(external)} MiB; spaces ${spaces.join(', ')}`;
    return { line, held };
  } catch {
    return undefined;
  }
}

/** Awaits `run` (a wrk run of `seconds`), calling `each(t)` every INTERVAL_S while it lasts. */
async function sampleDuring<T>(run: Promise<T>, seconds: number, each: (t: number) => void | Promise<void>): Promise<T> {
  let finished = false;
  void run.finally(() => (finished = true)).catch(() => undefined);
  const started = Date.now();
  for (let next = INTERVAL_S; next <= seconds; next += INTERVAL_S) {
    await sleep(Math.max(0, started + next * 1000 - Date.now()));
    if (finished) break;
    await each(next);
  }
  return run;
}

/**
 * Flat or not, over the measured window (after the warm-up). Between major collections V8 lets
 * old-generation garbage pile up (evicted cache entries had been promoted) and then frees it in bulk, so a
 * bounded process's RSS is a sawtooth whose period can be minutes: any single sample may sit on a rising
 * edge. A leak raises the PEAKS. So the last third's highest sample is compared with the highest before it,
 * and a least-squares slope catches a steady drift that has not yet crossed the growth threshold.
 *
 * The slope is fitted to the window's second half. A window that began in a trough and then climbed to a
 * plateau (sessions 6 and 9, forged tokens) had a whole-window slope that stays above the threshold however
 * long the run, so "run longer" could never settle it; a leak climbs at the same rate in both halves, a
 * plateau does not. The whole-window slope is still printed.
 */
function verdict(what: string, series: readonly Sample[]): string {
  if (series.length < 6) return `verdict (${what}): too short to judge (${series.length} samples; need 6, i.e. --soak ${5 * INTERVAL_S} or more)`;
  const split = Math.floor((series.length * 2) / 3);
  const peakBefore = Math.max(...series.slice(0, split).map((s) => s.mib));
  const peakEnd = Math.max(...series.slice(split).map((s) => s.mib));
  const growth = (peakEnd - peakBefore) / peakBefore;
  const perMinute = slopePerMinute(series.slice(Math.floor(series.length / 2)));
  const label = growth > FLAT_GROWTH ? 'GROWING' : perMinute > DRIFT_MIB_PER_MIN ? 'DRIFTING (run longer to tell a plateau from a leak)' : 'FLAT';
  const low = Math.min(...series.map((s) => s.mib));
  return `verdict (${what}): ${label} — peak ${peakBefore.toFixed(1)} MiB to ${series[split]!.t} s, ${peakEnd.toFixed(1)} MiB after (${growth >= 0 ? '+' : ''}${(growth * 100).toFixed(1)}%), lowest ${low.toFixed(1)} MiB, slope over the second half ${perMinute.toFixed(2)} MiB/min (whole window ${slopePerMinute(series).toFixed(2)}); flat means the last third's peak ≤ +${FLAT_GROWTH * 100}% over the earlier peak and the second half's slope ≤ ${DRIFT_MIB_PER_MIN} MiB/min, over the measured window after warm-up`;
}

/** One reading of the measured window: seconds since it began, MiB of what is judged. */
interface Sample {
  readonly t: number;
  readonly mib: number;
}

/** Least-squares slope over time, in MiB per minute. */
function slopePerMinute(series: readonly Sample[]): number {
  const n = series.length;
  const meanT = series.reduce((a, s) => a + s.t, 0) / n;
  const meanR = series.reduce((a, s) => a + s.mib, 0) / n;
  return (60 * series.reduce((a, s) => a + (s.t - meanT) * (s.mib - meanR), 0)) / series.reduce((a, s) => a + (s.t - meanT) ** 2, 0);
}
