import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import type { IncomingHttpHeaders, IncomingMessage, Server } from 'node:http';
import { connect } from 'node:net';
import type { AddressInfo, Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { after, describe, test } from 'node:test';
import { WebSocket } from 'ws';
import { connectionTokens, isHopByHop } from '../../src/upstream/hop-by-hop.ts';
import { proxyWebSocket, writeRawResponse } from '../../src/upstream/websocket.ts';
import { closedPort, startRecordingUpstream, startSilentServer } from '../helpers/upstream.ts';
import type { RecordingUpstreamOptions } from '../helpers/upstream.ts';

const TEST_TIMEOUT = { timeout: 20_000 };

const cleanups: Array<() => Promise<void>> = [];
after(async () => {
  const results = await Promise.allSettled(cleanups.reverse().map((cleanup) => cleanup()));
  const failed = results.find((result) => result.status === 'rejected');
  if (failed) throw failed.reason;
});

// ---------------------------------------------------------------------------------------------------
// A minimal proxy: refuses upgrades without `authorization: Bearer ok` (as the real server does for an
// unauthenticated upgrade), tunnels the others to one origin.

interface WsProxy {
  origin: string;
  /** Settled proxyWebSocket results, in order. */
  result(): Promise<{ status: number }>;
  /** Resolves when the proxy's client-side socket of the n-th upgrade (0-based) has closed. */
  clientSocketClosed(index: number): Promise<void>;
}

function cleanHeaders(headers: IncomingHttpHeaders): Record<string, string | string[]> {
  const named = connectionTokens(headers.connection);
  const out: Record<string, string | string[]> = {};
  for (const [name, value] of Object.entries(headers)) {
    if (value === undefined || isHopByHop(name) || named.has(name) || name === 'authorization') continue;
    out[name] = value;
  }
  return out;
}

async function startWsProxy(targetOrigin: string, timeoutMs = 5_000): Promise<WsProxy> {
  const results: Array<{ status: number }> = [];
  const waiting: Array<(value: { status: number }) => void> = [];
  const closed: Array<Promise<void>> = [];
  const sockets = new Set<Duplex>();

  const server: Server = createServer((req, res) => {
    res.writeHead(404);
    res.end();
  });
  server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    sockets.add(socket);
    closed.push(new Promise((resolve) => socket.once('close', () => resolve())));
    socket.once('close', () => sockets.delete(socket));
    if (req.headers.authorization !== 'Bearer ok') {
      writeRawResponse(
        socket,
        401,
        { 'www-authenticate': 'Bearer realm="test"', 'content-type': 'application/json' },
        '{"error":"ERR_TOKEN_MISSING"}',
      );
      return;
    }
    const request = { path: req.url ?? '/', headers: cleanHeaders(req.headers) };
    void proxyWebSocket(req, socket, head, { origin: targetOrigin }, request, timeoutMs).then((result) => {
      const waiter = waiting.shift();
      if (waiter) waiter(result);
      else results.push(result);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  cleanups.push(async () => {
    for (const socket of sockets) socket.destroy();
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  });
  return {
    origin: `http://127.0.0.1:${port}`,
    result() {
      const value = results.shift();
      if (value) return Promise.resolve(value);
      return new Promise((resolve) => waiting.push(resolve));
    },
    clientSocketClosed(index: number) {
      const promise = closed[index];
      assert.ok(promise, `no upgrade #${index} reached the proxy`);
      return promise;
    },
  };
}

async function recording(opts: RecordingUpstreamOptions = {}) {
  const upstream = await startRecordingUpstream(opts);
  cleanups.push(() => upstream.close());
  return upstream;
}

function wsUrl(origin: string, path: string): string {
  return origin.replace(/^http/, 'ws') + path;
}

async function openWebSocket(url: string, headers: Record<string, string>): Promise<WebSocket> {
  const ws = new WebSocket(url, { headers });
  await new Promise<void>((resolve, reject) => {
    ws.once('open', () => resolve());
    ws.once('error', reject);
    ws.once('unexpected-response', (_req, res) => reject(new Error(`unexpected ${res.statusCode}`)));
  });
  return ws;
}

function nextMessage(ws: WebSocket): Promise<{ data: Buffer; isBinary: boolean }> {
  return new Promise((resolve) =>
    ws.once('message', (data, isBinary) => resolve({ data: data as Buffer, isBinary })),
  );
}

const HANDSHAKE =
  'GET /ws HTTP/1.1\r\n' +
  'Host: proxy.test\r\n' +
  'Connection: Upgrade\r\n' +
  'Upgrade: websocket\r\n' +
  'Sec-WebSocket-Version: 13\r\n' +
  'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n';

/** Sends a raw handshake and reads everything until the proxy closes the connection. */
async function rawExchange(origin: string, extraHeaders: string): Promise<{ head: string; body: string }> {
  const { port } = new URL(origin);
  const socket: Socket = connect(Number(port), '127.0.0.1');
  const chunks: Buffer[] = [];
  socket.on('data', (chunk: Buffer) => chunks.push(chunk));
  await new Promise<void>((resolve, reject) => {
    socket.on('error', reject);
    socket.on('close', () => resolve());
    socket.write(HANDSHAKE + extraHeaders + '\r\n');
  });
  const text = Buffer.concat(chunks).toString('latin1');
  const split = text.indexOf('\r\n\r\n');
  assert.ok(split > 0, `no complete response head in ${JSON.stringify(text)}`);
  return { head: text.slice(0, split), body: text.slice(split + 4) };
}

function headerOf(head: string, name: string): string | undefined {
  for (const line of head.split('\r\n').slice(1)) {
    const colon = line.indexOf(':');
    if (line.slice(0, colon).toLowerCase() === name) return line.slice(colon + 1).trim();
  }
  return undefined;
}

// ---------------------------------------------------------------------------------------------------

describe('proxyWebSocket', () => {
  test('an upgrade is tunnelled and messages flow both ways', TEST_TIMEOUT, async () => {
    const serverSide = Promise.withResolvers<WebSocket>();
    const upstream = await recording({ onWebSocket: (ws) => serverSide.resolve(ws) });
    const proxy = await startWsProxy(upstream.origin);

    const ws = await openWebSocket(wsUrl(proxy.origin, '/loki/api/v1/tail?query=%7Bapp%3D%22x%22%7D'), {
      authorization: 'Bearer ok',
    });
    assert.deepEqual(await proxy.result(), { status: 101 });

    // client -> upstream -> client (echo), text and a large binary message
    const text = nextMessage(ws);
    ws.send('hello');
    assert.deepEqual(await text, { data: Buffer.from('hello'), isBinary: false });
    const big = Buffer.alloc(1024 * 1024, 0xab);
    const binary = nextMessage(ws);
    ws.send(big);
    const echoed = await binary;
    assert.equal(echoed.isBinary, true);
    assert.ok(echoed.data.equals(big));

    // upstream-initiated
    const upstreamWs = await serverSide.promise;
    const pushed = nextMessage(ws);
    upstreamWs.send('from-upstream');
    assert.equal((await pushed).data.toString(), 'from-upstream');

    // the upstream saw the upgrade with the client's handshake fields
    const [recorded] = upstream.requests;
    assert.ok(recorded);
    assert.equal(recorded.url, '/loki/api/v1/tail?query=%7Bapp%3D%22x%22%7D');
    assert.equal(recorded.headers.upgrade, 'websocket');
    assert.match(String(recorded.headers.connection), /upgrade/i);
    assert.ok(recorded.headers['sec-websocket-key']);
    assert.equal(recorded.headers['sec-websocket-version'], '13');
    assert.equal(recorded.headers.authorization, undefined);

    // the client closing tears the tunnel down on both sides
    const upstreamClosed = new Promise<number>((resolve) => upstreamWs.once('close', resolve));
    ws.close(1000, 'done');
    assert.equal(await upstreamClosed, 1000);
    await proxy.clientSocketClosed(0);
  });

  test('the upstream closing reaches the client', TEST_TIMEOUT, async () => {
    const serverSide = Promise.withResolvers<WebSocket>();
    const upstream = await recording({ onWebSocket: (ws) => serverSide.resolve(ws) });
    const proxy = await startWsProxy(upstream.origin);
    const ws = await openWebSocket(wsUrl(proxy.origin, '/ws'), { authorization: 'Bearer ok' });
    const closed = new Promise<[number, string]>((resolve) =>
      ws.once('close', (code, reason) => resolve([code, reason.toString()])),
    );
    (await serverSide.promise).close(1001, 'going away');
    assert.deepEqual(await closed, [1001, 'going away']);
    await proxy.clientSocketClosed(0);
  });

  test('the upstream dropping the connection tears down the client side', TEST_TIMEOUT, async () => {
    const serverSide = Promise.withResolvers<WebSocket>();
    const upstream = await recording({ onWebSocket: (ws) => serverSide.resolve(ws) });
    const proxy = await startWsProxy(upstream.origin);
    const ws = await openWebSocket(wsUrl(proxy.origin, '/ws'), { authorization: 'Bearer ok' });
    ws.on('error', () => {});
    const closed = new Promise<number>((resolve) => ws.once('close', (code) => resolve(code)));
    (await serverSide.promise).terminate();
    assert.equal(await closed, 1006);
    await proxy.clientSocketClosed(0);
  });

  test('a client reset tears down the upstream side', TEST_TIMEOUT, async () => {
    const serverSide = Promise.withResolvers<WebSocket>();
    const upstream = await recording({ onWebSocket: (ws) => serverSide.resolve(ws) });
    const proxy = await startWsProxy(upstream.origin);
    const { port } = new URL(proxy.origin);
    const socket = connect(Number(port), '127.0.0.1');
    socket.on('error', () => {});
    const switched = new Promise<string>((resolve) =>
      socket.once('data', (chunk: Buffer) => resolve(chunk.toString('latin1'))),
    );
    socket.write(HANDSHAKE + 'Authorization: Bearer ok\r\n\r\n');
    assert.match(await switched, /^HTTP\/1\.1 101 /);
    const upstreamWs = await serverSide.promise;
    const upstreamClosed = new Promise<number>((resolve) => upstreamWs.once('close', resolve));
    // RST rather than FIN: the proxy sees an error, not an orderly end, and must still close upstream.
    socket.resetAndDestroy();
    assert.equal(await upstreamClosed, 1006);
    await proxy.clientSocketClosed(0);
  });

  test('a closed port -> 502 with a JSON body on the raw socket', TEST_TIMEOUT, async () => {
    const port = await closedPort();
    const proxy = await startWsProxy(`http://127.0.0.1:${port}`);
    const { head, body } = await rawExchange(proxy.origin, 'Authorization: Bearer ok\r\n');
    assert.ok(head.startsWith('HTTP/1.1 502 Bad Gateway\r\n'), head);
    assert.equal(headerOf(head, 'content-type'), 'application/json');
    assert.equal(headerOf(head, 'connection'), 'close');
    assert.equal(headerOf(head, 'content-length'), String(Buffer.byteLength(body)));
    assert.equal((JSON.parse(body) as { error: string }).error, 'ERR_UPSTREAM_UNREACHABLE');
    assert.deepEqual(await proxy.result(), { status: 502 });
  });

  test('a silent upstream -> 504', TEST_TIMEOUT, async () => {
    const silent = await startSilentServer();
    cleanups.push(() => silent.close());
    const proxy = await startWsProxy(silent.origin, 200);
    const { head, body } = await rawExchange(proxy.origin, 'Authorization: Bearer ok\r\n');
    assert.ok(head.startsWith('HTTP/1.1 504 Gateway Timeout\r\n'), head);
    assert.equal((JSON.parse(body) as { error: string }).error, 'ERR_UPSTREAM_TIMEOUT');
    assert.deepEqual(await proxy.result(), { status: 504 });
  });

  test('a non-101 upstream answer is relayed and the connection closed', TEST_TIMEOUT, async () => {
    const upstream = await recording({
      websocket: false,
      handler: (req, res) => {
        res.writeHead(403, {
          'content-type': 'text/plain',
          'x-reason': 'nope',
          connection: 'x-secret',
          'x-secret': '1',
        });
        res.end('forbidden here');
      },
    });
    const proxy = await startWsProxy(upstream.origin);
    const { head, body } = await rawExchange(proxy.origin, 'Authorization: Bearer ok\r\n');
    assert.ok(head.startsWith('HTTP/1.1 403 Forbidden\r\n'), head);
    assert.equal(headerOf(head, 'x-reason'), 'nope');
    assert.equal(headerOf(head, 'x-secret'), undefined);
    assert.equal(headerOf(head, 'transfer-encoding'), undefined);
    assert.equal(headerOf(head, 'connection'), 'close');
    assert.equal(body, 'forbidden here');
    assert.deepEqual(await proxy.result(), { status: 403 });
    assert.equal(upstream.requests[0]?.headers.upgrade, 'websocket');
  });

  test('a client leaving during the handshake frees the upstream request', TEST_TIMEOUT, async () => {
    const arrived = Promise.withResolvers<void>();
    const upstreamClosed = Promise.withResolvers<void>();
    const upstream = await recording({
      websocket: false,
      handler: (req, res) => {
        res.on('close', () => upstreamClosed.resolve());
        arrived.resolve();
      },
    });
    const proxy = await startWsProxy(upstream.origin);
    const { port } = new URL(proxy.origin);
    const socket = connect(Number(port), '127.0.0.1');
    socket.on('error', () => {});
    socket.write(HANDSHAKE + 'Authorization: Bearer ok\r\n\r\n');
    await arrived.promise;
    socket.destroy();
    await upstreamClosed.promise;
    assert.deepEqual(await proxy.result(), { status: 499 });
  });
});

describe('writeRawResponse', () => {
  test('an unauthenticated upgrade gets a complete 401 and the socket is closed', TEST_TIMEOUT, async () => {
    const upstream = await recording();
    const proxy = await startWsProxy(upstream.origin);
    const { head, body } = await rawExchange(proxy.origin, '');
    assert.ok(head.startsWith('HTTP/1.1 401 Unauthorized\r\n'), head);
    assert.equal(headerOf(head, 'www-authenticate'), 'Bearer realm="test"');
    assert.equal(headerOf(head, 'content-length'), String(Buffer.byteLength(body)));
    assert.equal(body, '{"error":"ERR_TOKEN_MISSING"}');
    await proxy.clientSocketClosed(0);
    assert.equal(upstream.requests.length, 0);
  });

  test('refuses header values that would split the response', TEST_TIMEOUT, async () => {
    const received = Promise.withResolvers<Duplex>();
    const server = createServer();
    server.on('upgrade', (_req: IncomingMessage, socket: Duplex) => received.resolve(socket));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    cleanups.push(async () => {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    });
    const client = connect((server.address() as AddressInfo).port, '127.0.0.1');
    client.on('error', () => {});
    client.write(HANDSHAKE + '\r\n');
    const socket = await received.promise;
    assert.throws(() => writeRawResponse(socket, 401, { 'x-a': 'ok\r\nSet-Cookie: evil=1' }, ''), TypeError);
    assert.throws(() => writeRawResponse(socket, 401, { 'bad name': 'x' }, ''), TypeError);
    assert.equal(socket.writableLength, 0, 'nothing was written');
    socket.destroy();
    client.destroy();
  });
});
