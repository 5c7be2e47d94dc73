/**
 * Forwarding through the real proxy: round robin, path rewrite, streaming both ways, hop-by-hop headers,
 * 502/504, WebSocket upgrades authenticated then piped, and the admin listener.
 */
import { test, before, after, beforeEach } from 'node:test';
import assert from 'node:assert/strict';
import { request } from 'node:http';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { connect } from 'node:net';
import { once } from 'node:events';
import { WebSocket } from 'ws';
import { createTestSigner } from '../helpers/keys.ts';
import type { TestSigner } from '../helpers/keys.ts';
import { closedPort, startRecordingUpstream, startResettingServer, startSilentServer } from '../helpers/upstream.ts';
import type { RawServer, RecordingUpstream } from '../helpers/upstream.ts';
import { startProxy } from '../helpers/proxy.ts';
import type { RunningProxy } from '../helpers/proxy.ts';

const ISS = 'https://idp.forward.test';
let signer: TestSigner;
let a: RecordingUpstream;
let b: RecordingUpstream;
let streaming: RecordingUpstream;
let resetting: RawServer;
let silent: RawServer;
let proxy: RunningProxy;
let token: string;
/** Resolves when the streaming upstream saw the first request chunk; the test then sends the rest. */
let firstChunk: Promise<void>;
let releaseResponse: (() => void) | undefined;

before(async () => {
  signer = await createTestSigner('ES256');
  token = await signer.sign({ iss: ISS, sub: 'svc', exp: Math.floor(Date.now() / 1000) + 600 });
  a = await startRecordingUpstream();
  b = await startRecordingUpstream();
  streaming = await startRecordingUpstream({ handler: streamingHandler });
  resetting = await startResettingServer();
  silent = await startSilentServer();
  const dead = await closedPort();
  proxy = await startProxy(
    `
issuers:
  corp: { issuer: ${ISS}, keys: [{ jwks_file: jwks.json }] }
upstreams:
  pair: { targets: ["${a.origin}", "${b.origin}"] }
  stream: { targets: ["${streaming.origin}"] }
  dead: { targets: ["http://127.0.0.1:${dead}"] }
  reset: { targets: ["${resetting.origin}"] }
  silent: { targets: ["${silent.origin}"], timeout: 300ms }
routes:
  - { id: stream, match: { path_prefix: /stream/ }, upstream: stream }
  - { id: dead, match: { path_prefix: /dead/ }, upstream: dead }
  - { id: reset, match: { path_prefix: /reset/ }, upstream: reset }
  - { id: silent, match: { path_prefix: /silent/ }, upstream: silent }
  - { id: rewrite, match: { path_prefix: /svc/v1 }, upstream: pair, rewrite_prefix: /internal }
  - { id: strip, match: { path_prefix: /strip/ }, upstream: pair, rewrite_prefix: "" }
  - { id: nows, match: { path_prefix: /nows/ }, upstream: pair, websocket: false }
  - { id: pair, match: { path_prefix: / }, upstream: pair }
`,
    { files: { 'jwks.json': JSON.stringify(signer.jwks) } },
  );
});

after(async () => {
  await proxy.close();
  await Promise.all([a.close(), b.close(), streaming.close(), resetting.close(), silent.close()]);
});

beforeEach(() => {
  a.reset();
  b.reset();
  streaming.reset();
});

const auth = () => ({ authorization: `Bearer ${token}` });

function streamingHandler(req: IncomingMessage, res: ServerResponse): void {
  // Acknowledge the first body chunk before the client has sent the rest: proof the proxy streams.
  let signalled = false;
  req.on('data', () => {
    if (!signalled) {
      signalled = true;
      firstChunkSeen?.();
    }
  });
  req.on('end', () => {
    res.writeHead(200, { 'content-type': 'text/plain' });
    res.write('part-1;');
    // The second part is written only when the test has received the first: response streaming.
    releaseResponse = () => res.end('part-2');
  });
}
let firstChunkSeen: (() => void) | undefined;

test('round robin across targets, Authorization stripped by default', async () => {
  for (let i = 0; i < 4; i++) assert.equal((await fetch(proxy.url + '/rr', { headers: auth() })).status, 200);
  assert.equal(a.requests.length, 2);
  assert.equal(b.requests.length, 2);
  assert.equal(a.requests[0]!.headers.authorization, undefined);
});

test('path prefix rewrite and strip', async () => {
  await fetch(proxy.url + '/svc/v1/users?id=7', { headers: auth() });
  await fetch(proxy.url + '/strip/x/y', { headers: auth() });
  const urls = [...a.requests, ...b.requests].map((r) => r.url).sort();
  assert.deepEqual(urls, ['/internal/users?id=7', '/x/y']);
});

test('request and response bodies stream through without buffering', async () => {
  firstChunk = new Promise<void>((resolve) => (firstChunkSeen = resolve));
  const req = request(proxy.url + '/stream/upload', { method: 'POST', headers: { ...auth(), 'transfer-encoding': 'chunked' } });
  const response = new Promise<IncomingMessage>((resolve) => req.once('response', resolve));
  req.write(Buffer.alloc(64 * 1024, 1));
  await firstChunk; // the upstream has part of the body while the client still holds the rest
  req.end(Buffer.alloc(64 * 1024, 2));
  const res = await response;
  assert.equal(res.statusCode, 200);
  const [first] = (await once(res, 'data')) as [Buffer];
  assert.equal(first.toString(), 'part-1;');
  releaseResponse!(); // the client has the first part before the upstream finished the response
  let rest = '';
  for await (const chunk of res) rest += (chunk as Buffer).toString();
  assert.equal(rest, 'part-2');
  assert.equal(streaming.requests[0]!.body.length, 128 * 1024);
});

test('hop-by-hop request headers are dropped, end-to-end ones kept', async () => {
  await new Promise<void>((resolve, reject) => {
    const req = request(proxy.url + '/hop', {
      headers: { ...auth(), connection: 'keep-alive, x-drop-me', 'x-drop-me': '1', 'keep-alive': 'timeout=5', te: 'trailers', 'x-keep': 'yes', 'proxy-authorization': 'Basic abc' },
    }, (res) => {
      res.resume();
      res.on('end', resolve);
    });
    req.on('error', reject);
    req.end();
  });
  const seen = [...a.requests, ...b.requests][0]!.headers;
  assert.equal(seen['x-drop-me'], undefined);
  assert.equal(seen['keep-alive'], undefined);
  assert.equal(seen.te, undefined);
  assert.equal(seen['proxy-authorization'], undefined);
  assert.equal(seen['x-keep'], 'yes');
});

test('header names that are Object.prototype members are forwarded like any other; __proto__ is dropped', async () => {
  const socket = connect(Number(new URL(proxy.url).port), '127.0.0.1');
  await once(socket, 'connect');
  socket.write(
    `GET /proto HTTP/1.1\r\nHost: forward.test\r\nAuthorization: Bearer ${token}\r\nconstructor: c1\r\ntoString: t1\r\n` +
      'X-Dup: 1\r\nX-Dup: 2\r\n__proto__: p\r\nConnection: close\r\n\r\n',
  );
  const chunks: Buffer[] = [];
  for await (const chunk of socket) chunks.push(chunk as Buffer);
  assert.match(Buffer.concat(chunks).toString('latin1'), /^HTTP\/1\.1 200 /);
  const raw = [...a.requests, ...b.requests].find((r) => r.url === '/proto')!.rawHeaders;
  const values = (name: string) => raw.filter((_, i) => i % 2 === 1 && raw[i - 1]!.toLowerCase() === name);
  assert.deepEqual(values('constructor'), ['c1']);
  assert.deepEqual(values('tostring'), ['t1']);
  assert.deepEqual(values('x-dup'), ['1', '2']);
  assert.deepEqual(values('__proto__'), []);
});

test('a refused upstream is 502, a reset one 502, a silent one 504', async () => {
  const dead = await fetch(proxy.url + '/dead/x', { headers: auth() });
  assert.equal(dead.status, 502);
  assert.equal(((await dead.json()) as { code: string }).code, 'ERR_UPSTREAM_UNREACHABLE');
  const reset = await fetch(proxy.url + '/reset/x', { headers: auth() });
  assert.equal(reset.status, 502);
  assert.match(((await reset.json()) as { code: string }).code, /^ERR_UPSTREAM_(RESET|UNREACHABLE)$/);
  const slow = await fetch(proxy.url + '/silent/x', { headers: auth() });
  assert.equal(slow.status, 504);
  assert.equal(((await slow.json()) as { code: string }).code, 'ERR_UPSTREAM_TIMEOUT');
  const metrics = await (await fetch(proxy.adminUrl + '/metrics')).text();
  assert.match(metrics, /portcullis_upstream_errors_total\{upstream="silent",reason="ERR_UPSTREAM_TIMEOUT"\} 1/);
});

test('a WebSocket upgrade is authenticated, then piped both ways', async () => {
  const ws = new WebSocket(proxy.url.replace('http', 'ws') + '/chat', { headers: auth() });
  await once(ws, 'open');
  ws.send('hello');
  const [data] = (await once(ws, 'message')) as [Buffer];
  assert.equal(data.toString(), 'hello');
  ws.close();
  await once(ws, 'close');
  const upgrade = [...a.requests, ...b.requests][0]!;
  assert.equal(upgrade.headers.authorization, undefined, 'credential stripped on upgrades too');
  assert.equal(upgrade.headers['x-forwarded-for'], '127.0.0.1');
});

test('a WebSocket upgrade without a token is refused with 401 and never reaches the upstream', async () => {
  const ws = new WebSocket(proxy.url.replace('http', 'ws') + '/chat');
  ws.on('error', () => {}); // the refused handshake also surfaces as an error event
  const [, res] = (await once(ws, 'unexpected-response')) as [unknown, IncomingMessage];
  assert.equal(res.statusCode, 401);
  assert.match(res.headers['www-authenticate'] ?? '', /^Bearer realm=/);
  res.resume();
  ws.terminate();
  const disabled = new WebSocket(proxy.url.replace('http', 'ws') + '/nows/x', { headers: auth() });
  disabled.on('error', () => {});
  const [, res2] = (await once(disabled, 'unexpected-response')) as [unknown, IncomingMessage];
  assert.equal(res2.statusCode, 404);
  res2.resume();
  disabled.terminate();
  assert.equal(a.requests.length + b.requests.length, 0);
});

test('malformed requests get a clear 400 and the process stays up', async () => {
  const socket = connect(Number(new URL(proxy.url).port), '127.0.0.1');
  await once(socket, 'connect');
  socket.end('GET /x HTTP/1.1\r\nHost: a\r\nBad Header Line\r\n\r\n');
  let raw = '';
  for await (const chunk of socket) raw += (chunk as Buffer).toString();
  assert.match(raw, /^HTTP\/1\.1 400 /);
  assert.match(raw, /ERR_REQUEST_INVALID/);
  const big = await fetch(proxy.url + '/x', { headers: { ...auth(), 'x-big': 'y'.repeat(40_000) } });
  assert.equal(big.status, 431);
  assert.equal((await fetch(proxy.url + '/x', { headers: auth() })).status, 200, 'still serving');
});

test('admin listener: healthz, readyz, metrics with bounded labels', async () => {
  assert.equal((await fetch(proxy.adminUrl + '/healthz')).status, 200);
  const ready = await fetch(proxy.adminUrl + '/readyz');
  assert.equal(ready.status, 200);
  assert.deepEqual(((await ready.json()) as { issuers: unknown }).issuers, [{ id: 'corp', ready: true }]);
  await fetch(proxy.url + '/x', { headers: auth() });
  const metrics = await (await fetch(proxy.adminUrl + '/metrics')).text();
  assert.match(metrics, /portcullis_requests_total\{route="pair",status="200"\} [1-9]/);
  assert.match(metrics, /portcullis_upstream_duration_seconds_bucket\{le="[^"]+",upstream="pair",status="200"\}/);
  assert.match(metrics, /portcullis_jwks_keys\{issuer="corp"\} 1/);
  assert.match(metrics, /portcullis_token_remaining_seconds_count\{issuer="corp"\} [1-9]/);
  assert.ok(!metrics.includes('svc'), 'no subject in labels');
  assert.ok(!metrics.includes('/x'), 'no path in labels');
  assert.equal((await fetch(proxy.adminUrl + '/nope')).status, 404);
});
