/**
 * `--syscalls`: system calls per request, by name, for each contestant. Instructions (`--instructions`)
 * count user-space work only; on loopback a large share of a proxy's cost is in the kernel (two sockets
 * read and written per request, plus epoll), and that share is the same whatever the proxy does in
 * JavaScript. Counting the calls shows where two proxies differ there, and where they cannot.
 *
 * Per contestant: start it normally, send a warm-up, attach `strace -c` to every thread of the process,
 * send the measured requests, detach (SIGINT), and divide strace's per-call counts by the request count.
 * strace stops the process at every call and slows it many times over. The socket calls per request
 * (read, write, writev, recvfrom, sendto) do not depend on that; the wake-up calls (epoll_pwait, futex)
 * do, since a slowed process finds more events ready per wake-up. strace's times are not used.
 */
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { createDriver, forEachCount } from './drive.ts';
import type { CountPlan } from './drive.ts';
import { trackChild } from './procs.ts';

export type SyscallsOptions = CountPlan;

export interface SyscallsRow {
  readonly scenario: string;
  readonly contestant: string;
  readonly label: string;
  /** Calls per request by syscall name, every thread of the process. */
  readonly perRequest: Readonly<Record<string, number>>;
  readonly total: number;
  readonly statuses: Readonly<Record<string, number>>;
}

/** With -f and -p, strace attaches to every thread of the process, and says so once it has. */
const ATTACHED = /Process \d+ attached/;
const ATTACH_TIMEOUT_MS = 10_000;

export async function runSyscalls(o: SyscallsOptions): Promise<SyscallsRow[]> {
  const rows: SyscallsRow[] = [];
  await forEachCount(o, async (contestant, scenario, warm, measure) => {
    const running = await contestant.start(scenario, o.ctx);
    const out = join(o.ctx.dir, `strace-${contestant.id}-${scenario.id}.txt`);
    const driver = createDriver(running.port, scenario.path);
    let statuses: Record<string, number>;
    try {
      await driver.send(warm);
      const tracer = await attach(running.pid, out);
      statuses = await driver.send(measure);
      await tracer.detach();
    } finally {
      driver.close();
      await running.stop();
    }
    const perRequest: Record<string, number> = {};
    let total = 0;
    for (const [name, calls] of parseSummary(readFileSync(out, 'utf8'))) {
      perRequest[name] = calls / measure.length;
      total += calls / measure.length;
    }
    o.log(`  ${contestant.id}: ${total.toFixed(2)} syscalls per request ${JSON.stringify(statuses)}`);
    rows.push({ scenario: contestant.baseline ? 'baseline' : scenario.id, contestant: contestant.id, label: contestant.label, perRequest, total, statuses });
  });
  return rows;
}

/** Attaches strace to every thread of `pid`, and to threads it starts later (-f); resolves once attached. */
async function attach(pid: number, out: string): Promise<{ detach(): Promise<void> }> {
  const args = ['-f', '-c', '-o', out, '-p', String(pid)];
  const child = spawn('strace', args, { stdio: ['ignore', 'ignore', 'pipe'] });
  trackChild(child);
  const exited = new Promise<string>((resolve) => child.once('exit', (code, signal) => resolve(signal ?? String(code))));
  await new Promise<void>((resolve, reject) => {
    let stderr = '';
    const timer = setTimeout(() => reject(new Error(`strace did not attach to ${pid} in ${ATTACH_TIMEOUT_MS} ms: ${stderr}`)), ATTACH_TIMEOUT_MS);
    child.stderr.setEncoding('utf8');
    child.stderr.on('data', (chunk: string) => {
      stderr += chunk;
      if (ATTACHED.test(stderr)) {
        clearTimeout(timer);
        resolve();
      }
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`strace exited (${code}) before attaching: ${stderr}`));
    });
  });
  return {
    async detach() {
      child.kill('SIGINT');
      // strace writes its table, then re-raises the SIGINT it was sent.
      const how = await exited;
      if (how !== '0' && how !== 'SIGINT') throw new Error(`strace ended with ${how} on detach`);
    },
  };
}

/** `strace -c`'s table: syscall name → calls (the `total` line excluded). */
export function parseSummary(text: string): Map<string, number> {
  const counts = new Map<string, number>();
  // % time, seconds, usecs/call, calls, [errors], syscall
  const row = /^\s*[\d.]+\s+[\d.]+\s+\d+\s+(\d+)\s+(?:\d+\s+)?([a-z_0-9]+)\s*$/;
  for (const line of text.split('\n')) {
    const match = row.exec(line);
    if (match === null || match[2] === 'total') continue;
    counts.set(match[2]!, Number(match[1]));
  }
  if (counts.size === 0) throw new Error(`no syscall table in strace output:\n${text}`);
  return counts;
}

/** One column per contestant, one row per syscall that any contestant makes at least 0.05 times a request. */
export function formatSyscalls(rows: readonly SyscallsRow[]): string {
  const names = new Set<string>();
  for (const r of rows) for (const [name, n] of Object.entries(r.perRequest)) if (n >= 0.05) names.add(name);
  const sorted = [...names].sort((a, b) => Math.max(...rows.map((r) => r.perRequest[b] ?? 0)) - Math.max(...rows.map((r) => r.perRequest[a] ?? 0)));
  const head = rows.map((r) => `${r.label}${r.scenario === 'baseline' ? '' : ` (${r.scenario})`}`);
  const lines = [`| syscall | ${head.join(' | ')} |`, `|---|${rows.map(() => '---:').join('|')}|`];
  for (const name of sorted) lines.push(`| ${name} | ${rows.map((r) => (r.perRequest[name] ?? 0).toFixed(2)).join(' | ')} |`);
  lines.push(`| **all** | ${rows.map((r) => `**${r.total.toFixed(2)}**`).join(' | ')} |`);
  lines.push(`| answers | ${rows.map((r) => Object.entries(r.statuses).map(([status, n]) => `${n}× ${status}`).join(', ')).join(' | ')} |`);
  return lines.join('\n');
}
