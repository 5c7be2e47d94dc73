/**
 * `--profile SCENARIO`: Portcullis (1 process) under `node --cpu-prof`, loaded like a measured run, then
 * the profile's self time summed per function and per file — hints for where the next optimisation is.
 */
import { mkdirSync, readFileSync, readdirSync } from 'node:fs';
import { join, relative } from 'node:path';
import { writePortcullisConfig } from './contestants.ts';
import type { AuditStoreKind, BenchContext } from './contestants.ts';
import { freePort, spawnTracked, stopTracked, waitForPort } from './procs.ts';
import type { Scenario } from './scenarios.ts';
import { runWrk } from './wrk.ts';

interface ProfileNode {
  readonly id: number;
  readonly callFrame: { functionName: string; url: string; lineNumber: number };
  readonly hitCount?: number;
  readonly children?: number[];
}

export interface ProfileOptions {
  readonly ctx: BenchContext;
  readonly scenario: Scenario;
  readonly files: { measure: string; warm: string };
  readonly seconds: number;
  readonly warmup: number;
  readonly connections: number;
  readonly script: string;
  /** Profile with the audit log on, in this store. */
  readonly audit?: AuditStoreKind | undefined;
  readonly log: (line: string) => void;
}

export async function runProfile(o: ProfileOptions): Promise<void> {
  const profDir = join(o.ctx.dir, 'cpu-prof');
  mkdirSync(profDir, { recursive: true });
  const port = await freePort();
  const child = spawnTracked(
    process.execPath,
    [
      '--cpu-prof',
      '--cpu-prof-dir',
      profDir,
      join(o.ctx.repo, 'src', 'cli', 'main.ts'),
      'serve',
      '-c',
      writePortcullisConfig(o.ctx, o.scenario, port, o.audit),
      ...(o.ctx.noWatchFlag ? ['--no-watch'] : []),
    ],
    { cpus: o.ctx.cores.one, logFile: join(o.ctx.dir, 'portcullis-profile.log'), cwd: o.ctx.repo },
  );
  await waitForPort(port, 20_000, child);
  if (o.warmup > 0) {
    await runWrk({ port, path: o.scenario.path, tokenFile: o.files.warm, script: o.script, seconds: o.warmup, connections: o.connections, cpus: o.ctx.cores.gen });
  }
  const result = await runWrk({ port, path: o.scenario.path, tokenFile: o.files.measure, script: o.script, seconds: o.seconds, connections: o.connections, cpus: o.ctx.cores.gen });
  // SIGTERM: Portcullis drains and exits, and V8 writes the profile on the way out.
  await stopTracked(child, 10_000);
  const file = readdirSync(profDir).find((name) => name.endsWith('.cpuprofile'));
  console.log(`Portcullis${o.audit === undefined ? '' : ` + audit (${o.audit})`} under "${o.scenario.title}": ${Math.round(result.rps)} req/s, p99 ${result.p99Ms.toFixed(2)} ms (profiling slows it down)`);
  if (file === undefined) {
    console.log('no .cpuprofile was written (did the process exit cleanly?)');
    return;
  }
  console.log(summarizeProfile(join(profDir, file), o.ctx.repo));
}

/** Top self-time functions and files of a .cpuprofile, as text. */
export function summarizeProfile(file: string, repo: string, top = 25): string {
  const profile = JSON.parse(readFileSync(file, 'utf8')) as { nodes: ProfileNode[] };
  const parentOf = new Map<number, ProfileNode>();
  for (const node of profile.nodes) for (const child of node.children ?? []) parentOf.set(child, node);
  const nameOf = (node: ProfileNode): string => {
    const where = shorten(node.callFrame.url, repo);
    return `${node.callFrame.functionName || '(anonymous)'}${where ? `  ${where}:${node.callFrame.lineNumber + 1}` : ''}`;
  };
  const byFunction = new Map<string, number>();
  const byFile = new Map<string, number>();
  // For native frames (no URL), the nearest JavaScript caller says where the cost comes from.
  const callers = new Map<string, Map<string, number>>();
  let total = 0;
  for (const node of profile.nodes) {
    const hits = node.hitCount ?? 0;
    if (hits === 0) continue;
    total += hits;
    const where = shorten(node.callFrame.url, repo);
    const fn = nameOf(node);
    byFunction.set(fn, (byFunction.get(fn) ?? 0) + hits);
    const area = where ? areaOf(where) : node.callFrame.functionName || '(native)';
    byFile.set(area, (byFile.get(area) ?? 0) + hits);
    let parent = parentOf.get(node.id);
    while (parent !== undefined && parent.callFrame.url === '' && parent.callFrame.functionName !== '(root)') {
      parent = parentOf.get(parent.id);
    }
    if (parent !== undefined && node.callFrame.url === '') {
      const byCaller = callers.get(fn) ?? new Map<string, number>();
      byCaller.set(nameOf(parent), (byCaller.get(nameOf(parent)) ?? 0) + hits);
      callers.set(fn, byCaller);
    }
  }
  const list = (map: Map<string, number>, n: number, withCallers: boolean): string =>
    [...map.entries()]
      .sort((a, b) => b[1] - a[1])
      .slice(0, n)
      .map(([name, hits]) => {
        const line = `  ${((100 * hits) / total).toFixed(1).padStart(5)}%  ${name}`;
        const from = withCallers ? callers.get(name) : undefined;
        if (from === undefined) return line;
        const top3 = [...from.entries()].sort((a, b) => b[1] - a[1]).slice(0, 3);
        return `${line}\n${top3.map(([caller, h]) => `           ${((100 * h) / total).toFixed(1).padStart(5)}% from ${caller}`).join('\n')}`;
      })
      .join('\n');
  return [
    `Top ${top} functions by self time (${total} samples, start-up included; native frames with their JavaScript callers):`,
    list(byFunction, top, true),
    '',
    'By file / package:',
    list(byFile, 15, false),
  ].join('\n');
}

function shorten(url: string, repo: string): string {
  if (url === '') return '';
  const path = url.startsWith('file://') ? new URL(url).pathname : url;
  return path.startsWith(repo) ? relative(repo, path) : path;
}

/** src/auth/verify.ts stays a file; node_modules/undici/lib/x.js becomes "undici"; node:internal/... stays. */
function areaOf(where: string): string {
  const match = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(where);
  return match ? `node_modules/${match[1]}` : where;
}
