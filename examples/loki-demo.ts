/**
 * A small stand-in for Grafana Loki, for the quickstart: a few sample streams (env=staging and
 * env=production) answered by stream selector on query_range / query, plus labels and series. It applies
 * the selectors it receives exactly as Loki would (every matcher of a selector must hold), so what a caller
 * sees through Portcullis is what the enforced query allows.
 */
import { createServer } from 'node:http';
import type { Server } from 'node:http';
import { once } from 'node:events';
import type { AddressInfo } from 'node:net';
import { parseLogql, selectors } from '../src/logql/index.ts';
import type { LabelMatcher } from '../src/logql/index.ts';

type Labels = Record<string, string>;
const NOW_NS = BigInt(Date.now()) * 1_000_000n;
const STREAMS: { labels: Labels; lines: string[] }[] = [
  { labels: { app: 'api', env: 'staging' }, lines: ['GET /health 200 (staging api)', 'POST /orders 201 (staging api)'] },
  { labels: { app: 'api', env: 'production' }, lines: ['GET /health 200 (production api)', 'POST /orders 500 (production api)'] },
  { labels: { app: 'web', env: 'staging' }, lines: ['render home 12ms (staging web)'] },
  { labels: { app: 'web', env: 'production' }, lines: ['render home 9ms (production web)'] },
];

function matches(labels: Labels, m: LabelMatcher): boolean {
  const value = labels[m.name] ?? '';
  switch (m.op) {
    case '=': return value === m.value;
    case '!=': return value !== m.value;
    case '=~': return new RegExp(`^(?:${m.value})$`).test(value);
    case '!~': return !new RegExp(`^(?:${m.value})$`).test(value);
  }
}

/** Streams that satisfy every matcher of at least one selector of the query. */
function select(query: string): typeof STREAMS {
  const all = selectors(parseLogql(query));
  return STREAMS.filter((s) => all.some((sel) => sel.every((m) => matches(s.labels, m))));
}

export async function startLokiDemo(port = 0, host = '127.0.0.1'): Promise<{ server: Server; origin: string }> {
  const server = createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://demo');
    const send = (status: number, body: unknown) => {
      const text = JSON.stringify(body);
      res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
      res.end(text);
    };
    try {
      const query = url.searchParams.get('query') ?? url.searchParams.get('match[]') ?? '{}';
      const found = select(query);
      switch (url.pathname) {
        case '/loki/api/v1/query_range':
        case '/loki/api/v1/query':
          return send(200, {
            status: 'success',
            data: {
              resultType: 'streams',
              result: found.map((s) => ({ stream: s.labels, values: s.lines.map((line, i) => [String(NOW_NS - BigInt(i) * 1_000_000_000n), line]) })),
            },
          });
        case '/loki/api/v1/series':
          return send(200, { status: 'success', data: found.map((s) => s.labels) });
        case '/loki/api/v1/labels':
          return send(200, { status: 'success', data: [...new Set(found.flatMap((s) => Object.keys(s.labels)))] });
        default:
          return send(404, { status: 'error', error: `demo backend does not serve ${url.pathname}` });
      }
    } catch (error) {
      send(400, { status: 'error', error: (error as Error).message });
    }
  });
  server.listen(port, host);
  await once(server, 'listening');
  return { server, origin: `http://${host}:${(server.address() as AddressInfo).port}` };
}
