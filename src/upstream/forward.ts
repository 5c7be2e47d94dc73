/**
 * Forwards one HTTP request to an upstream target and streams the answer back.
 *
 * This is the proxy's hottest path, so it talks to undici's `Dispatcher.dispatch()` directly with one
 * handler object per request (methods on a shared prototype, no closures) instead of going through
 * `request()`/`stream()`, which add a Readable and several closures per request. Bodies are never
 * buffered: the client request is handed to undici as the body stream (undici applies socket
 * backpressure to it) and every response chunk is written to the client as it arrives, pausing the
 * upstream parser while the client socket is full.
 */
import type { IncomingHttpHeaders, IncomingMessage, OutgoingHttpHeaders, ServerResponse } from 'node:http';
import type { Dispatcher } from 'undici';
import { ProxyError } from '../errors.ts';
import type { ErrorCode } from '../errors.ts';
import { droppedByConnection, isHopByHop } from './hop-by-hop.ts';
import type { UpstreamTarget } from './pool.ts';

/** What to send upstream. Built by the pipeline from the client request. */
export interface ForwardRequest {
  method: string;
  /** Path and query, already rewritten; must start with `/`. */
  path: string;
  /**
   * Request header fields, already cleaned by the caller: lower-case names (as in
   * `IncomingMessage.headers`), no hop-by-hop fields (see `isHopByHop`/`droppedByConnection`), `host` set.
   * Keep `content-length` when the client sent one. `expect` is dropped here (see `forwardRequest`).
   */
  headers: Record<string, string | string[]>;
  /**
   * Optional per-request wait for response headers (e.g. the route's timeout), in milliseconds. When
   * absent the upstream pool's `timeoutMs` applies.
   */
  timeoutMs?: number;
  /**
   * A body that replaces the client's (a rewritten form body, e.g. an enforced Loki query). The caller has
   * consumed the client body and sets `content-length` to this body's length.
   */
  body?: Buffer;
  /**
   * Fields the proxy sets on the client response (its request id): added after the upstream's, so they win.
   * Given here rather than with `res.setHeader` so that `writeHead` takes its one-object fast path.
   */
  responseHeaders?: Readonly<Record<string, string>>;
}

/** How a forward ended when it did not throw. */
export interface ForwardOutcome {
  /** Upstream status sent to the client, or 499 (nginx's "client closed request") when the client left
   * before the upstream answered. */
  status: number;
  /** Milliseconds from dispatch to the upstream's response headers (or to the failure), like Envoy's
   * `x-envoy-upstream-service-time`. */
  upstreamMs: number;
  origin: string;
  /**
   * True when the exchange broke after the response had started (the client got a truncated message),
   * or when the client went away first (status 499). False for a complete response.
   */
  aborted: boolean;
}

/** Status reported when the client closed the connection before the upstream answered (nginx's 499). */
const CLIENT_CLOSED_REQUEST = 499;

/** Abort reason when the client leaves; compared by identity, never shown to anyone. */
const CLIENT_GONE = new Error('the client closed the connection');

const kForward = Symbol('portcullis.forward');

/** The response carries its in-flight handler so that shared, closure-free listeners can reach it. */
type TrackedResponse = ServerResponse & { [kForward]?: ForwardHandler | undefined };

/**
 * Forwards `req` to `target` and streams the response into `res`.
 *
 * - Request body: sent only when the client sent one (RFC 9112 §6.3: `Transfer-Encoding` or a non-zero
 *   `Content-Length`), streamed with the client's framing — a known length is kept and enforced, otherwise
 *   undici sends it chunked.
 * - `Expect: 100-continue` is dropped: undici's HTTP/1.1 client refuses the header (it would have to
 *   hold the body until a 100 arrives), and by the time we run Node's server has already answered
 *   `100 Continue` to the client (it does so when no `checkContinue` listener is installed), so the body
 *   is coming anyway. RFC 9110 §10.1.1 lets a proxy forward the request without the expectation as long as
 *   it then relays the body.
 * - Response: status and reason phrase preserved; hop-by-hop fields and those named in `Connection`
 *   dropped (RFC 9110 §7.6.1); repeated fields such as `set-cookie` stay separate (RFC 6265 §3). HEAD,
 *   204 and 304 carry no body (Node's `ServerResponse` enforces it, RFC 9110 §6.4.1). Trailers are not
 *   relayed (rarely used over HTTP/1.1 and Node would need them declared up front).
 * - The client leaving at any point aborts the upstream request, freeing its connection.
 *
 * Failure before the response started: `res` is untouched and the promise rejects, so the caller writes
 * the error answer. Failure after: `res` is destroyed (the client sees a truncated message, never a fake
 * success) and the promise resolves with `aborted: true`.
 *
 * @throws ProxyError `ERR_UPSTREAM_UNREACHABLE` (502) connection refused, DNS failure, connect timeout,
 *   unreachable host; `ERR_UPSTREAM_RESET` (502) the connection closed or reset before a response, or the
 *   response was malformed; `ERR_UPSTREAM_TIMEOUT` (504) no response headers within the timeout;
 *   `ERR_SHUTTING_DOWN` (503) the upstream pool was closed; `ERR_INTERNAL` (500) undici refused the
 *   request as built (a bug in the caller's header cleaning). `detail` holds the undici / system error
 *   code (e.g. `ECONNREFUSED`, `UND_ERR_HEADERS_TIMEOUT`), `cause` the original error.
 *
 * @example
 * const outcome = await forwardRequest(req, res, upstream.next(),
 *   { method: req.method!, path: '/loki/api/v1/query', headers });
 * if (outcome.aborted) log.warn('upstream stream broke');
 */
export function forwardRequest(
  req: IncomingMessage,
  res: ServerResponse,
  target: UpstreamTarget,
  request: ForwardRequest,
): Promise<ForwardOutcome> {
  const handler = new ForwardHandler(res, target.origin, request.responseHeaders);
  const tracked: TrackedResponse = res;
  if (tracked.destroyed) {
    // The client left while earlier stages ran; do not open an upstream request nobody will read.
    handler.onResponseError(null, CLIENT_GONE);
    return handler.promise;
  }
  tracked[kForward] = handler;
  tracked.on('close', onResponseClose);

  let headers = request.headers;
  if (headers.expect !== undefined) headers = withoutExpect(headers);

  target.dispatcher.dispatch(
    {
      method: request.method,
      path: request.path,
      headers,
      body: request.body ?? (hasBody(req) ? req : null),
      headersTimeout: request.timeoutMs,
    },
    handler,
  );
  return handler.promise;
}

/**
 * Per-request state. A class rather than an object of closures so that all requests share one set of
 * methods (undici calls them with the handler as `this`).
 */
class ForwardHandler implements Dispatcher.DispatchHandler {
  readonly res: TrackedResponse;
  readonly origin: string;
  readonly ownHeaders: Readonly<Record<string, string>> | undefined;
  readonly startedAt: number;
  readonly promise: Promise<ForwardOutcome>;
  readonly resolve: (outcome: ForwardOutcome) => void;
  readonly reject: (error: ProxyError) => void;
  controller: Dispatcher.DispatchController | null = null;
  /** Upstream status once the response started (headers handed to `res`); 0 before. */
  status = 0;
  upstreamMs = 0;
  clientGone = false;
  settled = false;
  drainListening = false;

  constructor(res: TrackedResponse, origin: string, ownHeaders: Readonly<Record<string, string>> | undefined) {
    this.res = res;
    this.origin = origin;
    this.ownHeaders = ownHeaders;
    this.startedAt = performance.now();
    const { promise, resolve, reject } = Promise.withResolvers<ForwardOutcome>();
    this.promise = promise;
    this.resolve = resolve;
    this.reject = reject;
  }

  onRequestStart(controller: Dispatcher.DispatchController): void {
    this.controller = controller;
    // The client may have left while the request waited for a free pooled connection.
    if (this.clientGone) controller.abort(CLIENT_GONE);
  }

  onResponseStart(
    _controller: Dispatcher.DispatchController,
    statusCode: number,
    headers: IncomingHttpHeaders,
    statusMessage?: string,
  ): void {
    this.upstreamMs = performance.now() - this.startedAt;
    const res = this.res;
    const outgoing = responseHeaders(headers);
    if (this.ownHeaders !== undefined) Object.assign(outgoing, this.ownHeaders);
    try {
      if (statusMessage) res.writeHead(statusCode, statusMessage, outgoing);
      else res.writeHead(statusCode, outgoing);
    } catch (error) {
      // Node refused a header or the reason phrase. Nothing was sent (`_storeHeader` validates before
      // committing), so forget the reason phrase and let undici route the throw to onResponseError with
      // `status` still 0: the caller answers 502 on an untouched `res`.
      res.statusMessage = '';
      throw error;
    }
    this.status = statusCode;
  }

  onResponseData(controller: Dispatcher.DispatchController, chunk: Buffer): void {
    const res = this.res;
    if (!res.write(chunk)) {
      // Belt and braces: a destroyed response never drains, so waiting would pin the upstream request.
      if (res.destroyed) {
        this.onClientClose();
        return;
      }
      // The client socket is full: stop reading from upstream until it drains (TCP backpressure then
      // reaches the upstream server instead of our memory).
      controller.pause();
      if (!this.drainListening) {
        this.drainListening = true;
        res.on('drain', onResponseDrain);
      }
    }
  }

  onResponseEnd(): void {
    if (this.settled) return;
    this.res.end();
    this.settle();
    this.resolve({ status: this.status, upstreamMs: this.upstreamMs, origin: this.origin, aborted: false });
  }

  onResponseError(_controller: Dispatcher.DispatchController | null, error: Error): void {
    if (this.settled) return;
    this.settle();
    if (this.status !== 0) {
      // Headers are out: the only honest signal left is to cut the connection (RFC 9112 §8: an
      // incomplete message must not look complete).
      this.res.destroy();
      this.resolve({ status: this.status, upstreamMs: this.upstreamMs, origin: this.origin, aborted: true });
    } else if (this.clientGone || error === CLIENT_GONE || this.res.destroyed) {
      // The client left (an aborted upload reaches us as a body error, possibly before `close`).
      const upstreamMs = performance.now() - this.startedAt;
      this.resolve({ status: CLIENT_CLOSED_REQUEST, upstreamMs, origin: this.origin, aborted: true });
    } else {
      this.upstreamMs = performance.now() - this.startedAt;
      this.reject(classifyUpstreamError(error));
    }
  }

  onClientClose(): void {
    if (this.settled) return;
    this.clientGone = true;
    // Aborting destroys the upstream socket (undici will not reuse a connection with a half-sent
    // exchange), so the upstream sees the close and no connection leaks.
    if (this.controller !== null) this.controller.abort(CLIENT_GONE);
  }

  settle(): void {
    this.settled = true;
    const res = this.res;
    if (res[kForward] === this) {
      res[kForward] = undefined;
      res.removeListener('close', onResponseClose);
      if (this.drainListening) res.removeListener('drain', onResponseDrain);
    }
  }
}

/** `close` on the client response: fires on completion too, when the handler is already detached. */
function onResponseClose(this: TrackedResponse): void {
  this[kForward]?.onClientClose();
}

function onResponseDrain(this: TrackedResponse): void {
  this[kForward]?.controller?.resume();
}

/** RFC 9112 §6.3: a request has content iff it has Transfer-Encoding or a non-zero Content-Length. */
function hasBody(req: IncomingMessage): boolean {
  const headers = req.headers;
  if (headers['transfer-encoding'] !== undefined) return true;
  const length = headers['content-length'];
  return length !== undefined && length !== '0';
}

function withoutExpect(headers: Record<string, string | string[]>): Record<string, string | string[]> {
  const copy: Record<string, string | string[]> = {};
  for (const name in headers) {
    if (name !== 'expect') copy[name] = headers[name] as string | string[];
  }
  return copy;
}

/** Copies the end-to-end response fields (RFC 9110 §7.6.1). */
function responseHeaders(headers: IncomingHttpHeaders): OutgoingHttpHeaders {
  const named = droppedByConnection(headers.connection);
  const out: OutgoingHttpHeaders = {};
  for (const name in headers) {
    const value = headers[name];
    if (value === undefined || isHopByHop(name) || (named !== undefined && named.has(name))) continue;
    // undici defines a `__proto__` field as an own property; assigning it here would set the prototype.
    if (name === '__proto__') continue;
    out[name] = value;
  }
  return out;
}

/**
 * Classifies a failure to reach or read from an upstream (an undici or socket error) into the error
 * table, keeping the original code in `detail`. Shared with the WebSocket tunnel and usable by health
 * checks.
 *
 * @example
 * classifyUpstreamError(Object.assign(new Error('refused'), { code: 'ECONNREFUSED' })).code;
 * // 'ERR_UPSTREAM_UNREACHABLE'
 */
export function classifyUpstreamError(error: unknown): ProxyError {
  const code = errorCode(error);
  return new ProxyError(proxyCodeFor(code), { detail: code, cause: error });
}

function errorCode(error: unknown): string {
  if (typeof error === 'object' && error !== null) {
    const code = (error as { code?: unknown }).code;
    if (typeof code === 'string') return code;
    // Happy-eyeballs connects (autoSelectFamily) fail with an AggregateError of per-address errors.
    if (error instanceof AggregateError) return errorCode(error.errors[0]);
    if (error instanceof Error) return error.name;
  }
  return 'UNKNOWN';
}

function proxyCodeFor(code: string): ErrorCode {
  switch (code) {
    case 'UND_ERR_HEADERS_TIMEOUT':
    case 'UND_ERR_BODY_TIMEOUT':
    case 'ETIMEDOUT':
      return 'ERR_UPSTREAM_TIMEOUT';
    // No connection was made: nothing reached the upstream, the request is safe to retry elsewhere.
    case 'ECONNREFUSED':
    case 'UND_ERR_CONNECT_TIMEOUT':
    case 'ENOTFOUND':
    case 'EAI_AGAIN':
    case 'EAI_FAIL':
    case 'EHOSTUNREACH':
    case 'EHOSTDOWN':
    case 'ENETUNREACH':
    case 'ENETDOWN':
    case 'EADDRNOTAVAIL':
      return 'ERR_UPSTREAM_UNREACHABLE';
    case 'UND_ERR_CLOSED':
    case 'UND_ERR_DESTROYED':
      return 'ERR_SHUTTING_DOWN';
    case 'UND_ERR_INVALID_ARG':
    case 'UND_ERR_NOT_SUPPORTED':
      return 'ERR_INTERNAL';
    default:
      // UND_ERR_SOCKET ("other side closed"), ECONNRESET, EPIPE, HPE_* parse errors, length mismatches.
      return 'ERR_UPSTREAM_RESET';
  }
}
