/**
 * `portcullis serve`: SIGTERM stops accepting, lets the in-flight request finish, and exits 0; a SIGHUP
 * during start-up is held and applied once the proxy runs.
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
import { createTestSigner } from '../helpers/keys.ts';

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

test('a SIGHUP while the proxy starts (its issuer keys still being fetched) is held: it starts, then reloads once', async (t) => {
  // The issuer's JWKS answers only when the test says so, so start-up waits inside the key fetch: a
  // window of the test's choosing, where SIGHUP's default action would end the process.
  const signer = await createTestSigner('ES256');
  let release!: () => void;
  const released = new Promise<void>((resolve) => (release = resolve));
  let asked!: () => void;
  const keysAsked = new Promise<void>((resolve) => (asked = resolve));
  const idp = createServer((_req, res) => {
    asked();
    void released.then(() => {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify(signer.jwks));
    });
  });
  idp.listen(0, '127.0.0.1');
  await once(idp, 'listening');
  const dir = mkdtempSync(join(tmpdir(), 'pc-serve-'));
  t.after(() => {
    release();
    idp.closeAllConnections();
    idp.close();
    rmSync(dir, { recursive: true, force: true });
  });
  const port = await freePort();
  const file = join(dir, 'p.yaml');
  writeFileSync(file, `
listen: 127.0.0.1:${port}
admin: false
issuers:
  corp: { issuer: https://start.idp.test, jwks_uri: "http://127.0.0.1:${(idp.address() as AddressInfo).port}/jwks" }
upstreams:
  up: { targets: ["http://127.0.0.1:9"] }
routes:
  - { id: api, match: { path_prefix: / }, upstream: up }
`);
  const child = spawn(process.execPath, [CLI, 'serve', '-c', file, '--no-watch'], { stdio: ['ignore', 'pipe', 'pipe'] });
  t.after(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  });
  const out = watchOutput(child.stdout);
  await keysAsked;
  child.kill('SIGHUP');
  release();
  await out.waitFor('"msg":"portcullis listening"');
  await out.waitFor('"msg":"config reloaded"');
  // Started once and reloaded once: the held signal was neither fatal nor lost nor doubled.
  assert.equal(out.text().split('"msg":"portcullis listening"').length - 1, 1);
  assert.equal(out.text().split('"msg":"config reloaded"').length - 1, 1);
  child.kill('SIGTERM');
  const [code] = (await once(child, 'close')) as [number | null];
  assert.equal(code, 0, out.text());
});
