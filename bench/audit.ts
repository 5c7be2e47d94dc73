/**
 * Audit throughput: decision records/second built and appended through the writer (built as the proxy builds
 * them, then batched, hashed, checkpointed, committed) to SQLite and PostgreSQL, and records/second walked by
 * `verifyAudit`. Prints a small table.
 *
 *   node bench/audit.ts [records]          (default 50000; PostgreSQL from PORTCULLIS_BENCH_PG_URL or
 *                                           postgres://postgres@127.0.0.1:5432/test, skipped when unreachable)
 *
 * Each PostgreSQL run uses a fresh schema, dropped afterwards. Figures are wall-clock on this machine, for
 * comparing changes, not promises.
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { createTrustedKeys, generateAuditKey } from '../src/audit/keys.ts';
import { openAuditStore } from '../src/audit/open-store.ts';
import { prepareAuditRecord } from '../src/audit/record.ts';
import type { AuditInput } from '../src/audit/record.ts';
import type { AuditStore } from '../src/audit/store.ts';
import { verifyAudit } from '../src/audit/verify.ts';
import { createAuditWriter } from '../src/audit/writer.ts';

const N = Number(process.argv[2] ?? 50_000);
const PG_URL = process.env.PORTCULLIS_BENCH_PG_URL ?? 'postgres://postgres@127.0.0.1:5432/test';
const key = generateAuditKey('bench');
const trustedKeys = createTrustedKeys([{ kid: 'bench', publicKey: key.signer.publicKey }]);

interface Row {
  store: string;
  records: number;
  appendPerSec: number;
  verifyPerSec: number;
  valid: boolean;
}

/** The input of a realistic decision record (~600 bytes canonical). */
function input(i: number): AuditInput {
  return {
    'event.type': i % 10 === 0 ? 'denied' : 'allowed',
    'event.reason': i % 10 === 0 ? 'ERR_TOKEN_EXPIRED' : undefined,
    'event.duration': 1_250_000 + i,
    'rule.id': 'logs-read',
    'user.id': `user-${i % 1000}`,
    'user.roles': ['log-reader', 'staff'],
    'jwt.iss': 'https://idp.example.com/realms/corp',
    'jwt.aud': 'logs-api',
    'jwt.kid': 'k-2025',
    'jwt.alg': 'RS256',
    'jwt.exp': 1_900_000_000,
    'http.request.method': 'GET',
    'url.path': '/loki/api/v1/query_range',
    'http.route': 'logs-read',
    'http.response.status_code': i % 10 === 0 ? 401 : 200,
    'client.ip': '10.1.2.3',
    'user_agent.original': 'grafana/11.0',
    'destination.address': 'http://10.0.0.5:3100',
    'trace.id': randomBytes(16).toString('hex'),
    'logql.query': '{app="api", env="staging"} |= "error"',
    tenant: 'team-a',
  } as AuditInput;
}

async function measure(name: string, store: AuditStore): Promise<Row> {
  const inputs = Array.from({ length: N }, (_, i) => input(i));
  const writer = await createAuditWriter({ store, signer: key.signer, queueMax: N + 1, batchMax: 1000, checkpointEvery: 1000 });
  await writer.flush();
  const t0 = performance.now();
  // Building is timed too: the proxy builds a record per request on the same thread that hashes it.
  for (const r of inputs) writer.write(prepareAuditRecord(r));
  await writer.close();
  const appendMs = performance.now() - t0;
  const t1 = performance.now();
  const report = await verifyAudit({ store, trustedKeys });
  const verifyMs = performance.now() - t1;
  return {
    store: name,
    records: report.stats.records,
    appendPerSec: Math.round(N / (appendMs / 1000)),
    verifyPerSec: Math.round(report.stats.records / (verifyMs / 1000)),
    valid: report.exitCode === 0,
  };
}

async function sqlite(): Promise<Row> {
  const dir = mkdtempSync(join(tmpdir(), 'portcullis-bench-audit-'));
  const store = await openAuditStore(`sqlite:${join(dir, 'audit.db')}`);
  try {
    return await measure('sqlite (WAL, synchronous=FULL)', store);
  } finally {
    await store.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

async function postgres(): Promise<Row | string> {
  const admin = new pg.Client({ connectionString: PG_URL, connectionTimeoutMillis: 3000 });
  admin.on('error', () => {});
  try {
    await admin.connect();
  } catch (error) {
    return `postgres skipped: ${(error as Error).message}`;
  }
  const schema = `pc_bench_${randomBytes(4).toString('hex')}`;
  const url = new URL(PG_URL);
  url.searchParams.set('schema', schema);
  const store = await openAuditStore(url.toString());
  try {
    return await measure('postgres (one pool, JSON batches)', store);
  } finally {
    await store.close();
    await admin.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`);
    await admin.end();
  }
}

const rows: Row[] = [await sqlite()];
const pgRow = await postgres();
if (typeof pgRow === 'string') console.log(pgRow);
else rows.push(pgRow);

const header = ['store', 'records walked', 'build+append rec/s', 'verify rec/s', 'valid'];
const table = rows.map((r) => [r.store, String(r.records), r.appendPerSec.toLocaleString('en-US'), r.verifyPerSec.toLocaleString('en-US'), r.valid ? 'yes' : 'NO']);
const widths = header.map((h, i) => Math.max(h.length, ...table.map((row) => row[i]!.length)));
const line = (cells: string[]): string => cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  ');
console.log(`audit bench: ${N.toLocaleString('en-US')} decision records, batch 1000, checkpoint every 1000, Node ${process.version}`);
console.log(line(header));
console.log(widths.map((w) => '-'.repeat(w)).join('  '));
for (const row of table) console.log(line(row));
if (rows.some((r) => !r.valid)) process.exitCode = 1;
