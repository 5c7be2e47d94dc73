import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runCli } from '../helpers/cli.ts';

let dir: string;
before(() => {
  dir = mkdtempSync(join(tmpdir(), 'pc-cli-check-'));
});
after(() => rmSync(dir, { recursive: true, force: true }));

test('check: a valid config exits 0 with a summary of listeners, issuers and routes', async () => {
  const file = join(dir, 'ok.yaml');
  writeFileSync(file, `
listen: 127.0.0.1:8088
issuers:
  corp: { issuer: https://idp.example.com, jwks_uri: https://idp.example.com/jwks, audiences: [api] }
upstreams:
  api: { targets: ["http://127.0.0.1:3000"] }
routes:
  - { id: api-route, match: { path_prefix: /api/ }, upstream: api }
`);
  const r = await runCli(['check', '-c', file]);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /OK/);
  assert.match(r.stdout, /listen\s+127\.0\.0\.1:8088/);
  assert.match(r.stdout, /corp\s+iss=https:\/\/idp\.example\.com/);
  assert.match(r.stdout, /api-route .*\/api\/\* +-> api +auth required/);
});

test('check: an invalid config exits 2 and lists every problem as FILE:LINE:COL: message', async () => {
  const file = join(dir, 'bad.yaml');
  writeFileSync(file, [
    'listen: 127.0.0.1:8088',
    'issuers:',
    '  corp: { issuer: https://idp, keys: [{ pem_file: nowhere.pem }], clock_skew: soon }',
    'upstreams:',
    '  api: { targets: ["http://127.0.0.1:3000"], conections: 4 }',
    'routes:',
    '  - { id: r, match: { path_prefix: /x/ }, upstream: missing, auth: { issuers: [ghost] } }',
  ].join('\n'));
  const r = await runCli(['check', '-c', file]);
  assert.equal(r.code, 2);
  const lines = r.stderr.split('\n').filter((l) => l.startsWith(file + ':'));
  assert.ok(lines.some((l) => /:3:\d+: .*invalid duration "soon"/.test(l)), r.stderr);
  assert.ok(lines.some((l) => /:5:\d+: unknown key "conections"/.test(l)), r.stderr);
  // The shape problems stop compilation before file and reference checks; fix them and the rest appear.
  writeFileSync(file, [
    'issuers:',
    '  corp: { issuer: https://idp, keys: [{ pem_file: nowhere.pem }] }',
    'upstreams:',
    '  api: { targets: ["http://127.0.0.1:3000"] }',
    'routes:',
    '  - { id: r, match: { path_prefix: /x/ }, upstream: missing, auth: { issuers: [ghost] } }',
  ].join('\n'));
  const r2 = await runCli(['check', '-c', file]);
  assert.equal(r2.code, 2);
  assert.match(r2.stderr, /:2:\d+: .*nowhere\.pem/);
  assert.match(r2.stderr, /:6:\d+: unknown upstream "missing"/);
  assert.match(r2.stderr, /:6:\d+: unknown issuer "ghost"/);
});

test('check: a missing file exits 2 with the reason', async () => {
  const r = await runCli(['check', '-c', join(dir, 'absent.yaml')]);
  assert.equal(r.code, 2);
  assert.match(r.stderr, /absent\.yaml:0:0: cannot read config/);
});

test('--help works on every command', async () => {
  for (const args of [[], ['serve'], ['check'], ['keys'], ['keys', 'generate'], ['token'], ['token', 'mint'], ['quickstart'], ['explain'], ['audit'], ['audit', 'verify'], ['audit', 'query'], ['audit', 'prune'], ['audit', 'export'], ['audit', 'hash'], ['audit', 'keys']]) {
    const r = await runCli([...args, '--help']);
    assert.equal(r.code, 0, `${args.join(' ')} --help: ${r.stderr}`);
    assert.match(r.stdout, /Usage: portcullis/);
  }
});
