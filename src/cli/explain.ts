/** `portcullis explain`: what the proxy would do with a request, step by step, forwarding nothing. */
import type { Command } from 'commander';
import { explainRequest, formatExplanation } from '../explain.ts';
import { createRuntime, closeRuntime } from '../runtime.ts';
import { createMetrics } from '../metrics.ts';
import { loadOrExit } from './check.ts';

export function registerExplain(program: Command): void {
  program
    .command('explain')
    .description('Show the route, each verification step, each rule and the decision for a request (nothing is forwarded)')
    .requiredOption('-c, --config <file>', 'config file (YAML)')
    .option('--token <jwt>', 'the bearer token (or set PORTCULLIS_TOKEN, which keeps it out of shell history)')
    .option('--method <method>', 'HTTP method', 'GET')
    .requiredOption('--url <url>', 'request URL, e.g. https://api.example.com/v1/users')
    .option('-H, --header <name:value>', 'extra request header (repeatable)', (v: string, acc: string[]) => [...acc, v], [] as string[])
    .option('--json', 'print JSON')
    .action(async (opts: { config: string; token?: string; method: string; url: string; header: string[]; json?: boolean }) => {
      const config = await loadOrExit(opts.config);
      const runtime = await createRuntime(config, { metrics: createMetrics({ defaultMetrics: false }) });
      try {
        await runtime.registry.start();
        const headers: Record<string, string> = {};
        for (const h of opts.header) {
          const i = h.indexOf(':');
          if (i <= 0) throw new Error(`invalid header "${h}": expected name:value`);
          headers[h.slice(0, i).trim()] = h.slice(i + 1).trim();
        }
        const explanation = await explainRequest(runtime, {
          method: opts.method,
          url: opts.url,
          token: opts.token ?? process.env.PORTCULLIS_TOKEN,
          headers,
        });
        process.stdout.write(opts.json ? JSON.stringify(explanation, null, 2) + '\n' : formatExplanation(explanation));
        process.exitCode = explanation.decision.allowed ? 0 : 1;
      } finally {
        await closeRuntime(runtime);
      }
    });
}
