/**
 * Retention and export on SQLite and PostgreSQL: prune whole checkpoint-aligned segments after a signed prune
 * statement (and an export), so that what remains — and the export used as anchors — still verifies; refuse
 * to destroy a segment that does not verify; and on PostgreSQL, the role model: the writer role cannot delete,
 * and the prune function refuses to run without a matching statement.
 */
import { test } from 'node:test';
import type { TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import type pg from 'pg';
import { exportAnchors, exportSegment } from '../../src/audit/export.ts';
import { createTrustedKeys, generateAuditKey } from '../../src/audit/keys.ts';
import { openAuditStore } from '../../src/audit/open-store.ts';
import { pruneAudit } from '../../src/audit/prune.ts';
import { queryAudit } from '../../src/audit/query.ts';
import { buildAuditRecord } from '../../src/audit/record.ts';
import type { AuditStore } from '../../src/audit/store.ts';
import { postgresGrantSql } from '../../src/audit/store-postgres.ts';
import { verifyAudit } from '../../src/audit/verify.ts';
import { createAuditWriter } from '../../src/audit/writer.ts';
import { createTestSchema } from '../helpers/postgres.ts';

const KEY = generateAuditKey('audit-1');
const trustedKeys = createTrustedKeys([{ kid: 'audit-1', publicKey: KEY.signer.publicKey }]);

interface Setup {
  store: AuditStore;
  /** PostgreSQL only: the raw superuser connection, search_path on the test schema. */
  client?: pg.Client;
  dir: string;
  /** Raw SQL for tampering ($1 placeholders). */
  sql(text: string, params?: unknown[]): Promise<void>;
  A: string;
  B: string;
  /** Checkpoint time (epoch ms) by chain and seq. */
  time(chainId: string, seq: number): Promise<number>;
}

/** Chain A: 35 requests, checkpoints 10, 20, 30, terminal 37. Chain B after it: 5 requests, terminal 7. */
async function setup(t: TestContext, kind: 'sqlite' | 'postgres'): Promise<Setup | undefined> {
  const dir = mkdtempSync(join(tmpdir(), 'portcullis-audit-prune-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  let url: string;
  let sql: Setup['sql'];
  let client: pg.Client | undefined;
  if (kind === 'sqlite') {
    url = `sqlite:${join(dir, 'audit.db')}`;
    let raw: DatabaseSync | undefined;
    t.after(() => raw?.close());
    sql = async (text, params = []) => {
      raw ??= new DatabaseSync(join(dir, 'audit.db'));
      raw.exec('DROP TRIGGER IF EXISTS audit_records_no_update');
      raw.prepare(text.replace(/\$(\d+)/g, '?$1')).run(...(params as string[]));
    };
  } else {
    const schema = await createTestSchema(t);
    if (schema === undefined) return undefined;
    url = schema.url;
    client = schema.client;
    sql = async (text, params = []) => {
      await schema.client.query('ALTER TABLE audit_records DISABLE TRIGGER USER');
      await schema.client.query(text, params);
    };
  }
  const store = await openAuditStore(url);
  t.after(() => store.close());
  let clock = Date.parse('2025-02-01T00:00:00.000Z');
  const options = { store, signer: KEY.signer, checkpointEvery: 10, checkpointIntervalMs: 3_600_000, now: () => (clock += 1000) };
  const a = await createAuditWriter(options);
  for (let i = 0; i < 35; i++) a.write(buildAuditRecord({ '@timestamp': clock, 'event.type': 'allowed', 'user.id': `a${i}` }));
  await a.close();
  const b = await createAuditWriter(options);
  for (let i = 0; i < 5; i++) b.write(buildAuditRecord({ '@timestamp': clock, 'event.type': 'allowed', 'user.id': `b${i}` }));
  await b.close();
  const time = async (chainId: string, seq: number): Promise<number> => {
    for await (const cp of store.checkpoints(chainId, { fromSeq: seq, toSeq: seq })) return Date.parse(cp.time);
    throw new Error(`no checkpoint ${chainId}#${seq}`);
  };
  return { store, dir, sql, A: a.chainId, B: b.chainId, time, ...(client === undefined ? {} : { client }) };
}

async function seqs(store: AuditStore, chainId: string): Promise<number[]> {
  const out: number[] = [];
  for await (const e of store.entries(chainId)) out.push(e.seq);
  return out;
}

for (const kind of ['sqlite', 'postgres'] as const) {
  test(`${kind}: prune exports then removes a checkpoint-aligned segment; the rest and the export verify`, async (t) => {
    const s = await setup(t, kind);
    if (s === undefined) return;
    const cp10 = await s.time(s.A, 10);
    const before = new Date((await s.time(s.A, 20)) + 1);
    const dry = await pruneAudit({ store: s.store, signer: KEY.signer, trustedKeys, before, dryRun: true });
    assert.deepEqual(dry.pruned.map((p) => [p.chainId, p.fromSeq, p.throughSeq, p.records]), [[s.A, 1, 20, 0]]);
    assert.equal((await seqs(s.store, s.A)).length, 37, 'a dry run changes nothing');

    const report = await pruneAudit({ store: s.store, signer: KEY.signer, trustedKeys, before, exportDir: s.dir });
    assert.deepEqual(report.refused, []);
    assert.deepEqual(report.pruned.map((p) => [p.chainId, p.fromSeq, p.throughSeq, p.records, p.checkpoints]), [[s.A, 1, 20, 20, 1]]);
    assert.deepEqual((await seqs(s.store, s.A))[0], 21);

    const exported = readFileSync(report.pruned[0]!.exportFile!, 'utf8').trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
    assert.deepEqual(
      exported.map((l) => `${String(l.type)}:${String(l.seq)}`),
      [...Array.from({ length: 10 }, (_, i) => `record:${i + 1}`), 'checkpoint:10', ...Array.from({ length: 10 }, (_, i) => `record:${i + 11}`), 'checkpoint:20'],
    );
    // The export's checkpoint lines are anchors: the pruned seqs they name are covered by the prune statement.
    const verified = await verifyAudit({ store: s.store, trustedKeys, anchors: report.pruned[0]!.exportFile! });
    assert.deepEqual(verified.findings, []);
    assert.equal(verified.stats.anchors, 2);
    // A time window that starts inside the pruned part walks from the prune boundary.
    const window = await verifyAudit({ store: s.store, trustedKeys, from: new Date(cp10), to: new Date(await s.time(s.A, 30)) });
    assert.deepEqual(window.findings, []);
    assert.equal(window.stats.records, 10, 'A 21..30; B started after the window');

    // A second run continues from the first boundary.
    const again = await pruneAudit({ store: s.store, signer: KEY.signer, trustedKeys, before: new Date((await s.time(s.A, 30)) + 1) });
    assert.deepEqual(again.pruned.map((p) => [p.fromSeq, p.throughSeq, p.records]), [[21, 30, 10]]);
    assert.deepEqual((await verifyAudit({ store: s.store, trustedKeys })).findings, []);
    let requests = 0;
    for await (const _ of queryAudit(s.store, { limit: 0 })) requests++;
    assert.equal(requests, 6 + 5, 'A keeps seqs 31..36 (six requests), B all five');
  });

  test(`${kind}: pruning whole chains leaves statements and terminal checkpoints that still verify`, async (t) => {
    const s = await setup(t, kind);
    if (s === undefined) return;
    const anchors = join(s.dir, 'anchors.jsonl');
    assert.equal(await exportAnchors({ store: s.store, out: anchors }), 5);
    const report = await pruneAudit({ store: s.store, signer: KEY.signer, trustedKeys, before: new Date((await s.time(s.B, 7)) + 1) });
    assert.deepEqual(report.pruned.map((p) => [p.chainId, p.throughSeq]).sort(), [[s.A, 37], [s.B, 7]].sort());
    assert.deepEqual(await seqs(s.store, s.A), []);
    const verified = await verifyAudit({ store: s.store, trustedKeys, anchors });
    assert.deepEqual(verified.findings, []);
    assert.equal(verified.stats.chains, 2);
  });

  test(`${kind}: prune refuses to destroy a segment that does not verify, and an untrusted prune key`, async (t) => {
    const s = await setup(t, kind);
    if (s === undefined) return;
    await s.sql(`UPDATE audit_records SET record = replace(record, '"a4"', '"zz"') WHERE chain_id = $1 AND seq = 6`, [s.A]);
    const before = new Date((await s.time(s.A, 30)) + 1);
    const report = await pruneAudit({ store: s.store, signer: KEY.signer, trustedKeys, before });
    assert.deepEqual(report.pruned, []);
    assert.deepEqual(report.refused.map((r) => [r.chainId, r.throughSeq, r.findings.map((f) => `${f.code} ${f.seq}`)]), [[s.A, 30, ['RECORD_HASH_MISMATCH 6']]]);
    assert.equal((await seqs(s.store, s.A)).length, 37, 'the evidence is kept');
    await assert.rejects(pruneAudit({ store: s.store, signer: generateAuditKey('other').signer, trustedKeys, before }), {
      name: 'AuditError',
      code: 'ERR_AUDIT_PRUNE_REFUSED',
    });
  });

  test(`${kind}: export writes records and checkpoints in seq order and never overwrites a file`, async (t) => {
    const s = await setup(t, kind);
    if (s === undefined) return;
    const out = join(s.dir, 'b.jsonl');
    assert.deepEqual(await exportSegment({ store: s.store, chainId: s.B, out }), { records: 7, checkpoints: 1, prunes: 0 });
    const lines = readFileSync(out, 'utf8').trim().split('\n').map((l) => JSON.parse(l) as { type: string; seq: number; record?: Record<string, unknown> });
    assert.deepEqual(lines.map((l) => `${l.type}:${l.seq}`), ['record:1', 'record:2', 'record:3', 'record:4', 'record:5', 'record:6', 'record:7', 'checkpoint:7']);
    assert.equal(lines[1]!.record!['user.id'], 'b0');
    await assert.rejects(exportSegment({ store: s.store, chainId: s.B, out }), { code: 'EEXIST' });
  });
}

test('postgres: the writer role can only insert and read; the prune function needs a matching statement', async (t) => {
  const s = await setup(t, 'postgres');
  if (s === undefined) return;
  const client = s.client!;
  const target = new URL(s.store.location).searchParams.get('schema')!;
  const suffix = randomBytes(4).toString('hex');
  const writer = `pc_test_writer_${suffix}`;
  const pruner = `pc_test_pruner_${suffix}`;
  await client.query(`CREATE ROLE ${writer} NOLOGIN; CREATE ROLE ${pruner} NOLOGIN`);
  try {
    await client.query(postgresGrantSql(target, writer, pruner));

    await client.query(`SET ROLE ${writer}`);
    const { rows } = await client.query('SELECT count(*)::int AS n FROM audit_records');
    assert.equal(rows[0].n, 44);
    await client.query("INSERT INTO audit_chains (chain_id, started_at) VALUES ('role-test', 'now')");
    await assert.rejects(client.query('DELETE FROM audit_records'), /permission denied/);
    await assert.rejects(client.query("SET portcullis.audit_prune = 'on'; DELETE FROM audit_records"), /permission denied/);
    await assert.rejects(client.query('SELECT audit_prune($1, 10)', [s.A]), /permission denied/);
    await assert.rejects(client.query('ALTER TABLE audit_records DISABLE TRIGGER USER'), /must be owner/);

    await client.query('RESET ROLE');
    await client.query(`SET ROLE ${pruner}`);
    await assert.rejects(client.query('SELECT audit_prune($1, 10)', [s.A]), /no prune statement/);
  } finally {
    // Roles are cluster-wide: drop them here, while the schema (and this connection) still exist.
    await client.query('RESET ROLE');
    for (const role of [writer, pruner]) await client.query(`DROP OWNED BY ${role}; DROP ROLE ${role}`);
  }
  assert.equal((await seqs(s.store, s.A)).length, 37);
});
