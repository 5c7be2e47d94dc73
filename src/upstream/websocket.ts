/**
 * WebSocket (and any HTTP/1.1 Upgrade) tunnelling. The proxy authenticates the upgrade request like any
 * other, then opens its own upgrade request to the target and, once both sides have switched protocols,
 * copies bytes both ways. Frames are not parsed: after the 101 the connection is the application's
 * (RFC 6455 §4.1, RFC 9110 §7.8), and a proxy that re-frames would only add latency and bugs.
 *
 * One upstream connection per tunnel, outside the keep-alive pools: an upgraded connection never returns
 * to a pool.
 */
import { STATUS_CODES, request as httpRequest, validateHeaderName, validateHeaderValue } from 'node:http';
import type { ClientRequest, IncomingMessage } from 'node:http';
import { request as httpsRequest } from 'node:https';
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { ERRORS } from '../errors.ts';
import type { ErrorCode } from '../errors.ts';
import { classifyUpstreamError } from './forward.ts';
import { connectionTokens, isHopByHop } from './hop-by-hop.ts';

/** Status reported when the client left before the upstream answered (nginx's 499). */
const CLIENT_CLOSED_REQUEST = 499;

/** Bytes a client may send before the upstream's 101 before we stop reading it. */
const MAX_EARLY_BYTES = 64 * 1024;

/**
 * Tunnels an authenticated upgrade request (from the server's `upgrade` event) to `target`.
 *
 * `request.headers` are the end-to-end fields to send (lower-case names, `host` set, hop-by-hop removed)
 * including the client's `sec-websocket-*` fields; `Connection: Upgrade` and `Upgrade: websocket` are
 * added here (they are hop-by-hop, RFC 9110 §7.6.1, so each hop sets its own). `head` (bytes the client
 * sent after its request) is forwarded once the upstream accepted.
 *
 * Outcomes, all resolved (never rejected) once the client has its answer:
 * - upstream `101`: its status line and header fields are written to the client verbatim, bytes are
 *   piped both ways, resolves `{ status: 101 }` while the tunnel stays open. Either side closing ends
 *   the other after its pending bytes are flushed (bounded by `timeoutMs`); an error destroys both.
 * - any other upstream answer: relayed as a plain HTTP response with `Connection: close`, then closed;
 *   resolves with that status.
 * - connection refused, reset or unreachable: `502 Bad Gateway` with a JSON body
 *   (`{"error":"ERR_UPSTREAM_UNREACHABLE",...}`, as the error table says), resolves `{ status: 502 }`.
 * - no answer within `timeoutMs` (connect and handshake): `504`, `{ status: 504 }`.
 * - the client left first: the upstream request is destroyed, resolves `{ status: 499 }`.
 *
 * @example
 * server.on('upgrade', (req, socket, head) => {
 *   // ... authenticate, or writeRawResponse(socket, 401, { 'www-authenticate': 'Bearer realm="x"' }, '')
 *   void proxyWebSocket(req, socket, head, upstream.next(), { path: req.url!, headers }, 10_000);
 * });
 */
export function proxyWebSocket(
  req: IncomingMessage,
  client: Duplex,
  head: Buffer,
  target: { origin: string },
  request: { path: string; headers: Record<string, string | string[]> },
  timeoutMs: number,
): Promise<{ status: number }> {
  const { promise, resolve } = Promise.withResolvers<{ status: number }>();
  // After the server hands us an upgraded socket nothing else listens for its errors; an unhandled
  // 'error' (a reset from the client) would crash the process.
  client.on('error', destroySelf);
  if (client.destroyed) {
    resolve({ status: CLIENT_CLOSED_REQUEST });
    return promise;
  }

  const url = new URL(target.origin);
  const send = url.protocol === 'https:' ? httpsRequest : httpRequest;
  let settled = false;
  let timedOut = false;

  const upstream: ClientRequest = send({
    protocol: url.protocol,
    // URL keeps IPv6 literals bracketed; the socket layer wants them bare.
    hostname: url.hostname.startsWith('[') ? url.hostname.slice(1, -1) : url.hostname,
    port: url.port,
    method: req.method ?? 'GET',
    path: request.path,
    headers: { ...request.headers, connection: 'Upgrade', upgrade: 'websocket' },
    // A dedicated connection: an upgraded socket can never go back to a keep-alive pool.
    agent: false,
    timeout: timeoutMs,
  });

  // Until the upstream answers, keep reading the client: a socket nobody reads never reports the
  // peer's FIN, so a client that gives up would go unnoticed. RFC 6455 §4.1 forbids sending before the
  // 101, so early bytes are rare; they are kept (bounded) and forwarded in order after `head`.
  const early: Buffer[] = [];
  let earlyBytes = 0;
  const onClientEarlyData = (chunk: Buffer): void => {
    early.push(chunk);
    earlyBytes += chunk.length;
    if (earlyBytes > MAX_EARLY_BYTES) client.pause();
  };
  const onClientEarlyClose = (): void => {
    if (settled) return;
    settled = true;
    stopEarly();
    upstream.destroy();
    client.destroy();
    resolve({ status: CLIENT_CLOSED_REQUEST });
  };
  const stopEarly = (): void => {
    client.removeListener('data', onClientEarlyData);
    client.removeListener('end', onClientEarlyClose);
    client.removeListener('close', onClientEarlyClose);
  };
  client.on('data', onClientEarlyData);
  // http.Server sockets allow half-open connections, so a client's FIN shows up as 'end' only.
  client.on('end', onClientEarlyClose);
  client.on('close', onClientEarlyClose);

  upstream.on('timeout', () => {
    timedOut = true;
    upstream.destroy(Object.assign(new Error('upstream handshake timed out'), { code: 'ETIMEDOUT' }));
  });

  upstream.on('error', (error) => {
    if (settled) return;
    settled = true;
    stopEarly();
    const code: ErrorCode = timedOut ? 'ERR_UPSTREAM_TIMEOUT' : classifyUpstreamError(error).code;
    writeErrorResponse(client, code);
    resolve({ status: ERRORS[code].status });
  });

  upstream.on('upgrade', (response: IncomingMessage, socket: Socket, upstreamHead: Buffer) => {
    if (settled) {
      socket.destroy();
      return;
    }
    settled = true;
    stopEarly();
    // The request timeout covered the handshake only; a tunnel may legitimately idle (pings are the
    // application's business).
    socket.setTimeout(0);
    socket.setNoDelay(true);
    if (isSocket(client)) client.setNoDelay(true);

    client.write(rawHead(response, false));
    if (upstreamHead.length > 0) client.write(upstreamHead);
    if (head.length > 0) socket.write(head);
    for (const chunk of early) socket.write(chunk);
    tieSockets(client, socket, timeoutMs);
    socket.pipe(client);
    client.pipe(socket);
    resolve({ status: response.statusCode ?? 101 });
  });

  upstream.on('response', (response: IncomingMessage) => {
    if (settled) {
      response.destroy();
      return;
    }
    settled = true;
    stopEarly();
    const status = response.statusCode ?? 502;
    // The upstream declined to switch protocols: relay its answer as an ordinary response and close,
    // since the client's connection state is unknown after a refused upgrade (RFC 9110 §7.8).
    client.write(rawHead(response, true));
    response.on('error', () => client.destroy());
    response.on('aborted', () => client.destroy());
    client.on('close', () => response.destroy());
    response.pipe(client);
    response.on('end', () => closeAfterFlush(client, timeoutMs));
    resolve({ status });
  });

  upstream.end();
  return promise;
}

/**
 * Writes a complete HTTP/1.1 response on a raw socket (one the server handed over in its `upgrade`
 * event, where no `ServerResponse` exists) and closes it once written. `Content-Length` and
 * `Connection: close` are set here; header names and values are validated so a caller cannot inject
 * CR/LF (response splitting, RFC 9112 §11.1).
 *
 * @throws TypeError (`ERR_INVALID_HTTP_TOKEN`, `ERR_HTTP_INVALID_HEADER_VALUE`, `ERR_INVALID_CHAR`) for
 *   an invalid header name or value; nothing is written then.
 *
 * @example
 * writeRawResponse(socket, 401, { 'www-authenticate': 'Bearer realm="portcullis"',
 *   'content-type': 'application/json' }, '{"error":"ERR_TOKEN_MISSING"}');
 */
export function writeRawResponse(
  socket: Duplex,
  status: number,
  headers: Record<string, string>,
  body: string,
): void {
  let text = `HTTP/1.1 ${status} ${STATUS_CODES[status] ?? 'Unknown'}\r\n`;
  for (const name in headers) {
    const value = headers[name] as string;
    validateHeaderName(name);
    validateHeaderValue(name, value);
    const lower = name.toLowerCase();
    if (lower === 'content-length' || lower === 'connection') continue;
    text += `${name}: ${value}\r\n`;
  }
  text += `content-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`;
  socket.on('error', destroySelf);
  if (socket.destroyed) return;
  if (!socket.writable) {
    socket.destroy();
    return;
  }
  // Server sockets are half-open capable (http.Server uses allowHalfOpen), so `end()` alone could leave
  // the socket open forever if the client never closes its side: destroy once the bytes are flushed.
  socket.once('finish', destroySelf);
  socket.end(text);
}

function writeErrorResponse(client: Duplex, code: ErrorCode): void {
  const spec = ERRORS[code];
  const body = JSON.stringify({ error: code, message: spec.message });
  writeRawResponse(client, spec.status, { 'content-type': 'application/json' }, body);
}

/**
 * Status line and header fields of an upstream response, as raw bytes. For a 101 the fields go verbatim
 * (its `Connection`/`Upgrade` are the point). For a relayed refusal the hop-by-hop fields are dropped and
 * `Connection: close` is set; without `Content-Length` the body is delimited by the close
 * (RFC 9112 §6.3 rule 8), so the upstream's chunked coding is not needed.
 */
function rawHead(response: IncomingMessage, relay: boolean): string {
  const raw = response.rawHeaders;
  const named = relay ? connectionTokens(response.headers.connection) : undefined;
  let text = `HTTP/1.1 ${response.statusCode ?? 502} ${response.statusMessage ?? ''}\r\n`;
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i] as string;
    if (named !== undefined && (isHopByHop(name) || named.has(name.toLowerCase()))) continue;
    text += `${name}: ${raw[i + 1] as string}\r\n`;
  }
  if (relay) text += 'connection: close\r\n';
  return text + '\r\n';
}

/**
 * Ties the lifetimes of the two tunnel ends. An error destroys both at once. A clean close on one side
 * ends the other once its pending bytes are written (so a final frame is not lost), within `graceMs`.
 */
function tieSockets(a: Duplex, b: Duplex, graceMs: number): void {
  const destroyBoth = (): void => {
    a.destroy();
    b.destroy();
  };
  a.on('error', destroyBoth);
  b.on('error', destroyBoth);
  a.on('close', () => closeAfterFlush(b, graceMs));
  b.on('close', () => closeAfterFlush(a, graceMs));
}

function closeAfterFlush(socket: Duplex, graceMs: number): void {
  if (socket.destroyed) return;
  if (socket.writableFinished) {
    socket.destroy();
    return;
  }
  socket.once('finish', destroySelf);
  // A peer that stops reading would keep 'finish' from ever firing; do not let it pin the socket.
  if (isSocket(socket)) socket.setTimeout(graceMs, destroySelf);
  socket.end();
}

function destroySelf(this: Duplex): void {
  this.destroy();
}

function isSocket(stream: Duplex): stream is Socket {
  return typeof (stream as Partial<Socket>).setNoDelay === 'function';
}
