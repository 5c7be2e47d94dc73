/**
 * Upstream connection pools. One undici `Pool` per target keeps a bounded set of keep-alive connections
 * to that origin; `next()` balances across targets round robin.
 *
 * Everything is built once when the runtime is created (compile at load, run per request): `next()` hands
 * out a pre-built frozen target and allocates nothing.
 */
import { Pool } from 'undici';
import type { Dispatcher } from 'undici';
import type { UpstreamConfig } from '../config/types.ts';

/** One upstream origin and the keep-alive pool that reaches it. */
export interface UpstreamTarget {
  /** Normalised origin, e.g. `http://10.0.0.5:3100` (no trailing slash, no path). */
  readonly origin: string;
  readonly dispatcher: Dispatcher;
}

/** A named group of targets. */
export interface Upstream {
  readonly id: string;
  /** The next target in round-robin order. Never throws; an upstream always has at least one target. */
  next(): UpstreamTarget;
  /**
   * Stops accepting requests and resolves once in-flight requests on every pool have finished and the
   * connections are closed. Idempotent. Requests dispatched afterwards fail with `UND_ERR_CLOSED` (mapped to
   * `ERR_SHUTTING_DOWN` by `forwardRequest`).
   */
  close(): Promise<void>;
}

/**
 * Builds the pools of one upstream.
 *
 * Per target: at most `config.connections` connections, kept alive between requests (undici honours the
 * server's `Keep-Alive: timeout=` hint so we do not reuse a connection the server is about to close);
 * `connectTimeoutMs` bounds the TCP (and TLS) connect, `timeoutMs` the wait for response headers once the
 * request is sent, `bodyTimeoutMs` the idle gap between response body chunks (not counted while the
 * client applies backpressure).
 *
 * @throws TypeError when the config has no targets or a target is not an http(s) origin — the config
 *   layer validates this first, so reaching it is a bug.
 *
 * @example
 * const loki = createUpstream({ id: 'loki', targets: ['http://10.0.0.5:3100'], connectTimeoutMs: 2000,
 *   timeoutMs: 30000, bodyTimeoutMs: 30000, connections: 64 });
 * const target = loki.next(); // { origin: 'http://10.0.0.5:3100', dispatcher: Pool }
 */
export function createUpstream(config: UpstreamConfig): Upstream {
  if (config.targets.length === 0) throw new TypeError(`upstream ${config.id} has no targets`);
  const targets: UpstreamTarget[] = config.targets.map((target) => {
    const url = new URL(target);
    if (url.protocol !== 'http:' && url.protocol !== 'https:') {
      throw new TypeError(`upstream ${config.id}: target ${target} is not an http(s) origin`);
    }
    const pool = new Pool(url.origin, {
      connections: config.connections,
      connectTimeout: config.connectTimeoutMs,
      headersTimeout: config.timeoutMs,
      bodyTimeout: config.bodyTimeoutMs,
      // One request per connection at a time: HTTP/1.1 pipelining stalls every queued response behind a
      // slow one (head-of-line blocking, RFC 9112 §9.3.2) and many servers mishandle it.
      pipelining: 1,
    });
    return Object.freeze({ origin: url.origin, dispatcher: pool });
  });

  const count = targets.length;
  let cursor = 0;
  let closing: Promise<void> | undefined;

  return Object.freeze({
    id: config.id,
    next(): UpstreamTarget {
      const target = targets[cursor] as UpstreamTarget;
      cursor = cursor + 1 === count ? 0 : cursor + 1;
      return target;
    },
    close(): Promise<void> {
      // Idempotent: shutdown paths (signal handler, drain timeout, tests) may all call it.
      closing ??= Promise.all(targets.map((target) => target.dispatcher.close())).then(() => undefined);
      return closing;
    },
  });
}
