/**
 * queryAudit over more than one page of records: each filter, the limit, the time range, redacted subjects,
 * and the chain fields added for output.
 */
import { before, after, test } from 'node:test';
import assert from 'node:assert/strict';
import { generateAuditKey } from '../../src/audit/keys.ts';
import { openAuditStore } from '../../src/audit/open-store.ts';
import { queryAudit, withChainFields } from '../../src/audit/query.ts';
import type { AuditQuery } from '../../src/audit/query.ts';
import { buildAuditRecord } from '../../src/audit/record.ts';
import { createRedactor } from '../../src/audit/redact.ts';
import type { AuditStore } from '../../src/audit/store.ts';
import { createAuditWriter } from '../../src/audit/writer.ts';

const T0 = Date.parse('2025-07-01T00:00:00.000Z');
const redactor = createRedactor({ keyId: 'r1', key: Buffer.alloc(32, 1), fields: ['user.id'] });
let store: AuditStore;

before(async () => {
  store = await openAuditStore('sqlite::memory:');
  const writer = await createAuditWriter({ store, signer: generateAuditKey('k').signer, checkpointEvery: 100 });
  // 1200 records (more than one 1000-row page): one per second, user u0..u9, every 4th denied on route b.
  for (let i = 0; i < 1200; i++) {
    writer.write(
      buildAuditRecord(
        {
          '@timestamp': T0 + i * 1000,
          'event.type': i % 4 === 0 ? 'denied' : 'allowed',
          'event.reason': i % 4 === 0 ? (i % 8 === 0 ? 'ERR_TOKEN_EXPIRED' : 'ERR_ACCESS_DENIED') : undefined,
          'user.id': `u${i % 10}`,
          'http.route': i % 4 === 0 ? 'b' : 'a',
        },
        i >= 1100 ? { redactor } : {},
      ),
    );
  }
  await writer.close();
});
after(() => store.close());

async function run(query: AuditQuery): Promise<Record<string, unknown>[]> {
  const out: Record<string, unknown>[] = [];
  for await (const row of queryAudit(store, query)) out.push(row.record);
  return out;
}

const CASES: readonly [string, AuditQuery, number][] = [
  ['default limit 100', {}, 100],
  ['no limit: every request record, system records excluded', { limit: 0 }, 1200],
  ['system records included', { limit: 0, includeSystem: true }, 1202],
  ['decision', { decision: 'denied', limit: 0 }, 300],
  ['reason', { reason: 'ERR_TOKEN_EXPIRED', limit: 0 }, 150],
  ['route', { route: 'a', limit: 0 }, 900],
  ['subject (plain records only)', { subject: 'u3', limit: 0 }, 110],
  ['subject, also matching its redacted form', { subject: 'u3', redactor, limit: 0 }, 120],
  ['subject and decision (plain records only)', { subject: 'u4', decision: 'denied', limit: 0 }, 55],
  ['time range [from, to)', { from: new Date(T0 + 10_000), to: new Date(T0 + 20_000), limit: 0 }, 10],
  ['time range across the page boundary', { from: new Date(T0 + 990_000), to: new Date(T0 + 1_010_000), limit: 0 }, 20],
  ['limit', { route: 'b', limit: 7 }, 7],
];

for (const [name, query, count] of CASES) {
  test(`query: ${name}`, async () => assert.equal((await run(query)).length, count));
}

test('results come in time order and carry their chain position', async () => {
  const rows = [];
  for await (const row of queryAudit(store, { from: new Date(T0 + 5000), limit: 3 })) rows.push(row);
  assert.deepEqual(rows.map((r) => r.record['@timestamp']), ['2025-07-01T00:00:05.000Z', '2025-07-01T00:00:06.000Z', '2025-07-01T00:00:07.000Z']);
  assert.deepEqual(rows.map((r) => r.seq), [7, 8, 9]);
  const flat = withChainFields(rows[0]!);
  assert.deepEqual([flat['audit.seq'], flat['audit.chain_id'], flat['audit.hash']], [7, rows[0]!.chainId, rows[0]!.hash]);
});
