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
import { CLI, runCli, watchOutput } from '../helpers/cli.ts';
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

    // The two Loki lines: the same query, a staging token sees only staging lines, the other both.
    const lokiLines = [...stderr.matchAll(/curl -s -G (\S+) --data-urlencode '(query=[^']+)' -H "Authorization: Bearer ([^"]+)"/g)];
    assert.equal(lokiLines.length, 2, stderr);
    const linesFor = async (m: RegExpMatchArray) => {
      const url = `${m[1]}?${new URLSearchParams([m[2]!.split(/=(.*)/s).slice(0, 2) as [string, string]])}`;
      const res = await fetch(url, { headers: { authorization: `Bearer ${m[3]}` } });
      assert.equal(res.status, 200);
      const body = (await res.json()) as { data: { result: { stream: { env: string }; values: [string, string][] }[] } };
      return body.data.result.flatMap((r) => r.values.map((v) => `${r.stream.env}: ${v[1]}`));
    };
    const stagingLines = await linesFor(lokiLines[0]!);
    assert.ok(stagingLines.length > 0 && stagingLines.every((l) => l.startsWith('staging: ')), stagingLines.join('\n'));
    const allLines = await linesFor(lokiLines[1]!);
    assert.ok(allLines.some((l) => l.startsWith('production: ')) && allLines.some((l) => l.startsWith('staging: ')), allLines.join('\n'));

    // The explain line, as printed (its token travels in the environment).
    const explainLine = /PORTCULLIS_TOKEN=(\S+) npx portcullis explain -c (\S+) --url '([^']+)'/.exec(stderr);
    assert.ok(explainLine, stderr);
    const explained = await runCli(['explain', '-c', explainLine[2]!, '--url', explainLine[3]!], {
      env: { PORTCULLIS_TOKEN: explainLine[1]!, PORTCULLIS_QUICKSTART_DATA: data, PORTCULLIS_ADMIN_PORT: String(adminPort), PORTCULLIS_PORT: String(port) },
    });
    assert.equal(explained.code, 0, explained.stderr + explained.stdout);
    assert.match(explained.stdout, /enforced query \{app="api", env="staging"\}/);
  } finally {
    child.kill('SIGTERM');
    const [code] = (await once(child, 'close')) as [number | null];
    rmSync(data, { recursive: true, force: true });
    assert.equal(code, 0, stderr);
  }
  assert.ok(!out.text().includes('Bearer '), 'the access log never contains a token');
});
