/**
 * The audit query API on the proxy (a route with `audit_api: true`), for auditors: guarded by the proxy's
 * own JWT authentication and the route's rules, and — as every request through the pipeline — itself
 * audited. `GET <route path>?subject=&decision=&route=&reason=&from=&to=&limit=` answers JSON.
 */
import type { ServerResponse } from 'node:http';
import { ProxyError } from '../errors.ts';
import { queryAudit, withChainFields } from './query.ts';
import type { AuditQuery } from './query.ts';
import type { AuditSink } from './sink.ts';

const MAX_LIMIT = 1000;

export async function serveAuditQuery(method: string, query: string, res: ServerResponse, sink: AuditSink): Promise<number> {
  if (method !== 'GET') throw new ProxyError('ERR_METHOD_NOT_ALLOWED');
  // Commits happen off the request path (a worker thread for SQLite, a pool for PostgreSQL): wait for what
  // was answered before this query, so an auditor never misses a decision the proxy already made.
  await sink.flush();
  const params = new URLSearchParams(query);
  const date = (name: string): Date | undefined => {
    const v = params.get(name);
    if (v === null) return undefined;
    const d = new Date(v);
    if (Number.isNaN(d.getTime())) throw new ProxyError('ERR_REQUEST_INVALID', { message: `${name} must be an RFC 3339 time` });
    return d;
  };
  const decision = params.get('decision');
  if (decision !== null && decision !== 'allowed' && decision !== 'denied') {
    throw new ProxyError('ERR_REQUEST_INVALID', { message: 'decision must be allowed or denied' });
  }
  const limit = Math.min(MAX_LIMIT, Math.max(1, Number(params.get('limit') ?? 100) || 100));
  const filters: AuditQuery = {
    subject: params.get('subject') ?? undefined,
    decision: decision ?? undefined,
    route: params.get('route') ?? undefined,
    reason: params.get('reason') ?? undefined,
    from: date('from'),
    to: date('to'),
    limit,
    redactor: sink.redactor,
  };
  const records: unknown[] = [];
  for await (const row of queryAudit(sink.store, filters)) records.push(withChainFields(row));
  const body = JSON.stringify({ records, limit });
  res.writeHead(200, { 'content-type': 'application/json', 'cache-control': 'no-store', 'content-length': Buffer.byteLength(body) });
  res.end(body);
  return 200;
}
