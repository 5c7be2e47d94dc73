/**
 * Where a callgrind count went, by function, per request; with `--base`, the difference between two
 * counts (what one proxy does that another does not). Reads the files `npm run bench -- --instructions
 * --keep` leaves in its temp dir: the measured window is the `.out.1` dump. V8's compiled JavaScript has
 * no symbols in node's binary, so callgrind names it `0x…`; run the count with
 * `NODE_OPTIONS=--perf-basic-prof` and each process writes `/tmp/perf-PID.map`, which this reads by the
 * file's `pid:` line to name those frames (`JIT JS:*'decide src/pipeline.ts`).
 *
 *   node bench/annotate.ts DIR/callgrind-portcullis-distinct.out.1 --base DIR/callgrind-lean-verify-distinct.out.1 --requests 10000
 *
 * Self cost only: each instruction is counted once, in the function that executed it, so the rows add up
 * to the total. The dump is read by the parser that splits the `--instructions` table's columns, so the
 * two agree on what each function cost.
 */
import { existsSync, readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { selfCosts } from './lib/instructions.ts';

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    base: { type: 'string' },
    requests: { type: 'string', default: '1' },
    top: { type: 'string', default: '40' },
  },
});
const [file] = positionals;
if (file === undefined) {
  console.error('usage: node bench/annotate.ts CALLGRIND_OUT [--base CALLGRIND_OUT] [--requests N] [--top N]');
  process.exit(2);
}
const requests = Number(values.requests);
const top = Number(values.top);

const row = costs(file);
if (values.base === undefined) {
  print(['per request', 'function'], [...row].sort((a, b) => b[1] - a[1]).slice(0, top).map(([name, ir]) => [fmt(ir), name]));
} else {
  const base = costs(values.base);
  const names = new Set([...row.keys(), ...base.keys()]);
  const diffs = [...names].map((name) => [name, base.get(name) ?? 0, row.get(name) ?? 0] as const);
  diffs.sort((a, b) => Math.abs(b[2] - b[1]) - Math.abs(a[2] - a[1]));
  print(['row − base', 'base', 'row', 'function'], diffs.slice(0, top).map(([name, b, r]) => [fmt(r - b), fmt(b), fmt(r), name]));
}

/** Self instructions per request by function name, JIT frames named from the process's perf map. */
function costs(path: string): Map<string, number> {
  const text = readFileSync(path, 'utf8');
  const pid = /^pid: (\d+)$/m.exec(text.slice(0, 4096))?.[1];
  const map = pid !== undefined && existsSync(`/tmp/perf-${pid}.map`) ? perfMap(`/tmp/perf-${pid}.map`) : undefined;
  if (map === undefined) console.error(`${path}: no /tmp/perf-${pid ?? '?'}.map, JIT frames stay 0x… (count with NODE_OPTIONS=--perf-basic-prof)`);
  const out = new Map<string, number>();
  for (const [fn, ir] of selfCosts(text)) {
    let name = fn;
    const address = /^0x([0-9a-f]+)$/.exec(name)?.[1];
    if (address !== undefined && map !== undefined) name = `JIT ${map.lookup(parseInt(address, 16)) ?? 'unnamed'}`;
    // The same function in two processes: drop where the checkout lives and the line:column.
    name = name.replace(/file:\/\/\S*?\/(src|bench)\//, '$1/').replace(/\S*\/node_modules\//, '').replace(/:\d+:\d+$/, '');
    out.set(name, (out.get(name) ?? 0) + ir / requests);
  }
  return out;
}

function perfMap(path: string): { lookup(address: number): string | undefined } {
  const entries = readFileSync(path, 'utf8')
    .split('\n')
    .map((line) => /^([0-9a-f]+) ([0-9a-f]+) (.*)$/.exec(line))
    .filter((m) => m !== null)
    .map((m) => ({ start: parseInt(m[1]!, 16), size: parseInt(m[2]!, 16), name: m[3]! }))
    .sort((a, b) => a.start - b.start);
  return {
    lookup(address) {
      let lo = 0;
      let hi = entries.length - 1;
      while (lo <= hi) {
        const mid = (lo + hi) >> 1;
        if (entries[mid]!.start <= address) lo = mid + 1;
        else hi = mid - 1;
      }
      const hit = entries[hi];
      return hit !== undefined && address < hit.start + hit.size ? hit.name : undefined;
    },
  };
}

function fmt(value: number): string {
  return Math.round(value).toLocaleString('en-US');
}

function print(head: readonly string[], rows: ReadonlyArray<readonly string[]>): void {
  const widths = head.slice(0, -1).map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  for (const r of [head, ...rows]) console.log([...r.slice(0, -1).map((c, i) => c.padStart(widths[i]!)), r.at(-1)!.slice(0, 140)].join('  '));
}
