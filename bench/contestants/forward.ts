/**
 * The forwarding half of the two hand-written Node contestants (passthrough, lean-verify): node:http in,
 * one undici `Pool` out, `pool.stream()` writing the answer straight into the client response. Hop-by-hop
 * headers (RFC 9110 §7.6.1) are dropped both ways; nothing else is added or checked.
 */
import type { IncomingHttpHeaders, IncomingMessage, ServerResponse } from 'node:http';
import { Pool } from 'undici';

const HOP_BY_HOP = new Set([
  'connection',
  'keep-alive',
  'proxy-connection',
  'transfer-encoding',
  'te',
  'trailer',
  'upgrade',
  'proxy-authorization',
  'proxy-authenticate',
]);

export interface Forwarder {
  /** Forwards `req` with `headers` (already filtered by the caller via {@link forwardHeaders}). */
  forward(req: IncomingMessage, res: ServerResponse, headers: Record<string, string | string[]>): void;
  close(): Promise<void>;
}

export function createForwarder(origin: string): Forwarder {
  const pool = new Pool(origin, { connections: 128, keepAliveTimeout: 30_000 });
  return {
    forward(req, res, headers) {
      const method = req.method ?? 'GET';
      const hasBody = method !== 'GET' && method !== 'HEAD';
      pool
        .stream(
          { path: req.url ?? '/', method, headers, body: hasBody ? req : null, opaque: res },
          ({ statusCode, headers: upstreamHeaders, opaque }) => {
            const out = opaque as ServerResponse;
            const filtered: Record<string, string | string[]> = {};
            for (const name in upstreamHeaders) {
              const value = upstreamHeaders[name];
              if (value !== undefined && !HOP_BY_HOP.has(name)) filtered[name] = value;
            }
            out.writeHead(statusCode, filtered);
            return out;
          },
        )
        .catch(() => {
          if (!res.headersSent) {
            res.writeHead(502, { 'content-type': 'application/json' });
            res.end('{"error":"bad_gateway"}');
          } else {
            res.destroy();
          }
        });
    },
    close: () => pool.close(),
  };
}

/** Client headers minus hop-by-hop ones and those in `drop` (lower-case names). */
export function forwardHeaders(headers: IncomingHttpHeaders, drop?: ReadonlySet<string>): Record<string, string | string[]> {
  const out: Record<string, string | string[]> = {};
  for (const name in headers) {
    const value = headers[name];
    if (value === undefined || HOP_BY_HOP.has(name) || drop?.has(name)) continue;
    out[name] = value;
  }
  return out;
}
