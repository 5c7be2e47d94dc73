#!/usr/bin/env node
// Entry point for `npx portcullis`. The sources are TypeScript run directly by Node >= 24 (type stripping);
// on an older Node (the machine's default may be older than the pinned one) re-run under the project's
// pinned Node from node_modules, so `npx portcullis` works on any machine after `npm install`.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const major = Number(process.versions.node.split('.')[0]);
const main = fileURLToPath(new URL('../src/cli/main.ts', import.meta.url));
if (major >= 24) {
  await import(main);
} else {
  const pinned = fileURLToPath(new URL('../node_modules/.bin/node', import.meta.url));
  if (!existsSync(pinned)) {
    process.stderr.write(`portcullis needs Node >= 24 (this is ${process.version}); run npm install first\n`);
    process.exit(2);
  }
  // Node's own flags go along (`node --max-semi-space-size=16 bin/portcullis.js serve`, bench/README),
  // except code given with -e/-p: it already ran here, and it is what loaded this file.
  const flags = withoutEval(process.execArgv);
  // The inspector's port is taken by this launcher; free it so that the child, the real program, gets it.
  if (flags.some((flag) => flag.startsWith('--inspect'))) (await import('node:inspector')).close();
  const result = spawnSync(pinned, [...flags, main, ...process.argv.slice(2)], { stdio: 'inherit' });
  // 9 is node's "invalid argument": a flag this older Node took that the pinned one does not know.
  if (result.status === 9 && flags.length > 0) {
    process.stderr.write(`portcullis: the pinned Node refused one of the flags given to ${process.version}: ${flags.join(' ')}\n`);
  }
  process.exit(result.status ?? 1);
}

/** `execArgv` without -e/--eval/-p/--print and their code. */
function withoutEval(execArgv) {
  const out = [];
  for (let i = 0; i < execArgv.length; i++) {
    const flag = execArgv[i];
    if (flag === '-e' || flag === '--eval' || flag === '-p' || flag === '--print') i++;
    else if (!flag.startsWith('--eval=') && !flag.startsWith('--print=')) out.push(flag);
  }
  return out;
}
