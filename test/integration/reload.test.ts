/**
 * Hot reload: 50 reloads while requests run, with no failed request and the new rules in force after each;
 * an invalid config is refused and the old one keeps serving; issuers' key sets are not refetched.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import { once } from 'node:events';
import { spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { AddressInfo } from 'node:net';
import { createTestSigner } from '../helpers/keys.ts';
import type { TestSigner } from '../helpers/keys.ts';
import { startRecordingUpstream } from '../helpers/upstream.ts';
import { startProxy } from '../helpers/proxy.ts';
import { CLI, watchOutput } from '../helpers/cli.ts';
import { freePort } from '../helpers/ports.ts';
import { reloadConfig } from '../../src/cli/serve.ts';

const ISS = 'https://reload.idp.test';

async function startJwksServer(signer: TestSigner) {
  let hits = 0;
  const server = createServer((_req, res) => {
    hits++;
    res.writeHead(200, { 'content-type': 'application/json', 'cache-control': 'max-age=3600' });
    res.end(JSON.stringify(signer.jwks));
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/jwks`, hits: () => hits, close: () => server.close() };
}

const config = (upstream: string, jwks: string, role: string) => `
issuers:
  corp: { issuer: ${ISS}, jwks_uri: "${jwks}", identity: { roles: [roles] } }
upstreams:
  up: { targets: ["${upstream}"] }
routes:
  - { id: open, match: { path_prefix: /open/ }, auth: { mode: off }, upstream: up }
  - { id: guarded, match: { path_prefix: /guarded/ }, require: { roles: [${role}] }, upstream: up }
`;

test('50 reloads under load: no failed request, new rules in force after each, no JWKS refetch', async () => {
  const signer = await createTestSigner('ES256');
  const jwks = await startJwksServer(signer);
  const upstream = await startRecordingUpstream();
  const proxy = await startProxy(config(upstream.origin, jwks.url, 'r0'));
  const file = join(proxy.dir, 'portcullis.yaml');
  const exp = Math.floor(Date.now() / 1000) + 600;
  const tokens = await Promise.all(Array.from({ length: 51 }, (_, i) => signer.sign({ iss: ISS, sub: `u${i}`, exp, roles: [`r${i}`] })));
  let stop = false;
  const failures: string[] = [];
  let served = 0;
  // Background load: bounded by the reload loop's end (and a hard cap).
  const load = Array.from({ length: 4 }, async () => {
    while (!stop && served < 200_000) {
      const res = await fetch(proxy.url + '/open/ping');
      await res.arrayBuffer();
      served++;
      if (res.status !== 200) failures.push(`open ${res.status}`);
    }
  });
  try {
    const status = async (path: string, token: string) => {
      const res = await fetch(proxy.url + path, { headers: { authorization: `Bearer ${token}` } });
      await res.arrayBuffer();
      return res.status;
    };
    assert.equal(await status('/guarded/x', tokens[0]!), 200);
    for (let i = 1; i <= 50; i++) {
      writeFileSync(file, `listen: 127.0.0.1:0\nadmin: 127.0.0.1:0\n${config(upstream.origin, jwks.url, `r${i}`)}`);
      await reloadConfig(proxy.app, file, 'test');
      assert.equal(await status('/guarded/x', tokens[i]!), 200, `reload ${i}: new role admitted`);
      assert.equal(await status('/guarded/x', tokens[i - 1]!), 403, `reload ${i}: old role refused`);
    }
    stop = true;
    await Promise.all(load);
    assert.deepEqual(failures, []);
    assert.ok(served > 0);
    assert.equal(jwks.hits(), 1, 'unchanged issuer: key set kept across 50 reloads');
    const metrics = await (await fetch(proxy.adminUrl + '/metrics')).text();
    assert.match(metrics, /portcullis_config_reloads_total\{outcome="ok"\} 50/);

    // An invalid config is refused; the previous one keeps serving.
    writeFileSync(file, 'routes: [ { id: broken, upstream: nowhere } ]\n');
    await reloadConfig(proxy.app, file, 'test');
    assert.equal(await status('/guarded/x', tokens[50]!), 200);
    assert.match(await (await fetch(proxy.adminUrl + '/metrics')).text(), /portcullis_config_reloads_total\{outcome="invalid"\} 1/);
    assert.ok(proxy.logs.some((l) => l.msg === 'config reload refused; the previous config keeps serving'));
  } finally {
    stop = true;
    await Promise.all(load);
    await proxy.close();
    await upstream.close();
    jwks.close();
  }
});

test('serve reloads on a file change and on SIGHUP; an invalid edit keeps the old config', async () => {
  const signer = await createTestSigner('ES256');
  const jwks = await startJwksServer(signer);
  const upstream = await startRecordingUpstream();
  const port = await freePort();
  const dir = (await import('node:fs')).mkdtempSync(join((await import('node:os')).tmpdir(), 'pc-reload-'));
  const file = join(dir, 'p.yaml');
  const write = (role: string) => writeFileSync(file, `listen: 127.0.0.1:${port}\nadmin: false\n${config(upstream.origin, jwks.url, role)}`);
  write('first');
  const child = spawn(process.execPath, [CLI, 'serve', '-c', file], { stdio: ['ignore', 'pipe', 'pipe'] });
  const out = watchOutput(child.stdout);
  const exp = Math.floor(Date.now() / 1000) + 600;
  const status = async (role: string) => {
    const res = await fetch(`http://127.0.0.1:${port}/guarded/x`, { headers: { authorization: `Bearer ${await signer.sign({ iss: ISS, exp, roles: [role] })}` } });
    await res.arrayBuffer();
    return res.status;
  };
  const reloads = () => out.text().split('\n').filter((l) => l.includes('"config reloaded"')).length;
  try {
    await out.waitFor('portcullis listening');
    assert.equal(await status('first'), 200);
    write('second');
    await out.waitFor('"trigger":"file change"');
    assert.equal(await status('second'), 200);
    assert.equal(await status('first'), 403);
    writeFileSync(file, 'this: is: not: valid');
    await out.waitFor('config reload refused');
    assert.equal(await status('second'), 200, 'the old config keeps serving');
    write('third');
    const before = reloads();
    child.kill('SIGHUP');
    await out.waitFor('"trigger":"SIGHUP"');
    assert.ok(reloads() > before);
    assert.equal(await status('third'), 200);
  } finally {
    child.kill('SIGTERM');
    await once(child, 'close');
    await upstream.close();
    jwks.close();
    (await import('node:fs')).rmSync(dir, { recursive: true, force: true });
  }
});
