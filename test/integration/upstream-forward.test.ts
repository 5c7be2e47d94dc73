import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { createServer, request as httpRequest } from 'node:http';
import type {
  ClientRequest,
  IncomingHttpHeaders,
  IncomingMessage,
  OutgoingHttpHeaders,
  Server,
  ServerResponse,
} from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, describe, test } from 'node:test';
import type { UpstreamConfig } from '../../src/config/types.ts';
import { ProxyError, isProxyError } from '../../src/errors.ts';
import { forwardRequest } from '../../src/upstream/forward.ts';
import type { ForwardOutcome } from '../../src/upstream/forward.ts';
import { connectionTokens, isHopByHop } from '../../src/upstream/hop-by-hop.ts';
import { createUpstream } from '../../src/upstream/pool.ts';
import type { Upstream } from '../../src/upstream/pool.ts';
import {
  closedPort,
  startRecordingUpstream,
  startResettingServer,
  startSilentServer,
} from '../helpers/upstream.ts';
import type { RecordingHandler } from '../helpers/upstream.ts';

// Upstream timeouts (60 s) are far above the test timeout, so a test that passes cannot have been rescued
// by a pool timeout: a proxy that leaks a stalled request makes the test time out instead.
const TEST_TIMEOUT = { timeout: 15_000 };

// ---------------------------------------------------------------------------------------------------
// A minimal proxy around forwardRequest, shaped like the real pipeline: clean the request headers,
// forward, and on a rejection write the error answer itself.

type Settled = ForwardOutcome | ProxyError;

interface TestProxy {
  origin: string;
  upstream: Upstream;
  /** The client responses the proxy is writing, in arrival order. */
  responses: ServerResponse[];
  /** The next settled forward (outcome or error), in completion order. */
  settled(): Promise<Settled>;
  close(): Promise<void>;
}

const cleanups: Array<() => Promise<void>> = [];
after(async () => {
  const results = await Promise.allSettled(cleanups.reverse().map((cleanup) => cleanup()));
  const failed = results.find((result) => result.status === 'rejected');
  if (failed) throw failed.reason;
});

function upstreamConfig(targets: string[], overrides: Partial<UpstreamConfig> = {}): UpstreamConfig {
  return {
    id: 'test',
    targets,
    connectTimeoutMs: 60_000,
    timeoutMs: 60_000,
    bodyTimeoutMs: 60_000,
    connections: 8,
    ...overrides,
  };
}

function cleanRequestHeaders(headers: IncomingHttpHeaders): Record<string, string | string[]> {
  const named = connectionTokens(headers.connection);
  const out: Record<string, string | string[]> = {};
  for (const [name, value] of Object.entries(headers)) {
    if (value === undefined || isHopByHop(name) || named.has(name)) continue;
    out[name] = value;
  }
  return out;
}

async function startProxy(
  targets: string[],
  overrides: Partial<UpstreamConfig> = {},
  onResponse?: (res: ServerResponse) => void,
  beforeForward?: (res: ServerResponse) => Promise<void>,
): Promise<TestProxy> {
  const upstream = createUpstream(upstreamConfig(targets, overrides));
  const done: Settled[] = [];
  const waiting: Array<(value: Settled) => void> = [];
  const push = (value: Settled): void => {
    const waiter = waiting.shift();
    if (waiter) waiter(value);
    else done.push(value);
  };

  const responses: ServerResponse[] = [];
  const server = createServer((req, res) => {
    responses.push(res);
    onResponse?.(res);
    const request = {
      method: req.method ?? 'GET',
      path: req.url ?? '/',
      headers: cleanRequestHeaders(req.headers),
    };
    const ready = beforeForward ? beforeForward(res) : Promise.resolve();
    void ready.then(() => forwardRequest(req, res, upstream.next(), request)).then(push, (error: unknown) => {
      assert.ok(isProxyError(error), `forwardRequest rejected with a non-ProxyError: ${String(error)}`);
      // The contract: a rejection leaves res untouched, so this must not throw ERR_HTTP_HEADERS_SENT.
      assert.equal(res.headersSent, false);
      res.writeHead(error.status, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ code: error.code, detail: error.detail }));
      push(error);
    });
  });
  const port = await listen(server);
  const proxy: TestProxy = {
    origin: `http://127.0.0.1:${port}`,
    upstream,
    responses,
    settled() {
      const value = done.shift();
      if (value !== undefined) return Promise.resolve(value);
      return new Promise((resolve) => waiting.push(resolve));
    },
    async close() {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      await upstream.close();
    },
  };
  cleanups.push(() => proxy.close());
  return proxy;
}

async function listen(server: Server): Promise<number> {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return (server.address() as AddressInfo).port;
}

async function recording(handler?: RecordingHandler) {
  const upstream = await startRecordingUpstream(handler ? { handler } : {});
  cleanups.push(() => upstream.close());
  return upstream;
}

// ---------------------------------------------------------------------------------------------------
// A plain node:http client, one connection per request so nothing lingers.

interface ClientResponse {
  status: number;
  statusMessage: string;
  headers: IncomingHttpHeaders;
  rawHeaders: string[];
  body: Buffer;
}

function open(
  origin: string,
  options: { method?: string; path?: string; headers?: OutgoingHttpHeaders } = {},
): ClientRequest {
  const url = new URL(options.path ?? '/', origin);
  return httpRequest(url, { method: options.method ?? 'GET', headers: options.headers, agent: false });
}

function collect(req: ClientRequest): Promise<ClientResponse> {
  return new Promise((resolve, reject) => {
    req.on('error', reject);
    req.on('response', (res: IncomingMessage) => {
      const chunks: Buffer[] = [];
      res.on('data', (chunk: Buffer) => chunks.push(chunk));
      res.on('error', reject);
      res.on('end', () =>
        resolve({
          status: res.statusCode ?? 0,
          statusMessage: res.statusMessage ?? '',
          headers: res.headers,
          rawHeaders: res.rawHeaders,
          body: Buffer.concat(chunks),
        }),
      );
    });
  });
}

async function send(
  origin: string,
  options: { method?: string; path?: string; headers?: OutgoingHttpHeaders; body?: Buffer } = {},
): Promise<ClientResponse> {
  const req = open(origin, options);
  const response = collect(req);
  req.end(options.body);
  return response;
}

function sha256(data: Buffer): string {
  return createHash('sha256').update(data).digest('hex');
}

function payload(size: number, seed: number): Buffer {
  const buffer = Buffer.allocUnsafe(size);
  for (let i = 0; i < size; i++) buffer[i] = (i * 31 + seed) & 0xff;
  return buffer;
}

async function expectOutcome(proxy: TestProxy): Promise<ForwardOutcome> {
  const settled = await proxy.settled();
  assert.ok(!isProxyError(settled), `expected an outcome, got ${String(settled)}`);
  return settled;
}

async function expectError(proxy: TestProxy): Promise<ProxyError> {
  const settled = await proxy.settled();
  assert.ok(isProxyError(settled), `expected a ProxyError, got ${JSON.stringify(settled)}`);
  return settled;
}

// ---------------------------------------------------------------------------------------------------

describe('forwardRequest: balancing and plain requests', () => {
  test('round robin across 3 targets', TEST_TIMEOUT, async () => {
    const upstreams = [await recording(), await recording(), await recording()];
    const proxy = await startProxy(upstreams.map((u) => u.origin));
    const origins: string[] = [];
    for (let i = 0; i < 6; i++) {
      const response = await send(proxy.origin, { path: `/rr/${i}` });
      assert.equal(response.status, 200);
      origins.push((await expectOutcome(proxy)).origin);
    }
    assert.deepEqual(origins, [...upstreams.map((u) => u.origin), ...upstreams.map((u) => u.origin)]);
    assert.deepEqual(
      upstreams.map((u) => u.requests.map((r) => r.url)),
      [
        ['/rr/0', '/rr/3'],
        ['/rr/1', '/rr/4'],
        ['/rr/2', '/rr/5'],
      ],
    );
  });

  test('method, path, query and end-to-end headers arrive; a GET sends no body', TEST_TIMEOUT, async () => {
    const upstream = await recording();
    const proxy = await startProxy([upstream.origin]);
    const response = await send(proxy.origin, {
      path: '/a/b?x=1&y=%20',
      headers: { 'x-custom': 'one', accept: 'application/json' },
    });
    assert.equal(response.status, 200);
    const echoed = JSON.parse(response.body.toString()) as { ok: boolean; method: string; url: string };
    assert.deepEqual([echoed.ok, echoed.method, echoed.url], [true, 'GET', '/a/b?x=1&y=%20']);
    const [recorded] = upstream.requests;
    assert.ok(recorded);
    assert.equal(recorded.headers['x-custom'], 'one');
    assert.equal(recorded.headers['content-length'], undefined);
    assert.equal(recorded.headers['transfer-encoding'], undefined);
    assert.equal(recorded.body.length, 0);
    const outcome = await expectOutcome(proxy);
    assert.deepEqual([outcome.status, outcome.aborted, outcome.origin], [200, false, upstream.origin]);
    assert.ok(outcome.upstreamMs >= 0);
  });

  test('HEAD keeps the upstream content-length and sends no body', TEST_TIMEOUT, async () => {
    const upstream = await recording((req, res) => {
      res.writeHead(200, { 'content-type': 'text/plain', 'content-length': '1234' });
      res.end();
    });
    const proxy = await startProxy([upstream.origin]);
    const response = await send(proxy.origin, { method: 'HEAD', path: '/head' });
    assert.equal(response.status, 200);
    assert.equal(response.headers['content-length'], '1234');
    assert.equal(response.body.length, 0);
    assert.equal(upstream.requests[0]?.method, 'HEAD');
    assert.equal((await expectOutcome(proxy)).aborted, false);
  });

  for (const status of [204, 304]) {
    test(`${status} passes through without a body`, TEST_TIMEOUT, async () => {
      const upstream = await recording((req, res) => {
        res.writeHead(status, { etag: '"v1"' });
        res.end();
      });
      const proxy = await startProxy([upstream.origin]);
      const response = await send(proxy.origin, { path: '/nobody' });
      assert.equal(response.status, status);
      assert.equal(response.headers.etag, '"v1"');
      assert.equal(response.body.length, 0);
      assert.equal((await expectOutcome(proxy)).status, status);
    });
  }
});

describe('forwardRequest: streaming', () => {
  for (const framing of ['content-length', 'chunked'] as const) {
    test(`a 5 MB ${framing} request body streams to the upstream intact`, TEST_TIMEOUT, async () => {
      const body = payload(5 * 1024 * 1024, 7);
      const half = body.length / 2;
      const firstHalfArrived = Promise.withResolvers<void>();
      const upstream = await recording((req, res) => {
        let received = 0;
        req.on('data', (chunk: Buffer) => {
          received += chunk.length;
          if (received >= half) firstHalfArrived.resolve();
        });
        req.on('end', () => res.end(JSON.stringify({ received })));
      });
      const proxy = await startProxy([upstream.origin]);

      const headers: OutgoingHttpHeaders = { 'content-type': 'application/octet-stream' };
      if (framing === 'content-length') headers['content-length'] = body.length;
      const req = open(proxy.origin, { method: 'POST', path: '/upload', headers });
      const response = collect(req);
      req.write(body.subarray(0, half));
      // Only once the upstream holds the first half does the client send the rest: a proxy that
      // buffered the request body would deadlock here and the test would time out.
      await firstHalfArrived.promise;
      req.end(body.subarray(half));

      const answer = await response;
      assert.equal(answer.status, 200);
      const [recorded] = upstream.requests;
      assert.ok(recorded);
      assert.equal(recorded.body.length, body.length);
      assert.equal(sha256(recorded.body), sha256(body));
      if (framing === 'content-length') {
        assert.equal(recorded.headers['content-length'], String(body.length));
      } else {
        assert.equal(recorded.headers['transfer-encoding'], 'chunked');
        assert.equal(recorded.headers['content-length'], undefined);
      }
      assert.equal((await expectOutcome(proxy)).aborted, false);
    });
  }

  test('a 5 MB response body streams to the client intact', TEST_TIMEOUT, async () => {
    const body = payload(5 * 1024 * 1024, 3);
    const half = body.length / 2;
    const clientGotFirstHalf = Promise.withResolvers<void>();
    const upstream = await recording((req, res) => {
      res.writeHead(200, { 'content-type': 'application/octet-stream' });
      res.write(body.subarray(0, half));
      // The second half waits until the client has the first: a buffering proxy deadlocks.
      void clientGotFirstHalf.promise.then(() => res.end(body.subarray(half)));
    });
    const proxy = await startProxy([upstream.origin]);

    const req = open(proxy.origin, { path: '/download' });
    const received = new Promise<Buffer>((resolve, reject) => {
      req.on('error', reject);
      req.on('response', (res: IncomingMessage) => {
        const chunks: Buffer[] = [];
        let length = 0;
        res.on('data', (chunk: Buffer) => {
          chunks.push(chunk);
          length += chunk.length;
          if (length >= half) clientGotFirstHalf.resolve();
        });
        res.on('error', reject);
        res.on('end', () => resolve(Buffer.concat(chunks)));
      });
    });
    req.end();
    const got = await received;
    assert.equal(got.length, body.length);
    assert.equal(sha256(got), sha256(body));
    const outcome = await expectOutcome(proxy);
    assert.deepEqual([outcome.status, outcome.aborted], [200, false]);
  });

  test('a client that stops reading stops the upstream (response backpressure)', TEST_TIMEOUT, async () => {
    // The client does not read at first. The upstream offers 64 MB, writing whenever its socket takes
    // more. A proxy honouring backpressure stops reading the upstream once the client's socket is full;
    // it must then wait for the response's 'drain', so a 'drain' listener appears on it (any correct
    // writer does this, `pipe()` included) while it holds only a little in memory. A proxy without
    // backpressure never waits: it keeps reading, the upstream finishes first, and the bytes it holds
    // for the client pile up.
    const total = 64 * 1024 * 1024;
    const chunk = Buffer.alloc(64 * 1024, 0x5a);
    let proxyBufferedMax = 0;
    const upstreamFinished = Promise.withResolvers<'finished'>();
    const proxyWaits = Promise.withResolvers<'waits'>();
    let proxy: TestProxy | undefined;
    const sample = (): void => {
      proxyBufferedMax = Math.max(proxyBufferedMax, proxy?.responses[0]?.writableLength ?? 0);
    };
    const upstream = await recording((req, res) => {
      res.writeHead(200, { 'content-type': 'application/octet-stream' });
      void (async () => {
        for (let written = 0; written < total; written += chunk.length) {
          sample();
          if (!res.write(chunk)) await new Promise((resolve) => res.once('drain', resolve));
        }
        res.end(() => upstreamFinished.resolve('finished'));
      })();
    });
    proxy = await startProxy([upstream.origin], {}, (res) => {
      res.on('newListener', (event: string | symbol) => {
        if (event === 'drain') {
          sample();
          proxyWaits.resolve('waits');
        }
      });
    });

    const req = open(proxy.origin, { path: '/firehose' });
    const clientRes = Promise.withResolvers<IncomingMessage>();
    const received = new Promise<number>((resolve, reject) => {
      req.on('error', reject);
      req.on('response', (res: IncomingMessage) => {
        clientRes.resolve(res);
        res.pause();
        let length = 0;
        res.on('data', (data: Buffer) => (length += data.length));
        res.on('error', reject);
        res.on('end', () => resolve(length));
      });
    });
    req.end();

    const first = await Promise.race([proxyWaits.promise, upstreamFinished.promise]);
    assert.equal(first, 'waits', `the proxy never waited; it buffered up to ${proxyBufferedMax} bytes`);
    assert.ok(proxyBufferedMax < 1024 * 1024, `the proxy buffered ${proxyBufferedMax} bytes (client stalled)`);
    // Now let the client read: everything arrives, and the proxy's buffer stays small throughout.
    (await clientRes.promise).resume();
    assert.equal(await received, total);
    assert.ok(proxyBufferedMax < 1024 * 1024, `the proxy buffered ${proxyBufferedMax} bytes`);
    assert.equal((await expectOutcome(proxy)).aborted, false);
  });

  test('Expect: 100-continue works and the expectation is not forwarded', TEST_TIMEOUT, async () => {
    const upstream = await recording();
    const proxy = await startProxy([upstream.origin]);
    const body = payload(64 * 1024, 1);
    const req = open(proxy.origin, {
      method: 'PUT',
      path: '/put',
      headers: { expect: '100-continue', 'content-length': body.length },
    });
    const response = collect(req);
    req.on('continue', () => req.end(body));
    req.flushHeaders();
    const answer = await response;
    assert.equal(answer.status, 200);
    const [recorded] = upstream.requests;
    assert.ok(recorded);
    assert.equal(recorded.headers.expect, undefined);
    assert.equal(sha256(recorded.body), sha256(body));
    assert.equal((await expectOutcome(proxy)).aborted, false);
  });
});

describe('forwardRequest: response headers', () => {
  test('hop-by-hop and Connection-named fields are dropped; reason phrase kept', TEST_TIMEOUT, async () => {
    const upstream = await recording((req, res) => {
      res.writeHead(202, 'Queued For Later', [
        'Connection', 'X-Hop-Custom, keep-alive',
        'X-Hop-Custom', 'secret',
        'Keep-Alive', 'timeout=77',
        'Proxy-Authenticate', 'Basic realm="upstream"',
        'Trailer', 'X-Checksum',
        'Upgrade', 'h2c',
        'X-Kept', 'yes',
        'Content-Type', 'text/plain',
      ]);
      res.end('hello');
    });
    const proxy = await startProxy([upstream.origin]);
    const response = await send(proxy.origin, { path: '/hop' });
    assert.equal(response.status, 202);
    assert.equal(response.statusMessage, 'Queued For Later');
    assert.equal(response.body.toString(), 'hello');
    assert.equal(response.headers['x-kept'], 'yes');
    assert.equal(response.headers['content-type'], 'text/plain');
    for (const name of ['x-hop-custom', 'proxy-authenticate', 'trailer', 'upgrade']) {
      assert.equal(response.headers[name], undefined, `${name} must not reach the client`);
    }
    assert.ok(!response.rawHeaders.includes('timeout=77'), 'the upstream Keep-Alive must not be relayed');
    assert.ok(!String(response.headers.connection).toLowerCase().includes('x-hop-custom'));
    assert.equal((await expectOutcome(proxy)).status, 202);
  });

  test('several set-cookie fields stay separate and intact', TEST_TIMEOUT, async () => {
    const cookies = ['a=1; Path=/', 'b=2; Expires=Wed, 21 Oct 2037 07:28:00 GMT; HttpOnly', 'c=3'];
    const upstream = await recording((req, res) => {
      res.setHeader('set-cookie', cookies);
      res.end('ok');
    });
    const proxy = await startProxy([upstream.origin]);
    const response = await send(proxy.origin, { path: '/cookies' });
    assert.deepEqual(response.headers['set-cookie'], cookies);
    const raw: string[] = [];
    for (let i = 0; i < response.rawHeaders.length; i += 2) {
      if (response.rawHeaders[i]?.toLowerCase() === 'set-cookie') raw.push(response.rawHeaders[i + 1] ?? '');
    }
    assert.deepEqual(raw, cookies);
    await expectOutcome(proxy);
  });
});

describe('forwardRequest: upstream failures before the response', () => {
  test('connection refused -> ERR_UPSTREAM_UNREACHABLE', TEST_TIMEOUT, async () => {
    const port = await closedPort();
    const proxy = await startProxy([`http://127.0.0.1:${port}`]);
    const response = await send(proxy.origin, { path: '/refused' });
    assert.equal(response.status, 502);
    assert.deepEqual(JSON.parse(response.body.toString()), {
      code: 'ERR_UPSTREAM_UNREACHABLE',
      detail: 'ECONNREFUSED',
    });
    const error = await expectError(proxy);
    assert.equal(error.code, 'ERR_UPSTREAM_UNREACHABLE');
    assert.equal(error.status, 502);
  });

  test('connection reset -> ERR_UPSTREAM_RESET (502)', TEST_TIMEOUT, async () => {
    const server = await startResettingServer();
    cleanups.push(() => server.close());
    const proxy = await startProxy([server.origin]);
    const response = await send(proxy.origin, { path: '/reset' });
    assert.equal(response.status, 502);
    const error = await expectError(proxy);
    assert.equal(error.code, 'ERR_UPSTREAM_RESET');
    assert.ok(['ECONNRESET', 'UND_ERR_SOCKET', 'EPIPE'].includes(error.detail ?? ''), String(error.detail));
  });

  test('a request body is not lost track of when the upstream resets', TEST_TIMEOUT, async () => {
    const server = await startResettingServer();
    cleanups.push(() => server.close());
    const proxy = await startProxy([server.origin]);
    const response = await send(proxy.origin, {
      method: 'POST',
      path: '/reset-post',
      headers: { 'content-length': 1024 },
      body: payload(1024, 5),
    });
    assert.equal(response.status, 502);
    assert.equal((await expectError(proxy)).code, 'ERR_UPSTREAM_RESET');
  });

  test('a silent upstream -> ERR_UPSTREAM_TIMEOUT (504)', TEST_TIMEOUT, async () => {
    const server = await startSilentServer();
    cleanups.push(() => server.close());
    const proxy = await startProxy([server.origin], { timeoutMs: 200 });
    const response = await send(proxy.origin, { path: '/silent' });
    assert.equal(response.status, 504);
    assert.deepEqual(JSON.parse(response.body.toString()), {
      code: 'ERR_UPSTREAM_TIMEOUT',
      detail: 'UND_ERR_HEADERS_TIMEOUT',
    });
    assert.equal((await expectError(proxy)).status, 504);
  });

  test('a closed upstream pool -> ERR_SHUTTING_DOWN', TEST_TIMEOUT, async () => {
    const upstream = await recording();
    const proxy = await startProxy([upstream.origin]);
    await proxy.upstream.close();
    const response = await send(proxy.origin, { path: '/closed' });
    assert.equal(response.status, 503);
    assert.equal((await expectError(proxy)).code, 'ERR_SHUTTING_DOWN');
    assert.equal(upstream.requests.length, 0);
  });
});

describe('forwardRequest: broken streams and departing clients', () => {
  for (const framing of ['content-length', 'chunked'] as const) {
    test(`an upstream failing after the headers truncates a ${framing} response`, TEST_TIMEOUT, async () => {
      const upstream = await recording((req, res) => {
        const headers: OutgoingHttpHeaders = { 'content-type': 'text/plain' };
        if (framing === 'content-length') headers['content-length'] = '100000';
        res.writeHead(200, headers);
        // Send part of the body, then hang up cleanly once it is on the wire. With chunked framing a
        // proxy that "ended" the client response would produce a complete-looking message.
        res.write('partial', () => res.socket?.end());
      });
      const proxy = await startProxy([upstream.origin]);
      const req = open(proxy.origin, { path: '/truncated' });
      const client = new Promise<{ status: number; complete: boolean; error: boolean; body: string }>(
        (resolve, reject) => {
          req.on('error', reject);
          req.on('response', (res: IncomingMessage) => {
            let body = '';
            let error = false;
            res.on('data', (chunk: Buffer) => (body += chunk.toString()));
            res.on('error', () => (error = true));
            res.on('close', () =>
              resolve({ status: res.statusCode ?? 0, complete: res.complete, error, body }),
            );
          });
        },
      );
      req.end();
      const seen = await client;
      assert.equal(seen.status, 200);
      assert.equal(seen.complete, false, 'the client must not see a complete message');
      assert.equal(seen.error, true);
      assert.equal(seen.body, 'partial');
      const outcome = await expectOutcome(proxy);
      assert.deepEqual([outcome.status, outcome.aborted], [200, true]);
    });
  }

  test('a client leaving while the upstream thinks frees the upstream request', TEST_TIMEOUT, async () => {
    const arrived = Promise.withResolvers<void>();
    const upstreamClosed = Promise.withResolvers<void>();
    const upstream = await recording((req, res) => {
      res.on('close', () => upstreamClosed.resolve());
      arrived.resolve();
      // never answers
    });
    const proxy = await startProxy([upstream.origin]);
    const req = open(proxy.origin, { path: '/slow' });
    req.on('error', () => {});
    req.end();
    await arrived.promise;
    req.destroy();
    await upstreamClosed.promise;
    const outcome = await expectOutcome(proxy);
    assert.deepEqual([outcome.status, outcome.aborted], [499, true]);
  });

  test('a client that left before forwarding opens no upstream request', TEST_TIMEOUT, async () => {
    const upstream = await recording();
    const reachedProxy = Promise.withResolvers<void>();
    const proxy = await startProxy(
      [upstream.origin],
      {},
      () => reachedProxy.resolve(),
      async (res) => {
        // an earlier stage (say, a slow key fetch) is still running when the client gives up
        await new Promise((resolve) => res.once('close', resolve));
      },
    );
    const req = open(proxy.origin, { path: '/gone' });
    req.on('error', () => {});
    req.end();
    await reachedProxy.promise;
    req.destroy();
    const outcome = await expectOutcome(proxy);
    assert.deepEqual([outcome.status, outcome.aborted], [499, true]);
    assert.equal(upstream.requests.length, 0);
  });

  test('a client leaving mid-upload aborts the upstream request', TEST_TIMEOUT, async () => {
    const someArrived = Promise.withResolvers<void>();
    const upstreamClosed = Promise.withResolvers<boolean>();
    const upstream = await recording((req, res) => {
      req.once('data', () => someArrived.resolve());
      res.on('close', () => upstreamClosed.resolve(req.complete));
    });
    const proxy = await startProxy([upstream.origin]);
    const req = open(proxy.origin, {
      method: 'POST',
      path: '/upload',
      headers: { 'content-length': 2 * 1024 * 1024 },
    });
    req.on('error', () => {});
    req.write(payload(512 * 1024, 9));
    await someArrived.promise;
    req.destroy();
    assert.equal(await upstreamClosed.promise, false, 'the upstream saw an incomplete request');
    const outcome = await expectOutcome(proxy);
    assert.deepEqual([outcome.status, outcome.aborted], [499, true]);
  });

  test('a client leaving mid-response aborts the upstream response', TEST_TIMEOUT, async () => {
    const upstreamClosed = Promise.withResolvers<void>();
    const upstream = await recording((req, res) => {
      res.on('close', () => upstreamClosed.resolve());
      res.writeHead(200, { 'content-type': 'application/octet-stream' });
      res.write(payload(1024, 2));
      // ... and the rest never comes
    });
    const proxy = await startProxy([upstream.origin]);
    const req = open(proxy.origin, { path: '/stream' });
    req.on('error', () => {});
    req.on('response', (res: IncomingMessage) => {
      res.on('error', () => {});
      res.once('data', () => req.destroy());
    });
    req.end();
    await upstreamClosed.promise;
    const outcome = await expectOutcome(proxy);
    assert.deepEqual([outcome.status, outcome.aborted], [200, true]);
  });
});
