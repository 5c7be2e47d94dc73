/**
 * `portcullis audit query`: filter decision records by subject, decision, route, reason and time range,
 * streaming in (timestamp, row) order across chains, up to a limit. The time range is pushed down to the
 * store's ts index; the other filters are applied to the parsed record (no other column is trusted to agree
 * with the hashed JSON). Query does not verify: run `audit verify` for integrity.
 */
import type { Redactor } from './redact.ts';
import { AUDIT_ACTIONS } from './record.ts';
import type { AuditStore, StoredEntry } from './store.ts';

export interface AuditQuery {
  /** `user.id` equals this — or, with `redactor`, its HMAC form (for redacted subjects). */
  readonly subject?: string;
  readonly decision?: 'allowed' | 'denied';
  /** `http.route` (the route id). */
  readonly route?: string;
  /** `event.reason` (an error code such as ERR_TOKEN_EXPIRED). */
  readonly reason?: string;
  /** Inclusive. */
  readonly from?: Date;
  /** Exclusive. */
  readonly to?: Date;
  readonly chainId?: string;
  /** Include the writer's own records (chain start/end, loss). Default false. */
  readonly includeSystem?: boolean;
  /** Default 100; 0 means no limit. */
  readonly limit?: number;
  /** Lets `subject` match values stored as `hmac-sha256:<kid>:<hex>`. */
  readonly redactor?: Pick<Redactor, 'hash'>;
}

/** One matching record with its chain position. */
export interface AuditQueryRow {
  readonly chainId: string;
  readonly seq: number;
  readonly hash: string;
  readonly prevHash: string;
  readonly record: Readonly<Record<string, unknown>>;
}

/**
 * Streams matching records.
 *
 * @example for await (const row of queryAudit(store, { subject: 'alice', decision: 'denied', limit: 20 })) console.log(row.record);
 */
export async function* queryAudit(store: AuditStore, query: AuditQuery = {}): AsyncGenerator<AuditQueryRow> {
  const limit = query.limit ?? 100;
  const subjects = new Set<string>();
  if (query.subject !== undefined) {
    subjects.add(query.subject);
    if (query.redactor !== undefined) subjects.add(query.redactor.hash(query.subject));
  }
  let n = 0;
  const scan = store.scan({
    ...(query.from === undefined ? {} : { fromTs: query.from.getTime() }),
    ...(query.to === undefined ? {} : { toTs: query.to.getTime() }),
    ...(query.chainId === undefined ? {} : { chainId: query.chainId }),
  });
  for await (const entry of scan) {
    const record = parse(entry);
    if (record === undefined) continue;
    if (!(query.includeSystem ?? false) && record['event.action'] !== AUDIT_ACTIONS.request) continue;
    if (subjects.size > 0 && !subjects.has(record['user.id'] as string)) continue;
    if (query.decision !== undefined && record['event.type'] !== query.decision) continue;
    if (query.route !== undefined && record['http.route'] !== query.route) continue;
    if (query.reason !== undefined && record['event.reason'] !== query.reason) continue;
    yield { chainId: entry.chainId, seq: entry.seq, hash: entry.hash, prevHash: entry.prevHash, record };
    n++;
    if (limit > 0 && n >= limit) return;
  }
}

/** The record with its chain fields added under ECS-style names (for JSON output to a SIEM). */
export function withChainFields(row: AuditQueryRow): Record<string, unknown> {
  return { ...row.record, 'audit.chain_id': row.chainId, 'audit.seq': row.seq, 'audit.prev_hash': row.prevHash, 'audit.hash': row.hash };
}

function parse(entry: StoredEntry): Record<string, unknown> | undefined {
  try {
    const value = JSON.parse(entry.record) as unknown;
    return value !== null && typeof value === 'object' && !Array.isArray(value) ? (value as Record<string, unknown>) : undefined;
  } catch {
    return undefined;
  }
}
