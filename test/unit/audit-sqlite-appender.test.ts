/**
 * SQLite appends committed on a worker thread: same store contract (order, idempotent replay, conflict code),
 * readable at once through the main connection, and a verified chain through the real writer.
 */
import { test } from 'node:test';
import type { TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { DatabaseSync } from 'node:sqlite';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createTrustedKeys, generateAuditKey } from '../../src/audit/keys.ts';
import { openAuditStore } from '../../src/audit/open-store.ts';
import { buildAuditRecord } from '../../src/audit/record.ts';
import type { AppendBatch, AuditStore } from '../../src/audit/store.ts';
import { pruneAudit } from '../../src/audit/prune.ts';
import { packBatch, unpackBatch } from '../../src/audit/sqlite-appender.ts';
import { createSqliteStore } from '../../src/audit/store-sqlite.ts';
import { verifyAudit } from '../../src/audit/verify.ts';
import { createAuditWriter } from '../../src/audit/writer.ts';

const KEY = generateAuditKey('audit-1');
const trustedKeys = createTrustedKeys([{ kid: 'audit-1', publicKey: KEY.signer.publicKey }]);

async function offThreadStore(t: TestContext): Promise<{ store: AuditStore; path: string }> {
  const dir = mkdtempSync(join(tmpdir(), 'portcullis-audit-appender-'));
  const path = join(dir, 'audit.db');
  const store = await openAuditStore(`sqlite:${path}`, { appendOffThread: true });
  t.after(async () => {
    await store.close();
    rmSync(dir, { recursive: true, force: true });
  });
  return { store, path };
}

test('a writer on the off-thread store produces a chain that verifies, read back through the main connection', async (t) => {
  const { store } = await offThreadStore(t);
  const writer = await createAuditWriter({ store, signer: KEY.signer, checkpointEvery: 10, batchMax: 7 });
  for (let i = 0; i < 100; i++) writer.write(buildAuditRecord({ 'event.type': 'allowed', 'user.id': `u${i}` }));
  const closed = await writer.close();
  assert.equal(closed.unpersisted, 0);
  const seqs: number[] = [];
  for await (const e of store.entries(writer.chainId)) seqs.push(e.seq);
  assert.deepEqual(seqs, Array.from({ length: closed.lastSeq }, (_, i) => i + 1), 'every record, in order');
  assert.deepEqual((await verifyAudit({ store, trustedKeys })).findings, []);
});

test('idempotent replay skips identical rows and a different row under the same seq is ERR_AUDIT_CONFLICT', async (t) => {
  const { store } = await offThreadStore(t);
  const entry = { chainId: 'c1', seq: 1, prevHash: '0'.repeat(64), hash: 'a'.repeat(64), ts: 1_750_000_000_000, record: '{}' };
  const batch: AppendBatch = { chains: [{ chainId: 'c1', startedAt: '2026-11-23T00:00:00.000Z' }], entries: [entry], checkpoints: [] };
  assert.deepEqual(await store.append(batch), { inserted: 1, duplicates: 0 });
  assert.deepEqual(await store.append(batch, { idempotent: true }), { inserted: 0, duplicates: 1 });
  await assert.rejects(store.append({ entries: [{ ...entry, hash: 'b'.repeat(64) }], checkpoints: [] }, { idempotent: true }), {
    name: 'AuditError',
    code: 'ERR_AUDIT_CONFLICT',
  });
  assert.equal((await store.entryAt('c1', 1))?.hash, 'a'.repeat(64));
});

test('entries posted to the worker as a flat array arrive field for field, in order, across chains', async (t) => {
  const { store } = await offThreadStore(t);
  const entries = [
    { chainId: 'c-é', seq: 1, prevHash: '0'.repeat(64), hash: 'a'.repeat(64), ts: 1_750_000_000_000, record: '{"user.id":"名前"}' },
    { chainId: 'c-é', seq: 2, prevHash: 'a'.repeat(64), hash: 'b'.repeat(64), ts: 0, record: '{}' },
    { chainId: 'c2', seq: 2 ** 40, prevHash: 'c'.repeat(64), hash: 'd'.repeat(64), ts: -1, record: '{"x":"\\u0000"}' },
  ];
  const batch: AppendBatch = { entries, checkpoints: [] };
  assert.deepEqual(unpackBatch(packBatch(batch)), { chains: undefined, entries, checkpoints: [] });
  assert.deepEqual(unpackBatch(packBatch({ entries: [], checkpoints: [] })).entries, []);
  assert.deepEqual(await store.append(batch), { inserted: 3, duplicates: 0 });
  const stored = [];
  for (const chainId of ['c-é', 'c2']) for await (const { id: _id, ...entry } of store.entries(chainId)) stored.push(entry);
  assert.deepEqual(stored, entries);
});

test('appends after close are refused as a store outage, not lost silently', async (t) => {
  const { store } = await offThreadStore(t);
  await store.close();
  await assert.rejects(store.append({ entries: [], checkpoints: [] }), { name: 'AuditError' });
});

test('a prune runs on the same worker as the appends, and what remains verifies', async (t) => {
  const { store } = await offThreadStore(t);
  let clock = Date.parse('2025-02-01T00:00:00.000Z');
  const writer = await createAuditWriter({ store, signer: KEY.signer, checkpointEvery: 10, checkpointIntervalMs: 3_600_000, now: () => (clock += 1000) });
  for (let i = 0; i < 35; i++) writer.write(buildAuditRecord({ '@timestamp': clock, 'event.type': 'allowed', 'user.id': `a${i}` }));
  await writer.close();
  let cut = 0;
  for await (const cp of store.checkpoints(writer.chainId, { fromSeq: 20, toSeq: 20 })) cut = Date.parse(cp.time) + 1;
  const report = await pruneAudit({ store, signer: KEY.signer, trustedKeys, before: new Date(cut) });
  assert.deepEqual(report.pruned.map((p) => [p.fromSeq, p.throughSeq]), [[1, 20]]);
  const first = await store.entries(writer.chainId)[Symbol.asyncIterator]().next();
  assert.equal((first.value as { seq: number }).seq, 21);
  assert.deepEqual((await verifyAudit({ store, trustedKeys })).findings, []);
});

test('a write refused while another connection holds the lock fails alone; the next one commits and is reported', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'portcullis-audit-appender-'));
  const path = join(dir, 'audit.db');
  const store = createSqliteStore(path, { appendOffThread: true, busyTimeoutMs: 50 });
  await store.init();
  const other = new DatabaseSync(path);
  t.after(async () => {
    other.close();
    await store.close();
    rmSync(dir, { recursive: true, force: true });
  });
  const entry = (seq: number) => ({ chainId: 'c1', seq, prevHash: '0'.repeat(64), hash: String(seq).repeat(64).slice(0, 64), ts: 1_750_000_000_000, record: '{}' });
  other.exec('BEGIN IMMEDIATE');
  await assert.rejects(store.append({ chains: [{ chainId: 'c1', startedAt: '2026-11-23T00:00:00.000Z' }], entries: [entry(1)], checkpoints: [] }), {
    name: 'AuditError',
    code: 'ERR_AUDIT_STORE_UNAVAILABLE',
    message: /locked|busy/i,
  });
  other.exec('COMMIT');
  assert.deepEqual(await store.append({ chains: [{ chainId: 'c1', startedAt: '2026-11-23T00:00:00.000Z' }], entries: [entry(1)], checkpoints: [] }), { inserted: 1, duplicates: 0 });
  assert.equal((await store.entryAt('c1', 1))?.seq, 1);
});
