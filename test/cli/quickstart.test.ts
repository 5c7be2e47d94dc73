/**
 * What a newcomer does: `npm start` (the quickstart), then the printed curl lines. Run here through the CLI
 * on free ports; the curl lines are executed as printed (their URL and token), and SIGTERM ends it with 0.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { once } from 'node:events';
import { CLI, watchOutput } from '../helpers/cli.ts';
import { freePort } from '../helpers/ports.ts';

test('quickstart: the printed curl lines give 200 with a token and 401 without; SIGTERM exits 0', async () => {
  const data = mkdtempSync(join(tmpdir(), 'pc-qs-'));
  const port = await freePort();
  const adminPort = await freePort();
  const child = spawn(process.execPath, [CLI, 'quickstart', '--data', data], {
    env: { ...process.env, PORTCULLIS_PORT: String(port), PORTCULLIS_ADMIN_PORT: String(adminPort) },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const out = watchOutput(child.stdout);
  const err = watchOutput(child.stderr);
  let stderr = '';
  try {
    // Wait for the banner's last line instead of sleeping.
    await err.waitFor('Stop: Ctrl-C');
    stderr = err.text();
    const withToken = /curl -i -H "Authorization: Bearer ([^"]+)" (\S+)/.exec(stderr);
    const without = /Without a token[^\n]*\n\s+curl -i (\S+)/.exec(stderr);
    assert.ok(withToken && without, stderr);
    assert.equal(withToken[2], `http://127.0.0.1:${port}/hello`);

    const ok = await fetch(withToken[2]!, { headers: { authorization: `Bearer ${withToken[1]}` } });
    assert.equal(ok.status, 200);
    const echoed = (await ok.json()) as { backend: string; headers: Record<string, string> };
    assert.equal(echoed.backend, 'example');
    assert.equal(echoed.headers['x-user-id'], 'dev-user');
    assert.equal(echoed.headers.authorization, undefined);

    const denied = await fetch(without[1]!);
    assert.equal(denied.status, 401);
    assert.match(denied.headers.get('www-authenticate') ?? '', /^Bearer realm=/);
    assert.equal((await fetch(`http://127.0.0.1:${port}/public/ping`)).status, 200);
    assert.equal((await fetch(`http://127.0.0.1:${adminPort}/readyz`)).status, 200);
  } finally {
    child.kill('SIGTERM');
    const [code] = (await once(child, 'close')) as [number | null];
    rmSync(data, { recursive: true, force: true });
    assert.equal(code, 0, stderr);
  }
  assert.ok(!out.text().includes('Bearer '), 'the access log never contains a token');
});
