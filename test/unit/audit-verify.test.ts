/**
 * verifyAudit beyond the tamper table (test/integration/audit-tamper.test.ts): exit statuses, live chains,
 * verifying a time window from a trusted checkpoint, the finding cap and streaming.
 */
import { test } from 'node:test';
import type { TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { createTrustedKeys, generateAuditKey } from '../../src/audit/keys.ts';
import { openAuditStore } from '../../src/audit/open-store.ts';
import { buildAuditRecord } from '../../src/audit/record.ts';
import type { AuditStore } from '../../src/audit/store.ts';
import { FINDING_CODES, verifyAudit, verifyAuditFindings } from '../../src/audit/verify.ts';
import type { Finding } from '../../src/audit/verify.ts';
import { createAuditWriter } from '../../src/audit/writer.ts';
import { freePort } from '../helpers/ports.ts';

const KEY = generateAuditKey('audit-1');
const trustedKeys = createTrustedKeys([{ kid: 'audit-1', publicKey: KEY.signer.publicKey }]);

interface Filled {
  store: AuditStore;
  raw: DatabaseSync;
  chainId: string;
  checkpointTimes: Map<number, number>;
}

/** A file store with one closed chain: 50 requests, checkpoints every 10 (10..50) and terminal 52. */
async function filled(t: TestContext, close = true): Promise<Filled> {
  const dir = mkdtempSync(join(tmpdir(), 'portcullis-audit-verify-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const store = await openAuditStore(`sqlite:${join(dir, 'audit.db')}`);
  t.after(() => store.close());
  let clock = Date.parse('2025-06-01T00:00:00.000Z');
  const writer = await createAuditWriter({ store, signer: KEY.signer, checkpointEvery: 10, checkpointIntervalMs: 3_600_000, now: () => (clock += 1000) });
  for (let i = 0; i < 50; i++) writer.write(buildAuditRecord({ 'event.type': 'allowed', 'user.id': `u${i}`, '@timestamp': clock }));
  if (close) await writer.close();
  else await writer.flush();
  const raw = new DatabaseSync(join(dir, 'audit.db'));
  t.after(() => raw.close());
  const checkpointTimes = new Map<number, number>();
  for await (const cp of store.checkpoints(writer.chainId)) checkpointTimes.set(cp.seq, Date.parse(cp.time));
  return { store, raw, chainId: writer.chainId, checkpointTimes };
}

function tamper(f: Filled, seq: number): void {
  f.raw.exec('DROP TRIGGER IF EXISTS audit_records_no_update');
  f.raw.prepare(`UPDATE audit_records SET record = replace(record, '"u', '"x') WHERE chain_id = ? AND seq = ?`).run(f.chainId, seq);
}

const codes = (findings: readonly Finding[]): string[] => findings.map((f) => `${f.code} ${f.seq} ${f.severity}`);

test('a live chain: the unanchored tail is a warning; the missing terminal checkpoint an error unless allowed', async (t) => {
  const f = await filled(t, false);
  const strict = await verifyAudit({ store: f.store, trustedKeys });
  assert.deepEqual(codes(strict.findings), ['UNANCHORED_TAIL 51 warning', 'CHAIN_UNTERMINATED 51 error']);
  assert.equal(strict.exitCode, 1);
  const open = await verifyAudit({ store: f.store, trustedKeys, allowOpenChains: true });
  assert.deepEqual(codes(open.findings), ['UNANCHORED_TAIL 51 warning', 'CHAIN_UNTERMINATED 51 warning']);
  assert.deepEqual([open.exitCode, open.status, open.errors, open.warnings], [0, 'valid', 0, 2]);
});

test('a time window starts from the last trusted checkpoint before it: damage before is out of scope, inside is found', async (t) => {
  const f = await filled(t);
  tamper(f, 5);
  tamper(f, 35);
  const from = new Date(f.checkpointTimes.get(30)!);
  const to = new Date(f.checkpointTimes.get(40)!);
  const window = await verifyAudit({ store: f.store, trustedKeys, from, to });
  assert.deepEqual(codes(window.findings), ['RECORD_HASH_MISMATCH 35 error']);
  assert.equal(window.stats.records, 11, 'records 30..40 only');
  const whole = await verifyAudit({ store: f.store, trustedKeys });
  assert.deepEqual(codes(whole.findings), ['RECORD_HASH_MISMATCH 5 error', 'RECORD_HASH_MISMATCH 35 error']);
  const after = await verifyAudit({ store: f.store, trustedKeys, from: new Date(f.checkpointTimes.get(52)! + 1) });
  assert.equal(after.stats.records, 0, 'the chain ended before the window');
});

test('exit 2: no trusted keys', async (t) => {
  const f = await filled(t);
  const report = await verifyAudit({ store: f.store, trustedKeys: createTrustedKeys([]) });
  assert.deepEqual([report.exitCode, report.status, report.failure?.code], [2, 'unverifiable', 'ERR_AUDIT_KEYS_FILE_INVALID']);
});

test('exit 2: the store is unreachable', async () => {
  const store = await openAuditStore(`postgres://postgres@127.0.0.1:${await freePort()}/test`, { init: false, connectTimeoutMs: 2000 });
  try {
    const report = await verifyAudit({ store, trustedKeys });
    assert.deepEqual([report.exitCode, report.failure?.code], [2, 'ERR_AUDIT_STORE_UNAVAILABLE']);
  } finally {
    await store.close();
  }
});

test('exit 2: an anchor file that cannot be read', async (t) => {
  const f = await filled(t);
  const report = await verifyAudit({ store: f.store, trustedKeys, anchors: '/nonexistent/anchors.jsonl' });
  assert.deepEqual([report.exitCode, report.failure?.code], [2, 'ERR_AUDIT_ANCHORS_INVALID']);
});

test('keys valid but not the writer’s: every checkpoint is UNKNOWN_KEY (exit 1)', async (t) => {
  const f = await filled(t);
  const other = createTrustedKeys([{ kid: 'someone-else', publicKey: generateAuditKey().signer.publicKey }]);
  const report = await verifyAudit({ store: f.store, trustedKeys: other });
  assert.equal(report.counts.UNKNOWN_KEY, 6);
  assert.equal(report.exitCode, 1);
});

test('findings stream one by one and the report keeps at most maxFindings while counting all', async (t) => {
  const f = await filled(t);
  for (const seq of [3, 6, 9, 12, 15]) tamper(f, seq);
  const streamed: Finding[] = [];
  for await (const finding of verifyAuditFindings({ store: f.store, trustedKeys })) streamed.push(finding);
  assert.equal(streamed.length, 5);
  const seen: Finding[] = [];
  const report = await verifyAudit({ store: f.store, trustedKeys, maxFindings: 2, onFinding: (x) => seen.push(x) });
  assert.deepEqual([report.findings.length, report.truncated, report.counts.RECORD_HASH_MISMATCH, seen.length], [2, true, 5, 5]);
});

test('the finding codes are the documented, stable set', () => {
  assert.deepEqual([...FINDING_CODES].sort(), [
    'ANCHOR_MISMATCH',
    'CHAIN_MISSING',
    'CHAIN_UNTERMINATED',
    'CHECKPOINT_HEAD_MISMATCH',
    'CHECKPOINT_SIG_INVALID',
    'LOSS_RECORDED',
    'PREV_LINK_MISMATCH',
    'PRUNE_ANCHOR_INVALID',
    'RECORD_HASH_MISMATCH',
    'REQUEST_COUNT_MISMATCH',
    'SEQ_DUPLICATE',
    'SEQ_GAP',
    'UNANCHORED_TAIL',
    'UNKNOWN_KEY',
  ]);
});

test('a lying ts index column is caught even though the JSON is intact', async (t) => {
  const f = await filled(t);
  f.raw.exec('DROP TRIGGER IF EXISTS audit_records_no_update');
  f.raw.prepare('UPDATE audit_records SET ts = ts - 86400000 WHERE chain_id = ? AND seq = 7').run(f.chainId);
  const report = await verifyAudit({ store: f.store, trustedKeys });
  assert.deepEqual(codes(report.findings), ['RECORD_HASH_MISMATCH 7 error']);
  assert.match(report.findings[0]!.detail, /ts index column/);
});
