#!/usr/bin/env node
/**
 * `portcullis` command line. Each command lives in its own file; this one only assembles them.
 * Exit codes: 0 success, 1 failure at run time, 2 invalid input (config, arguments).
 */
import { Command, CommanderError } from 'commander';
import { registerAudit } from './audit.ts';
import { registerCheck } from './check.ts';
import { registerExplain } from './explain.ts';
import { registerKeys } from './keys.ts';
import { registerQuickstart } from './quickstart.ts';
import { registerServe } from './serve.ts';
import { registerToken } from './token.ts';

const program = new Command('portcullis')
  .description('An access proxy: authenticates every request by JWT and forwards the good ones.')
  .version('0.1.0')
  .exitOverride()
  .configureOutput({ outputError: (text, write) => write(text) });

registerServe(program);
registerCheck(program);
registerExplain(program);
registerKeys(program);
registerToken(program);
registerQuickstart(program);
registerAudit(program);

try {
  await program.parseAsync(process.argv);
} catch (error) {
  if (error instanceof CommanderError) {
    process.exitCode = error.code === 'commander.helpDisplayed' || error.code === 'commander.version' || error.code === 'commander.help' ? 0 : 2;
  } else {
    process.stderr.write(`portcullis: ${(error as Error).message}\n`);
    process.exitCode = 1;
  }
}
