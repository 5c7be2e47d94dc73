/**
 * The admin listener, on its own port so that it is never reachable through a proxy route:
 * `/healthz` (the process answers), `/readyz` (every issuer has keys and the proxy is not draining),
 * `/metrics` (Prometheus), `POST /explain` (what the proxy would do with a request; the token in the body
 * is never logged), and, in the quickstart, the dev issuer's JWKS.
 */
import { readFileSync } from 'node:fs';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { explainRequest } from './explain.ts';
import type { Metrics } from './metrics.ts';
import type { Runtime } from './runtime.ts';

export interface AdminDeps {
  readonly metrics: Metrics;
  /** Renders the exposition; in cluster mode it aggregates every worker's registry. */
  readonly renderMetrics?: () => Promise<string>;
  readonly runtime: () => Runtime;
  readonly shuttingDown: () => boolean;
}

export function createAdminHandler(deps: AdminDeps): (req: IncomingMessage, res: ServerResponse) => void {
  return (req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    const rt = deps.runtime();
    if (path === '/explain') {
      if (req.method !== 'POST') return send(res, 405, { error: 'method_not_allowed' });
      return void explain(req, res, rt);
    }
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
        (deps.renderMetrics ?? (() => deps.metrics.registry.metrics()))().then(
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

const MAX_EXPLAIN_BODY = 64 * 1024;

async function explain(req: IncomingMessage, res: ServerResponse, rt: Runtime): Promise<void> {
  let size = 0;
  const chunks: Buffer[] = [];
  for await (const chunk of req) {
    size += (chunk as Buffer).length;
    if (size > MAX_EXPLAIN_BODY) return send(res, 413, { error: 'payload_too_large', message: `body over ${MAX_EXPLAIN_BODY} bytes` });
    chunks.push(chunk as Buffer);
  }
  let input: { method?: unknown; url?: unknown; token?: unknown; headers?: unknown };
  try {
    input = JSON.parse(Buffer.concat(chunks).toString('utf8')) as typeof input;
  } catch {
    return send(res, 400, { error: 'bad_request', message: 'expected a JSON body {method, url, token, headers}' });
  }
  if (typeof input.url !== 'string' || (input.token !== undefined && typeof input.token !== 'string')) {
    return send(res, 400, { error: 'bad_request', message: 'url (string) is required; token must be a string' });
  }
  const headers: Record<string, string> = {};
  if (input.headers && typeof input.headers === 'object') {
    for (const [k, v] of Object.entries(input.headers)) if (typeof v === 'string') headers[k] = v;
  }
  try {
    const explanation = await explainRequest(rt, {
      method: typeof input.method === 'string' ? input.method : 'GET',
      url: input.url,
      token: input.token as string | undefined,
      headers,
    });
    send(res, 200, explanation);
  } catch (error) {
    send(res, 400, { error: 'bad_request', message: (error as Error).message });
  }
}

function send(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}
