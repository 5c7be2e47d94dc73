/**
 * The fixed-count driver of the per-request modes (`--instructions`, `--syscalls`): one GET per token over
 * a few keep-alive connections, answers counted by status. wrk sends for a time, not a count; these modes
 * divide a total by the number of requests, so the count must be exact.
 */
import { closeSync, openSync, readSync } from 'node:fs';
import { Agent, request } from 'node:http';
import type { BenchContext, Contestant } from './contestants.ts';
import { authHeaders } from './scenarios.ts';
import type { Scenario } from './scenarios.ts';

/** Concurrent keep-alive connections of the driver: enough to keep the event loop busy, as wrk does. */
export const CONCURRENCY = 20;

/** What a per-request mode measures: which contestants, under which scenarios, with how many requests. */
export interface CountPlan {
  readonly ctx: BenchContext;
  readonly scenarios: readonly Scenario[];
  readonly contestants: readonly Contestant[];
  /**
   * The token file per scenario, one token per line: the warm-up takes the first `warmRequests`, the
   * measured requests the next `requests` (a file of one token is cycled). With every token new, the
   * warm-up must be new tokens too: V8 optimises for the path it has seen, and re-optimising during the
   * measurement would be counted.
   */
  readonly tokenFile: (scenario: Scenario) => string;
  readonly requests: number;
  readonly warmRequests: number;
  readonly log: (line: string) => void;
}

/**
 * Calls `measure` for every contestant that can run each scenario, with that scenario's warm-up and
 * measured tokens. A baseline does not check the token: it is measured once, under the first scenario that
 * sends one (or the first, when none does).
 */
export async function forEachCount(
  plan: CountPlan,
  measure: (contestant: Contestant, scenario: Scenario, warm: readonly string[], measured: readonly string[]) => Promise<void>,
): Promise<void> {
  // The baselines ignore tokens but still read the request: count them with a token header where one is sent.
  const withToken = plan.scenarios.findIndex((s) => s.tokens !== 'none');
  const baselineIndex = withToken === -1 ? 0 : withToken;
  for (const [index, scenario] of plan.scenarios.entries()) {
    const tokens = readTokens(plan.tokenFile(scenario), plan.warmRequests + plan.requests);
    const warm = tokens.slice(0, plan.warmRequests);
    const measured = tokens.slice(plan.warmRequests);
    for (const contestant of plan.contestants) {
      if (contestant.baseline && index !== baselineIndex) continue;
      const why = contestant.unsupported(scenario, plan.ctx);
      if (why !== undefined) {
        plan.log(`  ${contestant.id}: skipped (${why})`);
        continue;
      }
      await measure(contestant, scenario, warm, measured);
    }
  }
}

/** `count` tokens from the file, cycling when it holds fewer (the same-token files hold one). */
export function readTokens(file: string, count: number): string[] {
  const lines: string[] = [];
  // The token files hold a whole run's pool (tens of MB); only the head is needed.
  const text = readHead(file, count * 2048);
  for (const line of text.split('\n')) {
    if (line !== '') lines.push(line);
    if (lines.length === count) return lines;
  }
  // A cut last line (the head ended mid-token) is dropped by taking only complete ones.
  if (!text.endsWith('\n')) lines.pop();
  if (lines.length === 0) throw new Error(`no tokens in ${file}`);
  const out: string[] = [];
  for (let i = 0; i < count; i++) out.push(lines[i % lines.length]!);
  return out;
}

function readHead(file: string, bytes: number): string {
  const fd = openSync(file, 'r');
  try {
    const buffer = Buffer.alloc(bytes);
    return buffer.subarray(0, readSync(fd, buffer, 0, bytes, 0)).toString('latin1');
  } finally {
    closeSync(fd);
  }
}

/** One GET per token over CONCURRENCY keep-alive connections, answers counted by status. */
export interface Driver {
  send(tokens: readonly string[]): Promise<Record<string, number>>;
  close(): void;
}

/**
 * The connections outlive each `send`, so the warm-up and the measured requests share them. Closing them
 * between the two put every connection's close and the next connect inside the measured window, and with
 * them V8's first optimisation of that code: ~25 functions (the streams' destroy and end-of-stream paths),
 * up to 30k instructions per request in a 5000-request count. A proxy in service keeps its connections.
 */
export function createDriver(port: number, path: string): Driver {
  const agent = new Agent({ keepAlive: true, maxSockets: CONCURRENCY });
  const send = async (tokens: readonly string[]) => {
    const statuses: Record<string, number> = {};
    let next = 0;
    const one = (token: string) =>
      new Promise<void>((resolve, reject) => {
        const req = request({ host: '127.0.0.1', port, path, agent, headers: authHeaders(token) }, (res) => {
          const status = String(res.statusCode);
          statuses[status] = (statuses[status] ?? 0) + 1;
          res.resume();
          res.on('end', resolve);
          res.on('error', reject);
        });
        req.on('error', reject);
        req.end();
      });
    const loop = async () => {
      while (next < tokens.length) await one(tokens[next++]!);
    };
    await Promise.all(Array.from({ length: CONCURRENCY }, loop));
    return statuses;
  };
  return { send, close: () => agent.destroy() };
}
