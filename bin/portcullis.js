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
  // Node's own flags go along (`node --max-semi-space-size=16 bin/portcullis.js serve`, bench/README).
  const result = spawnSync(pinned, [...process.execArgv, main, ...process.argv.slice(2)], { stdio: 'inherit' });
  process.exit(result.status ?? 1);
}
