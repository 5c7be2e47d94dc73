/** `portcullis check -c FILE`: validate and compile a config; print a summary or every problem. */
import type { Command } from 'commander';
import { compileConfigFile } from '../config/compile.ts';
import { ConfigError } from '../config/load.ts';
import type { CompiledConfig } from '../config/types.ts';
import { formatDuration } from '../tools/duration.ts';

export function registerCheck(program: Command): void {
  program
    .command('check')
    .description('Validate a config file: exit 0 with a summary, or exit 2 with every problem as FILE:LINE:COL: message')
    .requiredOption('-c, --config <file>', 'config file (YAML)')
    .action(async (opts: { config: string }) => {
      const config = await loadOrExit(opts.config);
      process.stdout.write(summarize(config));
    });
}

/** Compiles a config; on failure prints every problem to stderr and exits 2. */
export async function loadOrExit(file: string): Promise<CompiledConfig> {
  try {
    return await compileConfigFile(file);
  } catch (error) {
    if (error instanceof ConfigError) {
      process.stderr.write(`${error.message}\n${error.problems.length} problem(s) in ${file}\n`);
      process.exit(2);
    }
    throw error;
  }
}

export function summarize(config: CompiledConfig): string {
  const lines: string[] = [`${config.source}: OK`, ''];
  lines.push(`listen  ${config.listen.host}:${config.listen.port}`);
  lines.push(`admin   ${config.admin ? `${config.admin.host}:${config.admin.port}` : 'off'}`);
  lines.push('', `issuers (${config.issuers.length})`);
  for (const i of config.issuers) {
    const sources = [
      i.discoveryUrl ? `discovery ${i.discoveryUrl}` : undefined,
      i.jwksUri ? `jwks_uri ${i.jwksUri}` : undefined,
      ...i.staticKeys.map((k) => ('path' in k ? `${k.kind} ${k.path}` : `${k.kind} ${k.name}`)),
    ].filter(Boolean);
    lines.push(`  ${i.id.padEnd(14)} iss=${i.issuer}`);
    lines.push(`  ${''.padEnd(14)} keys: ${sources.join('; ')}`);
    lines.push(`  ${''.padEnd(14)} aud: ${i.audiences.length ? i.audiences.join(' | ') : '(not checked)'}  algs: ${i.algorithms.join(',')}  skew: ${formatDuration(i.clockSkewSeconds * 1000)}  required: ${i.requiredClaims.join(',') || '-'}`);
  }
  lines.push('', `upstreams (${config.upstreams.length})`);
  for (const u of config.upstreams) lines.push(`  ${u.id.padEnd(14)} ${u.targets.join(', ')}  timeout ${formatDuration(u.timeoutMs)}`);
  lines.push('', `routes (${config.routes.length})`);
  for (const r of config.routes) {
    const match = `${r.host ?? '*'}${r.path.value}${r.path.kind === 'prefix' ? '*' : ''}`;
    const methods = r.methods.length ? r.methods.join(',') : 'any';
    const auth = r.auth.mode === 'off' ? 'auth off' : `auth ${r.auth.mode} (${r.auth.issuers.length ? r.auth.issuers.join(',') : 'any issuer'})`;
    lines.push(`  ${r.id.padEnd(14)} ${methods.padEnd(8)} ${match.padEnd(28)} -> ${r.upstream}  ${auth}`);
  }
  return lines.join('\n') + '\n';
}
