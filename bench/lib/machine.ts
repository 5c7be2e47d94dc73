/** What the results were measured on, printed with every table. */
import { readFileSync } from 'node:fs';
import { availableParallelism, release } from 'node:os';
import { runSync } from './procs.ts';

export interface Machine {
  readonly date: string;
  readonly nproc: number;
  readonly cpuModel: string;
  readonly node: string;
  readonly kernel: string;
  readonly nginx: string | undefined;
  readonly wrk: string | undefined;
  readonly haproxy: string | undefined;
  /** The Portcullis under test: short commit, "+dirty" when src/ has uncommitted changes. */
  readonly portcullis: string;
}

export function describeMachine(tools: { nginx: string | undefined; wrk: string | undefined; haproxy: string | undefined }): Machine {
  let cpuModel = 'unknown';
  try {
    cpuModel = /^model name\s*:\s*(.*)$/m.exec(readFileSync('/proc/cpuinfo', 'utf8'))?.[1]?.trim() ?? cpuModel;
  } catch {
    // Not Linux: leave "unknown".
  }
  const version = (cmd: string | undefined, args: string[], pattern: RegExp): string | undefined =>
    cmd === undefined ? undefined : pattern.exec(runSync(cmd, args, 10_000).out)?.[1];
  return {
    date: new Date().toISOString(),
    nproc: availableParallelism(),
    cpuModel,
    node: process.version,
    kernel: release(),
    nginx: version(tools.nginx, ['-v'], /nginx\/(\S+)/),
    wrk: version(tools.wrk, ['-v'], /wrk (\S+)/),
    haproxy: version(tools.haproxy, ['-v'], /version (\S+)/),
    portcullis: portcullisRevision(),
  };
}

function portcullisRevision(): string {
  const head = runSync('git', ['rev-parse', '--short', 'HEAD'], 10_000);
  if (head.status !== 0) return 'unknown';
  const dirty = runSync('git', ['status', '--porcelain', '--', 'src'], 10_000).out.trim() !== '';
  return `${head.out.trim()}${dirty ? '+dirty' : ''}`;
}

export function formatMachine(m: Machine): string {
  return `${m.date} · Portcullis ${m.portcullis} · ${m.nproc} cores · ${m.cpuModel} · Node ${m.node} · Linux ${m.kernel} · nginx ${m.nginx ?? '-'} · wrk ${m.wrk ?? '-'} · HAProxy ${m.haproxy ?? '-'}`;
}
