/**
 * Aggregation (median of the interleaved runs), the one table (text for the terminal, markdown for the
 * README / results file), and the targets from the performance issue checked against the table.
 */

export interface Sample {
  readonly round: number;
  readonly rps: number;
  readonly p50Ms: number;
  readonly p99Ms: number;
  readonly p999Ms: number;
  /** CPU of the contestant's process tree over the run, in percent of one core. */
  readonly cpuPercent: number;
  readonly cpuUsPerRequest: number;
  /** The part of cpuUsPerRequest spent in the kernel (stime). */
  readonly sysUsPerRequest: number;
  readonly peakRssMiB: number;
  readonly requests: number;
  readonly non2xx: number;
  readonly socketErrors: number;
  /** Busy percent per core over the run (core 0: wrk + nginx when pinned). */
  readonly coreBusy: readonly number[];
  readonly wrkCpuPercent: number;
  readonly nginxCpuPercent: number;
  /** CPU used meanwhile by processes that are not part of the bench, in % of one core. */
  readonly foreignPercent: number;
  /** Milliseconds the host probe took just before the run (host-speed.ts), when it could run. */
  readonly hostProbeMs?: number;
}

export interface Row {
  /** Scenario id, or "baseline" for the rows that do not authenticate. */
  readonly scenario: string;
  readonly contestant: string;
  readonly label: string;
  /** Why it could not run at all ("n/a (...)"); it then has no numbers. */
  readonly problem: string | undefined;
  /** Failed in some run (the reason is in `notes`): not retried. */
  stopped: boolean;
  readonly notes: Set<string>;
  readonly samples: Sample[];
}

export interface Summary {
  readonly scenario: string;
  readonly contestant: string;
  readonly label: string;
  readonly runs: number;
  readonly problem: string | undefined;
  readonly notes: string[];
  readonly rps?: number;
  readonly rpsMin?: number;
  readonly rpsMax?: number;
  readonly vsPassthrough?: number;
  readonly p50Ms?: number;
  readonly p99Ms?: number;
  readonly addedP99Ms?: number;
  readonly cpuPercent?: number;
  readonly cpuUsPerRequest?: number;
  readonly sysUsPerRequest?: number;
  readonly peakRssMiB?: number;
  readonly genCoreBusy?: number;
  readonly wrkCpuPercent?: number;
  readonly nginxCpuPercent?: number;
  readonly foreignPercent?: number;
}

export function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  if (sorted.length === 0) return Number.NaN;
  return sorted.length % 2 === 1 ? (sorted[mid] as number) : ((sorted[mid - 1] as number) + (sorted[mid] as number)) / 2;
}

/**
 * Median over rounds of `a`'s req/s divided by `b`'s in the same round. Pairing by round cancels most of the
 * slow drift of a shared VM's speed, which moves every row of a round together (±20% between rounds here).
 */
export function pairedRatio(a: Row | undefined, b: Row | undefined): number | undefined {
  const ratios = roundRatios(a, b);
  return ratios.length > 0 ? median(ratios) : undefined;
}

/** `a`'s req/s over `b`'s, one ratio per round both ran in. */
export function roundRatios(a: Row | undefined, b: Row | undefined): number[] {
  if (a === undefined || b === undefined) return [];
  const ratios: number[] = [];
  for (const sample of a.samples) {
    const other = b.samples.find((s) => s.round === sample.round);
    if (other !== undefined && other.rps > 0) ratios.push(sample.rps / other.rps);
  }
  return ratios;
}

export function summarize(rows: readonly Row[]): Summary[] {
  const passthrough = rows.find((r) => r.contestant === 'passthrough' && r.samples.length > 0);
  const ptP99 = passthrough ? median(passthrough.samples.map((s) => s.p99Ms)) : undefined;
  return rows.map((row) => {
    const base = {
      scenario: row.scenario,
      contestant: row.contestant,
      label: row.label,
      runs: row.samples.length,
      problem: row.problem,
      notes: [...row.notes],
    };
    if (row.samples.length === 0) return base;
    const rps = median(row.samples.map((s) => s.rps));
    const p99 = median(row.samples.map((s) => s.p99Ms));
    return {
      ...base,
      rps,
      rpsMin: Math.min(...row.samples.map((s) => s.rps)),
      rpsMax: Math.max(...row.samples.map((s) => s.rps)),
      vsPassthrough: pairedRatio(row, passthrough),
      p50Ms: median(row.samples.map((s) => s.p50Ms)),
      p99Ms: p99,
      addedP99Ms: ptP99 !== undefined ? p99 - ptP99 : undefined,
      cpuPercent: median(row.samples.map((s) => s.cpuPercent)),
      cpuUsPerRequest: median(row.samples.map((s) => s.cpuUsPerRequest)),
      sysUsPerRequest: median(row.samples.map((s) => s.sysUsPerRequest)),
      peakRssMiB: Math.max(...row.samples.map((s) => s.peakRssMiB)),
      genCoreBusy: median(row.samples.map((s) => s.coreBusy[0] ?? 0)),
      wrkCpuPercent: median(row.samples.map((s) => s.wrkCpuPercent)),
      nginxCpuPercent: median(row.samples.map((s) => s.nginxCpuPercent)),
      foreignPercent: median(row.samples.map((s) => s.foreignPercent)),
    };
  });
}

const COLUMNS = ['scenario', 'contestant', 'req/s', '±%', '×pt', 'p50 ms', 'p99 ms', '+p99 ms', 'CPU %', 'CPU µs/req', 'kernel µs/req', 'peak RSS MiB', 'notes'] as const;

function cells(s: Summary): string[] {
  const fmt = (value: number | undefined, digits: number): string =>
    value === undefined || Number.isNaN(value) ? '' : value.toFixed(digits);
  if (s.rps === undefined) {
    return [s.scenario, s.label, '', '', '', '', '', '', '', '', '', '', [s.problem ?? 'no data', ...s.notes].join('; ')];
  }
  return [
    s.scenario,
    s.label,
    Math.round(s.rps).toString(),
    // Half the range of the runs' req/s, relative to the median: how far to trust the row.
    s.runs > 1 && s.rpsMin !== undefined && s.rpsMax !== undefined ? fmt((50 * (s.rpsMax - s.rpsMin)) / s.rps, 0) : '',
    fmt(s.vsPassthrough, 2),
    fmt(s.p50Ms, 2),
    fmt(s.p99Ms, 2),
    s.contestant === 'passthrough' ? '' : (s.addedP99Ms !== undefined && s.addedP99Ms >= 0 ? '+' : '') + fmt(s.addedP99Ms, 2),
    fmt(s.cpuPercent, 0),
    fmt(s.cpuUsPerRequest, 1),
    fmt(s.sysUsPerRequest, 1),
    fmt(s.peakRssMiB, 1),
    s.notes.join('; '),
  ];
}

/** The table for the terminal: aligned columns, numbers right-aligned. */
export function textTable(summaries: readonly Summary[]): string {
  const rows = [COLUMNS.map(String), ...summaries.map(cells)];
  const widths = COLUMNS.map((_, i) => Math.max(...rows.map((r) => (r[i] ?? '').length)));
  const numeric = (i: number): boolean => i >= 2 && i <= 11;
  const line = (r: readonly string[]): string =>
    r
      .map((cell, i) => (numeric(i) ? cell.padStart(widths[i] ?? 0) : cell.padEnd(widths[i] ?? 0)))
      .join('  ')
      .trimEnd();
  const out = [line(rows[0] ?? []), widths.map((w) => '-'.repeat(w)).join('  ')];
  let previous = '';
  for (const [i, r] of rows.slice(1).entries()) {
    const scenario = summaries[i]?.scenario ?? '';
    if (previous !== '' && scenario !== previous) out.push('');
    previous = scenario;
    out.push(line(r));
  }
  return out.join('\n');
}

export function markdownTable(summaries: readonly Summary[]): string {
  const escape = (cell: string): string => cell.replaceAll('|', '\\|');
  const out = [`| ${COLUMNS.join(' | ')} |`, `|${COLUMNS.map((_, i) => (i >= 2 && i <= 11 ? '---:' : '---')).join('|')}|`];
  for (const s of summaries) out.push(`| ${cells(s).map(escape).join(' | ')} |`);
  return out.join('\n');
}

export interface TargetCheck {
  readonly target: string;
  readonly measured: string;
  readonly pass: boolean | undefined;
}

/** The targets of the performance issue, for the 1-process Portcullis row; ratios paired by round. */
export function checkTargets(rows: readonly Row[], summaries: readonly Summary[]): TargetCheck[] {
  const row = (scenario: string, contestant: string): Row | undefined =>
    rows.find((r) => r.contestant === contestant && r.scenario === scenario && r.samples.length > 0);
  const passthrough = row('baseline', 'passthrough');
  const ratio = (scenario: string, other: Row | undefined, need: number, name: string): TargetCheck => {
    const mine = row(scenario, 'portcullis');
    const ratios = roundRatios(mine, other);
    if (mine === undefined || other === undefined || ratios.length === 0) return { target: name, measured: 'not measured', pass: undefined };
    const r = median(ratios);
    const medianOf = (x: Row): number => Math.round(median(x.samples.map((s) => s.rps)));
    return { target: name, measured: `${formatRatio(r, need)}× (${describeRounds(ratios, need)}; medians ${medianOf(mine)} vs ${medianOf(other)} req/s)`, pass: r >= need };
  };
  const checks = [
    ratio('same', passthrough, 0.9, 'same valid RS256 token ≥ 0.90× node pass-through'),
    ratio('same', row('same', 'fastify-jwt'), 3, 'same valid RS256 token ≥ 3× fastify-jwt'),
    ratio('distinct', row('distinct', 'lean-verify'), 0.95, 'every token new ≥ 0.95× lean crypto.verify proxy'),
    ratio('distinct', row('distinct', 'fastify-jwt'), 1.5, 'every token new ≥ 1.5× fastify-jwt'),
    ratio('invalid', passthrough, 1.0, 'invalid tokens ≥ 1.0× node pass-through'),
  ];
  const same = summaries.find((s) => s.scenario === 'same' && s.contestant === 'portcullis');
  const ptRow = summaries.find((s) => s.scenario === 'baseline' && s.contestant === 'passthrough');
  if (same?.p99Ms !== undefined && ptRow?.p99Ms !== undefined) {
    const added = same.p99Ms - ptRow.p99Ms;
    checks.push({
      target: 'added p99 over node pass-through ≤ 1 ms at 50 connections (same token)',
      measured: `${added >= 0 ? '+' : ''}${added.toFixed(2)} ms (${same.p99Ms.toFixed(2)} vs ${ptRow.p99Ms.toFixed(2)} ms)`,
      pass: added <= 1,
    });
  } else {
    checks.push({ target: 'added p99 over node pass-through ≤ 1 ms at 50 connections', measured: 'not measured', pass: undefined });
  }
  return checks;
}

/** Two decimals, or three cut (not rounded) where two would round a miss up to the target (0.948 is not "0.95", a FAIL). */
export function formatRatio(ratio: number, need: number): string {
  const two = ratio.toFixed(2);
  return ratio < need && Number(two) >= need ? (Math.floor(ratio * 1000) / 1000).toFixed(3) : two;
}

/**
 * How the per-round ratios sit against the target: a verdict whose rounds fall on both sides of it says more
 * about the host than about the code (bench/README.md, "Noise").
 */
export function describeRounds(ratios: readonly number[], need: number): string {
  if (ratios.length === 1) return 'one round';
  const low = Math.min(...ratios);
  const high = Math.max(...ratios);
  const side = low >= need ? 'every round at or above the target' : high < need ? 'every round below the target' : `${ratios.filter((x) => x >= need).length} of ${ratios.length} rounds at or above the target`;
  return `median of ${ratios.length} per-round ratios, ${low.toFixed(2)}-${high.toFixed(2)}; ${side}`;
}

export function formatTargets(checks: readonly TargetCheck[]): string {
  return checks
    .map((c) => `${c.pass === undefined ? '  -  ' : c.pass ? ' PASS' : ' FAIL'}  ${c.target}: ${c.measured}`)
    .join('\n');
}
