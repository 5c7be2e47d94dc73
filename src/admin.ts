/**
 * The admin listener, on its own port so that it is never reachable through a proxy route:
 * `/healthz` (the process answers), `/readyz` (every issuer has keys and the proxy is not draining),
 * `/metrics` (Prometheus), and, in the quickstart, the dev issuer's JWKS.
 */
import { readFileSync } from 'node:fs';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Metrics } from './metrics.ts';
import type { Runtime } from './runtime.ts';

export interface AdminDeps {
  readonly metrics: Metrics;
  readonly runtime: () => Runtime;
  readonly shuttingDown: () => boolean;
}

export function createAdminHandler(deps: AdminDeps): (req: IncomingMessage, res: ServerResponse) => void {
  return (req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    const rt = deps.runtime();
    if (req.method !== 'GET' && req.method !== 'HEAD') return send(res, 405, { error: 'method_not_allowed' });
    switch (path) {
      case '/healthz':
        return send(res, 200, { status: 'ok' });
      case '/readyz': {
        const issuers = rt.registry.list().map((i) => ({ id: i.config.id, ready: i.keys.status().ready }));
        const ready = !deps.shuttingDown() && issuers.every((i) => i.ready);
        return send(res, ready ? 200 : 503, { status: ready ? 'ready' : 'not_ready', draining: deps.shuttingDown(), issuers });
      }
      case '/metrics':
        deps.metrics.registry.metrics().then(
          (text) => {
            res.writeHead(200, { 'content-type': deps.metrics.registry.contentType });
            res.end(text);
          },
          () => send(res, 500, { error: 'metrics_failed' }),
        );
        return;
      default:
        if (rt.config.devIssuer !== undefined && path === rt.config.devIssuer.path) {
          // Read on each request: the file is tiny and the quickstart may regenerate keys.
          try {
            const body = readFileSync(rt.config.devIssuer.jwksFile, 'utf8');
            res.writeHead(200, { 'content-type': 'application/jwk-set+json', 'cache-control': 'max-age=300' });
            res.end(body);
          } catch {
            send(res, 404, { error: 'not_found' });
          }
          return;
        }
        return send(res, 404, { error: 'not_found' });
    }
  };
}

function send(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}
