/**
 * Child processes of the harness: spawned pinned (taskset) in their own process group, logged to files, and
 * all killed when the harness exits for any reason (normal end, error, SIGINT, SIGTERM). Plus the /proc
 * readings the table reports: CPU ticks and peak RSS of a process tree, per-core busy time.
 */
import { spawn, spawnSync } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { closeSync, openSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { request } from 'node:http';
import type { IncomingHttpHeaders } from 'node:http';
import { setTimeout as sleep } from 'node:timers/promises';

/** Children killed when the harness exits; `true` marks a process-group leader (killed with its group). */
const children = new Map<ChildProcess, boolean>();
let hooked = false;

/** True when `cmd` is on PATH. */
export function hasCommand(cmd: string): boolean {
  return spawnSync('sh', ['-c', `command -v ${cmd}`], { stdio: 'ignore' }).status === 0;
}

export interface SpawnOptions {
  /** taskset CPU list ("1", "0,1"); ignored when taskset is unavailable or `pin` is off. */
  readonly cpus?: string | undefined;
  /** File that receives stdout and stderr. */
  readonly logFile: string;
  readonly env?: NodeJS.ProcessEnv;
  readonly cwd?: string;
}

let pinning = hasCommand('taskset');

/** Turns pinning off (`--no-pin`, or taskset missing). */
export function setPinning(on: boolean): void {
  pinning = on && hasCommand('taskset');
}

export function pinningEnabled(): boolean {
  return pinning;
}

/**
 * Spawns `cmd args` pinned to `cpus` (taskset execs the command, so the pid is the command's own), in a new
 * process group so that stopping it also stops anything it forked (cluster workers, nginx's worker).
 */
export function spawnTracked(cmd: string, args: readonly string[], options: SpawnOptions): ChildProcess {
  hookExit();
  const fd = openSync(options.logFile, 'a');
  const [file, argv] =
    pinning && options.cpus !== undefined ? ['taskset', ['-c', options.cpus, cmd, ...args]] : [cmd, [...args]];
  const child = spawn(file, argv, {
    stdio: ['ignore', fd, fd],
    detached: true,
    env: options.env ?? process.env,
    cwd: options.cwd,
  });
  closeSync(fd);
  children.set(child, true);
  child.once('exit', () => children.delete(child));
  return child;
}

/** Registers a child spawned elsewhere (wrk) so that it is killed if the harness exits first. */
export function trackChild(child: ChildProcess): void {
  hookExit();
  children.set(child, false);
  child.once('exit', () => children.delete(child));
}

/** SIGTERM the child's process group, SIGKILL it if it is still there after `graceMs`. */
export async function stopTracked(child: ChildProcess, graceMs = 3000): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null || child.pid === undefined) return;
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  killGroup(child.pid, 'SIGTERM');
  const timedOut = await Promise.race([exited.then(() => false), sleep(graceMs).then(() => true)]);
  if (timedOut) {
    killGroup(child.pid, 'SIGKILL');
    await Promise.race([exited, sleep(1000)]);
  }
  // Whatever the leader left behind in its group (a worker that ignored SIGTERM) goes too.
  killGroup(child.pid, 'SIGKILL');
}

function killGroup(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(-pid, signal);
  } catch {
    // Already gone.
  }
}

function hookExit(): void {
  if (hooked) return;
  hooked = true;
  const killAll = (): void => {
    for (const [child, group] of children) {
      if (child.pid === undefined) continue;
      if (group) killGroup(child.pid, 'SIGKILL');
      else child.kill('SIGKILL');
    }
  };
  process.on('exit', killAll);
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    process.once(signal, () => {
      process.stderr.write(`\nbench: ${signal}, stopping every child process\n`);
      killAll();
      process.exit(130);
    });
  }
}

/** Runs a command to completion with a time limit; returns its status and output. */
export function runSync(cmd: string, args: readonly string[], timeoutMs = 600_000): { status: number | null; out: string } {
  const result = spawnSync(cmd, args, { encoding: 'utf8', timeout: timeoutMs });
  return { status: result.status, out: `${result.stdout ?? ''}${result.stderr ?? ''}` };
}

/** A free TCP port on 127.0.0.1 (bound then released; fine for a harness that owns the machine). */
export async function freePort(): Promise<number> {
  const { createServer } = await import('node:net');
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      const port = typeof address === 'object' && address !== null ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
}

/** Waits until something accepts TCP connections on 127.0.0.1:port, or throws after `timeoutMs`. */
export async function waitForPort(port: number, timeoutMs: number, child?: ChildProcess): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (child !== undefined && (child.exitCode !== null || child.signalCode !== null)) {
      throw new Error(`exited (${child.exitCode ?? child.signalCode}) before listening on ${port}`);
    }
    const ok = await new Promise<boolean>((resolve) => {
      const socket = connect(port, '127.0.0.1');
      socket.once('connect', () => {
        socket.destroy();
        resolve(true);
      });
      socket.once('error', () => resolve(false));
    });
    if (ok) return;
    if (Date.now() > deadline) throw new Error(`nothing listening on 127.0.0.1:${port} after ${timeoutMs} ms`);
    await sleep(50);
  }
}

/** One GET on a fresh connection: status and body. */
export function httpGet(
  port: number,
  path: string,
  headers: Record<string, string>,
  timeoutMs = 5000,
): Promise<{ status: number; body: string; headers: IncomingHttpHeaders }> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path, headers, agent: false, timeout: timeoutMs }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => (body += chunk));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body, headers: res.headers }));
    });
    req.on('timeout', () => req.destroy(new Error(`GET ${path} timed out`)));
    req.on('error', reject);
    req.end();
  });
}

// ---- /proc readings -------------------------------------------------------------------------------------

const CLK_TCK = Number(runSync('getconf', ['CLK_TCK']).out.trim()) || 100;

/** `root` and every descendant (cluster workers, nginx workers), from /proc/<pid>/stat's ppid. */
export function processTree(root: number): number[] {
  const parentOf = new Map<number, number>();
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const stat = readStat(Number(entry));
    if (stat !== undefined) parentOf.set(Number(entry), stat.ppid);
  }
  const tree = [root];
  for (let i = 0; i < tree.length; i++) {
    for (const [pid, ppid] of parentOf) if (ppid === tree[i] && !tree.includes(pid)) tree.push(pid);
  }
  return tree.filter((pid) => parentOf.has(pid));
}

function readStat(pid: number): { ppid: number; ticks: number; sysTicks: number } | undefined {
  let text: string;
  try {
    text = readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return undefined;
  }
  // The command name (field 2) may contain spaces and parentheses: fields start after the last ')'.
  const fields = text.slice(text.lastIndexOf(')') + 2).split(' ');
  // After the name: state(3) ppid(4) ... utime(14) stime(15), i.e. indexes 0, 1, 11, 12 here.
  return { ppid: Number(fields[1]), ticks: Number(fields[11]) + Number(fields[12]), sysTicks: Number(fields[12]) };
}

/** user+sys CPU of each pid, in seconds; with `sysOnly`, the time in the kernel on its behalf only. */
export function cpuSeconds(pids: readonly number[], sysOnly = false): Map<number, number> {
  const out = new Map<number, number>();
  for (const pid of pids) {
    const stat = readStat(pid);
    if (stat !== undefined) out.set(pid, (sysOnly ? stat.sysTicks : stat.ticks) / CLK_TCK);
  }
  return out;
}

/** CPU seconds spent between two readings (pids that appeared in between count from zero). */
export function cpuDelta(before: Map<number, number>, after: Map<number, number>): number {
  let total = 0;
  for (const [pid, seconds] of after) total += seconds - (before.get(pid) ?? 0);
  return total;
}

function statusField(pid: number, field: string): number | undefined {
  try {
    const match = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return match ? Number(match[1]) : undefined;
  } catch {
    return undefined;
  }
}

/** Sum of VmHWM (peak resident set) over `pids`, in MiB. */
export function peakRssMiB(pids: readonly number[]): number {
  let kb = 0;
  for (const pid of pids) kb += statusField(pid, 'VmHWM') ?? 0;
  return kb / 1024;
}

/** Sum of VmRSS (current resident set) over `pids`, in MiB. */
export function rssMiB(pids: readonly number[]): number {
  let kb = 0;
  for (const pid of pids) kb += statusField(pid, 'VmRSS') ?? 0;
  return kb / 1024;
}

/**
 * Resets VmHWM to the current RSS (`echo 5 > /proc/PID/clear_refs`, Linux >= 4.0) so the peak covers the
 * measured run only (long-lived processes such as the shared nginx). Returns false where that is refused.
 */
export function resetPeakRss(pids: readonly number[]): boolean {
  let ok = true;
  for (const pid of pids) {
    try {
      writeFileSync(`/proc/${pid}/clear_refs`, '5');
    } catch {
      ok = false;
    }
  }
  return ok;
}

/** Per-core busy and total jiffies from /proc/stat. */
export function coreTimes(): Array<{ busy: number; total: number }> {
  const out: Array<{ busy: number; total: number }> = [];
  for (const line of readFileSync('/proc/stat', 'utf8').split('\n')) {
    const match = /^cpu(\d+) (.*)$/.exec(line);
    if (match === null) continue;
    const values = (match[2] ?? '').trim().split(/\s+/).map(Number);
    const total = values.slice(0, 8).reduce((a, b) => a + b, 0);
    const idle = (values[3] ?? 0) + (values[4] ?? 0);
    out[Number(match[1])] = { busy: total - idle, total };
  }
  return out;
}

/** Busy percent of each core between two `coreTimes()` readings. */
export function coreBusyPercent(
  before: ReadonlyArray<{ busy: number; total: number }>,
  after: ReadonlyArray<{ busy: number; total: number }>,
): number[] {
  return after.map((end, core) => {
    const start = before[core];
    if (start === undefined || end.total === start.total) return 0;
    return (100 * (end.busy - start.busy)) / (end.total - start.total);
  });
}

/** CPU seconds all cores spent busy between two `coreTimes()` readings. */
export function busySeconds(
  before: ReadonlyArray<{ busy: number; total: number }>,
  after: ReadonlyArray<{ busy: number; total: number }>,
): number {
  let jiffies = 0;
  for (const [core, end] of after.entries()) jiffies += end.busy - (before[core]?.busy ?? end.busy);
  return jiffies / CLK_TCK;
}

/** Moves every thread of a running process to `cpus` (taskset -a -p). */
export function repin(pid: number, cpus: string): void {
  if (!pinning) return;
  for (const member of processTree(pid)) runSync('taskset', ['-a', '-p', '-c', cpus, String(member)]);
}
