/**
 * `portcullis serve`: SIGTERM stops accepting, lets the in-flight request finish, and exits 0.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createServer } from 'node:http';
import type { ServerResponse } from 'node:http';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { once } from 'node:events';
import type { AddressInfo } from 'node:net';
import { CLI, watchOutput } from '../helpers/cli.ts';
import { freePort } from '../helpers/ports.ts';

test('SIGTERM drains the in-flight request, then exits 0', async () => {
  // An upstream that holds the response until the test releases it.
  let held: ServerResponse | undefined;
  let arrived!: () => void;
  const arrival = new Promise<void>((resolve) => (arrived = resolve));
  const upstream = createServer((_req, res) => {
    held = res;
    arrived();
  });
  upstream.listen(0, '127.0.0.1');
  await once(upstream, 'listening');
  const dir = mkdtempSync(join(tmpdir(), 'pc-serve-'));
  const port = await freePort();
  const file = join(dir, 'p.yaml');
  writeFileSync(file, `
listen: 127.0.0.1:${port}
admin: false
upstreams:
  up: { targets: ["http://127.0.0.1:${(upstream.address() as AddressInfo).port}"] }
routes:
  - { id: open, match: { path_prefix: / }, auth: { mode: off }, upstream: up }
`);
  const child = spawn(process.execPath, [CLI, 'serve', '-c', file], { stdio: ['ignore', 'pipe', 'pipe'] });
  const out = watchOutput(child.stdout);
  const waitFor = out.waitFor;
  try {
    await waitFor('portcullis listening');
    const pending = fetch(`http://127.0.0.1:${port}/slow`);
    await arrival;
    child.kill('SIGTERM');
    await waitFor('shutting down');
    held!.writeHead(200, { 'content-type': 'text/plain' });
    held!.end('done');
    const res = await pending;
    assert.equal(res.status, 200);
    assert.equal(await res.text(), 'done');
    const [code] = (await once(child, 'close')) as [number | null];
    assert.equal(code, 0);
  } finally {
    child.kill('SIGKILL');
    upstream.closeAllConnections();
    upstream.close();
    rmSync(dir, { recursive: true, force: true });
  }
});
