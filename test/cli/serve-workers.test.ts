/**
 * `serve --workers 2`: workers share the port, the primary's admin listener aggregates their metrics, and
 * SIGTERM drains every worker and exits 0.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { request } from 'node:http';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { once } from 'node:events';
import { CLI, watchOutput } from '../helpers/cli.ts';
import { freePort } from '../helpers/ports.ts';
import { startRecordingUpstream } from '../helpers/upstream.ts';

function getClosing(url: string): Promise<number> {
  // connection: close, so each request is a new connection the cluster hands to the next worker.
  return new Promise((resolve, reject) => {
    const req = request(url, { headers: { connection: 'close' } }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode ?? 0));
    });
    req.on('error', reject);
    req.end();
  });
}

test('two workers serve one port; metrics are aggregated; SIGTERM exits 0', async () => {
  const upstream = await startRecordingUpstream();
  const dir = mkdtempSync(join(tmpdir(), 'pc-workers-'));
  const port = await freePort();
  const adminPort = await freePort();
  const file = join(dir, 'p.yaml');
  writeFileSync(file, `
listen: 127.0.0.1:${port}
admin: 127.0.0.1:${adminPort}
upstreams:
  up: { targets: ["${upstream.origin}"] }
routes:
  - { id: open, match: { path_prefix: / }, auth: { mode: off }, upstream: up }
`);
  const child = spawn(process.execPath, [CLI, 'serve', '-c', file, '--workers', '2'], { stdio: ['ignore', 'pipe', 'pipe'] });
  const out = watchOutput(child.stdout);
  try {
    // Two workers and the primary each log "portcullis listening".
    await out.waitFor('portcullis listening', 3);
    const statuses = [];
    for (let i = 0; i < 20; i++) statuses.push(await getClosing(`http://127.0.0.1:${port}/x${i}`));
    assert.deepEqual(new Set(statuses), new Set([200]));
    await out.waitFor('"path":"/x19"');
    const pids = new Set(out.text().split('\n').filter((l) => l.includes('"msg":"request"')).map((l) => (JSON.parse(l) as { pid: number }).pid));
    assert.equal(pids.size, 2, 'both workers served requests');
    const metrics = await (await fetch(`http://127.0.0.1:${adminPort}/metrics`)).text();
    assert.match(metrics, /portcullis_requests_total\{route="open",status="200"\} 20/);
  } finally {
    child.kill('SIGTERM');
    const [code] = (await once(child, 'close')) as [number | null];
    await upstream.close();
    rmSync(dir, { recursive: true, force: true });
    assert.equal(code, 0, out.text());
  }
});
