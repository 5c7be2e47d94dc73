/** What the results were measured on, printed with every table. */
import { readFileSync } from 'node:fs';
import { availableParallelism, release } from 'node:os';
import { runSync } from './procs.ts';

export interface Machine {
  readonly date: string;
  readonly nproc: number;
  readonly cpuModel: string;
  /**
   * The CPU features OpenSSL's RSA, ECDSA and SHA-256 code paths depend on (this VM's model name reads only
   * "AMD EPYC"): the same code refused forged RS256 tokens at 88-100 µs of CPU on one host and 56 µs on
   * another, so the table says which kind of host it came from.
   */
  readonly cryptoFlags: readonly string[];
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
  let cryptoFlags: string[] = [];
  try {
    const cpuinfo = readFileSync('/proc/cpuinfo', 'utf8');
    cpuModel = /^model name\s*:\s*(.*)$/m.exec(cpuinfo)?.[1]?.trim() ?? cpuModel;
    const flags = new Set(/^flags\s*:\s*(.*)$/m.exec(cpuinfo)?.[1]?.split(' ') ?? []);
    cryptoFlags = CRYPTO_FLAGS.filter((flag) => flags.has(flag));
  } catch {
    // Not Linux: leave "unknown".
  }
  const version = (cmd: string | undefined, args: string[], pattern: RegExp): string | undefined =>
    cmd === undefined ? undefined : pattern.exec(runSync(cmd, args, 10_000).out)?.[1];
  return {
    date: new Date().toISOString(),
    nproc: availableParallelism(),
    cpuModel,
    cryptoFlags,
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

/** Big-number (adx, bmi2, avx512ifma), vector and SHA extensions, in the order /proc/cpuinfo names them. */
const CRYPTO_FLAGS = ['bmi2', 'avx2', 'adx', 'sha_ni', 'avx512f', 'avx512ifma', 'vaes', 'vpclmulqdq'];

export function formatMachine(m: Machine): string {
  return `${m.date} · Portcullis ${m.portcullis} · ${m.nproc} cores · ${m.cpuModel} (${m.cryptoFlags.join(' ') || 'no crypto flags read'}) · Node ${m.node} · Linux ${m.kernel} · nginx ${m.nginx ?? '-'} · wrk ${m.wrk ?? '-'} · HAProxy ${m.haproxy ?? '-'}`;
}
