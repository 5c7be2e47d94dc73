/**
 * Runs wrk (closed loop: `-c` connections, each sending its next request when the previous answer arrived)
 * with a Lua script that cycles through a token file — one token per request, in file order, so with a
 * file larger than the run's request count no token repeats and no cache can help — and reports the
 * summary as one JSON line.
 */
import { spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { cpuSeconds, pinningEnabled, trackChild } from './procs.ts';
import { NO_TOKEN } from './scenarios.ts';

/**
 * `init` reads the token file once and pre-builds every request string (no per-request table or
 * string building); `request` hands out the next one. A NO_TOKEN line (scenarios.ts) sends no
 * Authorization header. `done` prints the summary as JSON (latencies in us).
 */
const SCRIPT = String.raw`
local reqs = {}
local n = 0
local i = 0
function init(args)
  local path, file, host, offset = args[1], args[2], args[3], tonumber(args[4] or "0")
  for line in io.lines(file) do
    if #line > 0 then
      n = n + 1
      local auth = ""
      if line ~= "${NO_TOKEN}" then auth = "Authorization: Bearer " .. line .. "\r\n" end
      reqs[n] = "GET " .. path .. " HTTP/1.1\r\nHost: " .. host .. "\r\nUser-Agent: wrk\r\nAccept: */*\r\n" .. auth .. "\r\n"
    end
  end
  i = offset % n
end
function request()
  i = i + 1
  if i > n then i = 1 end
  return reqs[i]
end
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {"requests":%d,"duration_us":%d,"bytes":%d,"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d,' ..
    '"p50":%d,"p90":%d,"p99":%d,"p999":%d,"max":%d,"mean":%.1f}\n',
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency:percentile(99.9),
    latency.max, latency.mean))
end
`;

export interface WrkResult {
  readonly requests: number;
  readonly seconds: number;
  readonly rps: number;
  /** Answers that were not 2xx/3xx. */
  readonly non2xx: number;
  /** connect + read + write + timeout errors. */
  readonly socketErrors: number;
  readonly p50Ms: number;
  readonly p90Ms: number;
  readonly p99Ms: number;
  readonly p999Ms: number;
  readonly maxMs: number;
  /** user+sys CPU seconds of wrk itself (read from /proc every 250 ms, so up to 250 ms short). */
  readonly cpuSeconds: number;
}

export function writeWrkScript(dir: string): string {
  const file = join(dir, 'cycle-tokens.lua');
  writeFileSync(file, SCRIPT);
  return file;
}

export interface WrkOptions {
  readonly port: number;
  readonly path: string;
  readonly tokenFile: string;
  readonly script: string;
  readonly seconds: number;
  readonly connections: number;
  readonly cpus?: string | undefined;
  /** Index in the token file to start from. */
  readonly offset?: number;
}

/** Runs wrk to completion (it stops by itself after `seconds`; killed 30 s later if it hangs). */
export function runWrk(options: WrkOptions): Promise<WrkResult> {
  const url = `http://127.0.0.1:${options.port}${options.path}`;
  const wrkArgs = [
    '-t1',
    `-c${options.connections}`,
    `-d${options.seconds}s`,
    '--timeout',
    '5s',
    '-s',
    options.script,
    url,
    '--',
    options.path,
    options.tokenFile,
    `127.0.0.1:${options.port}`,
    String(options.offset ?? 0),
  ];
  const [cmd, args] =
    pinningEnabled() && options.cpus !== undefined ? ['taskset', ['-c', options.cpus, 'wrk', ...wrkArgs]] : ['wrk', wrkArgs];
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    trackChild(child);
    let out = '';
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => (out += chunk));
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => (out += chunk));
    const killer = setTimeout(() => child.kill('SIGKILL'), (options.seconds + 30) * 1000);
    let cpu = 0;
    const sampler = setInterval(() => {
      if (child.pid !== undefined) cpu = cpuSeconds([child.pid]).get(child.pid) ?? cpu;
    }, 250);
    child.once('error', reject);
    child.once('exit', (code) => {
      clearTimeout(killer);
      clearInterval(sampler);
      const line = out.split('\n').find((l) => l.startsWith('WRKJSON '));
      if (code !== 0 || line === undefined) {
        reject(new Error(`wrk exited ${code}: ${out.trim().split('\n').slice(-5).join(' | ')}`));
        return;
      }
      const raw = JSON.parse(line.slice(8)) as Record<string, number>;
      const n = (key: string): number => raw[key] ?? 0;
      const seconds = n('duration_us') / 1e6;
      resolve({
        requests: n('requests'),
        seconds,
        rps: n('requests') / seconds,
        non2xx: n('status'),
        socketErrors: n('connect') + n('read') + n('write') + n('timeout'),
        p50Ms: n('p50') / 1000,
        p90Ms: n('p90') / 1000,
        p99Ms: n('p99') / 1000,
        p999Ms: n('p999') / 1000,
        maxMs: n('max') / 1000,
        cpuSeconds: cpu,
      });
    });
  });
}
