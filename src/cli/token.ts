/** `portcullis token mint`: a signed token for development and tests. */
import { readFileSync } from 'node:fs';
import type { Command } from 'commander';
import { applyClaims, mintToken, parseClaimArg } from '../tools/mint.ts';
import { parseDuration } from '../tools/duration.ts';

export function registerToken(program: Command): void {
  const token = program.command('token').description('Development tokens');
  token
    .command('mint')
    .description('Print a signed JWT (kid defaults to the key thumbprint, matching `keys generate`)')
    .option('--key <file>', 'private key PEM')
    .option('--secret-file <file>', 'HMAC secret file (HS256) instead of --key')
    .requiredOption('--iss <issuer>', 'iss claim')
    .option('--aud <audience...>', 'aud claim (repeatable)')
    .option('--sub <subject>', 'sub claim')
    .option('--claim <k=v>', 'extra claim; value parsed as JSON when it parses; dotted keys nest; [a.b/c]=v keeps a literal name (repeatable)', (v: string, acc: string[]) => [...acc, v], [] as string[])
    .option('--ttl <duration>', 'lifetime, e.g. 15m', '15m')
    .option('--alg <alg>', 'algorithm (inferred from the key by default)')
    .option('--kid <kid>', 'key id header')
    .action(async (opts: { key?: string; secretFile?: string; iss: string; aud?: string[]; sub?: string; claim: string[]; ttl: string; alg?: string; kid?: string }) => {
      if ((opts.key === undefined) === (opts.secretFile === undefined)) {
        process.stderr.write('portcullis: give exactly one of --key or --secret-file\n');
        process.exit(2);
      }
      let claims: Record<string, unknown>;
      let ttlMs: number;
      try {
        claims = applyClaims({}, opts.claim.map(parseClaimArg));
        ttlMs = parseDuration(opts.ttl);
      } catch (error) {
        process.stderr.write(`portcullis: ${(error as Error).message}\n`);
        process.exit(2);
      }
      const aud = opts.aud === undefined ? undefined : opts.aud.length === 1 ? opts.aud[0] : opts.aud;
      const jwt = await mintToken({
        keyFile: opts.key,
        // The proxy trims one trailing newline from secret files (editors add one); mint the same bytes.
        secret: opts.secretFile ? new TextEncoder().encode(readFileSync(opts.secretFile, 'utf8').replace(/\r?\n$/, '')) : undefined,
        alg: opts.alg,
        kid: opts.kid,
        iss: opts.iss,
        aud,
        sub: opts.sub,
        claims,
        ttlMs,
      });
      process.stdout.write(jwt + '\n');
    });
}
