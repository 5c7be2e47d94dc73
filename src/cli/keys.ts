/** `portcullis keys generate`: a signing key pair plus the JWKS that publishes its public half. */
import type { Command } from 'commander';
import { KEYGEN_ALGORITHMS, generateKeyFiles } from '../tools/keygen.ts';
import type { KeygenAlgorithm } from '../tools/keygen.ts';

export function registerKeys(program: Command): void {
  const keys = program.command('keys').description('Manage signing keys for development issuers');
  keys
    .command('generate')
    .description('Write private.pem (0600), public.pem and jwks.json (with a kid) into a directory')
    .requiredOption('--alg <alg>', `algorithm: ${KEYGEN_ALGORITHMS.join(' | ')}`)
    .requiredOption('--out <dir>', 'output directory (created with mode 0700)')
    .option('--kid <kid>', 'key id (default: RFC 7638 thumbprint)')
    .option('--force', 'replace an existing private key')
    .action(async (opts: { alg: string; out: string; kid?: string; force?: boolean }) => {
      if (!(KEYGEN_ALGORITHMS as readonly string[]).includes(opts.alg)) {
        process.stderr.write(`portcullis: --alg must be one of ${KEYGEN_ALGORITHMS.join(', ')}\n`);
        process.exit(2);
      }
      const files = await generateKeyFiles({ alg: opts.alg as KeygenAlgorithm, outDir: opts.out, kid: opts.kid, force: opts.force });
      process.stdout.write(`alg ${files.alg}\nkid ${files.kid}\nprivate key ${files.privateKeyPath}\npublic key  ${files.publicKeyPath}\njwks        ${files.jwksPath}\n`);
    });
}
