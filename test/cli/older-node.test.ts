/**
 * bin/portcullis.js on a Node older than 24 re-runs itself under the pinned Node from node_modules. Node's
 * own flags given to the older node (an operator's `--max-semi-space-size`, say) must reach the pinned one;
 * the inspector's port must go to the child; a flag the pinned Node refuses must be named.
 * Needs a Node older than 24 on the machine, as Debian's /usr/bin/node is here and on CI.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { CLI } from '../helpers/cli.ts';

/** The first node on PATH, or in the usual places, whose major version is below 24. */
function olderNode(): { path: string; version: string } | undefined {
  const dirs = [...(process.env.PATH ?? '').split(':').filter((d) => d !== '' && !d.includes('node_modules')), '/usr/bin', '/usr/local/bin'];
  for (const dir of dirs) {
    const path = `${dir}/node`;
    const r = spawnSync(path, ['-p', 'process.version'], { encoding: 'utf8' });
    const version = r.status === 0 ? r.stdout.trim() : '';
    if (/^v\d+\./.test(version) && Number(version.slice(1).split('.')[0]) < 24) return { path, version };
  }
  return undefined;
}

const older = olderNode();
const skip = older === undefined ? 'no Node older than 24 on this machine' : false;
const PINNED = fileURLToPath(new URL('../../node_modules/.bin/node', import.meta.url));
const pinnedVersion = spawnSync(PINNED, ['-p', 'process.version'], { encoding: 'utf8' }).stdout.trim();

let dir: string;
before(() => {
  dir = mkdtempSync(join(tmpdir(), 'pc-older-node-'));
});
after(() => rmSync(dir, { recursive: true, force: true }));

const escape = (s: string): string => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

test('on an older Node, the CLI runs under the pinned Node and node flags go along', { skip }, () => {
  const { version } = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string };
  // A flag whose effect shows in each process it reaches: the preloaded script names the Node running it.
  const preload = join(dir, 'preload.cjs');
  writeFileSync(preload, "process.stderr.write('preloaded in ' + process.version + '\\n');\n");
  const r = spawnSync(older!.path, ['-r', preload, CLI, '--version'], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  assert.equal(r.stdout.trim(), version);
  assert.match(r.stderr, new RegExp(`preloaded in ${escape(older!.version)}\\n`));
  assert.match(r.stderr, new RegExp(`preloaded in ${escape(pinnedVersion)}\\n`));
});

test('on an older Node, --inspect reaches the pinned Node, which gets the port', { skip }, async () => {
  const port = await new Promise<number>((resolve) => {
    const server = createServer().listen(0, '127.0.0.1', () => {
      const { port: free } = server.address() as { port: number };
      server.close(() => resolve(free));
    });
  });
  const r = spawnSync(older!.path, [`--inspect=127.0.0.1:${port}`, CLI, '--version'], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  assert.equal(r.stderr.split(`Debugger listening on ws://127.0.0.1:${port}/`).length - 1, 2, r.stderr);
  assert.doesNotMatch(r.stderr, /address already in use/);
});

test('on an older Node, a flag the pinned Node refuses is named', { skip }, () => {
  // Taken by Node 18-22, removed in 24. An older Node without it has nothing to show here.
  const flag = '--experimental-network-imports';
  if (spawnSync(older!.path, [flag, '-e', '0']).status !== 0) return;
  const r = spawnSync(older!.path, [flag, CLI, '--version'], { encoding: 'utf8' });
  assert.equal(r.status, 9, r.stderr);
  assert.match(r.stderr, new RegExp(`the pinned Node refused one of the flags given to ${escape(older!.version)}: ${flag}\\n`));
});
