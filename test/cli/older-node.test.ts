/**
 * bin/portcullis.js on a Node older than 24 re-runs itself under the pinned Node from node_modules. Node's
 * own flags given to the older node (an operator's `--max-semi-space-size`, say) must reach the pinned one.
 * Needs a Node older than 24 on the machine, as Debian's /usr/bin/node is here and on CI.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
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
const pinned = spawnSync(process.execPath, ['-p', 'process.version'], { encoding: 'utf8' }).stdout.trim();

test('on an older Node, the CLI runs under the pinned Node and node flags go along', { skip: older === undefined ? 'no Node older than 24 on this machine' : false }, () => {
  const { version } = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string };
  // A flag whose effect shows in each process it reaches: the preloaded module names the Node running it.
  const flag = "--import=data:text/javascript,process.stderr.write('preloaded in '+process.version+'\\n')";
  const r = spawnSync(older!.path, [flag, CLI, '--version'], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  assert.equal(r.stdout.trim(), version);
  assert.match(r.stderr, new RegExp(`preloaded in ${older!.version.replaceAll('.', '\\.')}\\n`));
  assert.match(r.stderr, new RegExp(`preloaded in ${pinned.replaceAll('.', '\\.')}\\n`));
});
