/**
 * Tamper detection, one case per attack, each run against SQLite AND PostgreSQL: a real writer fills a fresh
 * store (chain A: 37 records, checkpoints at 10, 20, 30 and terminal 37; chain B started after A closed:
 * 17 records, checkpoints 10 and terminal 17), then the case mutates the database with raw SQL — after
 * disabling the guard triggers as a superuser or file owner would — and `verifyAudit` must report exactly the
 * expected error findings (code, chain and seq). The no-false-positive cases expect none.
 */
import { test } from 'node:test';
import type { TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { canonicalize } from '../../src/audit/canonical.ts';
import { GENESIS_HASH, computeEntryHash, timestampOf } from '../../src/audit/chain.ts';
import { signCheckpoint, signPrune } from '../../src/audit/checkpoint.ts';
import { createTrustedKeys, generateAuditKey } from '../../src/audit/keys.ts';
import { openAuditStore } from '../../src/audit/open-store.ts';
import { pruneAudit } from '../../src/audit/prune.ts';
import { buildAuditRecord } from '../../src/audit/record.ts';
import type { AuditStore } from '../../src/audit/store.ts';
import { verifyAudit } from '../../src/audit/verify.ts';
import type { FindingCode } from '../../src/audit/verify.ts';
import { createAuditWriter } from '../../src/audit/writer.ts';
import { createTestSchema } from '../helpers/postgres.ts';

const TRUSTED = generateAuditKey('audit-1');
const ROGUE = generateAuditKey('rogue');
const IMPOSTOR = generateAuditKey('audit-1'); // the trusted kid, another key
const trustedKeys = createTrustedKeys([{ kid: 'audit-1', publicKey: TRUSTED.signer.publicKey }]);
const TABLES = ['audit_chains', 'audit_records', 'audit_checkpoints', 'audit_prunes'] as const;

type Row = Record<string, unknown>;

/** Raw access to one store's database, the way an attacker with database rights has it. */
interface Harness {
  readonly kind: 'sqlite' | 'postgres';
  readonly url: string;
  readonly dir: string;
  /** `$1`-style placeholders on both engines; SELECT returns rows. */
  sql(text: string, params?: readonly unknown[]): Promise<Row[]>;
  /** Drop (SQLite) or disable (PostgreSQL) the append-only guard triggers. */
  disableGuards(): Promise<void>;
}

function tempDir(t: TestContext): string {
  const dir = mkdtempSync(join(tmpdir(), 'portcullis-audit-tamper-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

async function sqliteHarness(t: TestContext): Promise<Harness> {
  const dir = tempDir(t);
  const path = join(dir, 'audit.db');
  let raw: DatabaseSync | undefined;
  const db = (): DatabaseSync => (raw ??= new DatabaseSync(path));
  t.after(() => raw?.close());
  return {
    kind: 'sqlite',
    url: `sqlite:${path}`,
    dir,
    async sql(text, params = []) {
      const stmt = db().prepare(text.replace(/\$(\d+)/g, '?$1'));
      const args = params as (string | number | null)[];
      if (/^\s*(select|with)\b/i.test(text)) return stmt.all(...args) as Row[];
      stmt.run(...args);
      return [];
    },
    async disableGuards() {
      const triggers = db().prepare("SELECT name FROM sqlite_master WHERE type = 'trigger'").all() as { name: string }[];
      for (const { name } of triggers) db().exec(`DROP TRIGGER ${name}`);
    },
  };
}

async function postgresHarness(t: TestContext): Promise<Harness | undefined> {
  const schema = await createTestSchema(t);
  if (schema === undefined) return undefined;
  return {
    kind: 'postgres',
    url: schema.url,
    dir: tempDir(t),
    async sql(text, params = []) {
      return (await schema.client.query(text, params as unknown[])).rows as Row[];
    },
    async disableGuards() {
      for (const table of TABLES) await schema.client.query(`ALTER TABLE ${table} DISABLE TRIGGER USER`);
    },
  };
}

interface Fixture {
  readonly h: Harness;
  readonly store: AuditStore;
  readonly A: string;
  readonly B: string;
  readonly anchors: string;
  /** Every row as it was after A's first 25 requests (an "old copy" of the store). */
  readonly snapshot: Record<string, Row[]>;
  readonly now: () => number;
}

async function buildFixture(t: TestContext, h: Harness): Promise<Fixture> {
  const store = await openAuditStore(h.url);
  t.after(() => store.close());
  const anchors = join(h.dir, 'anchors.jsonl');
  // A fake clock that ticks 1 ms per reading: every checkpoint gets a distinct, ordered time.
  let clock = Date.parse('2025-03-01T00:00:00.000Z');
  const now = (): number => (clock += 1);
  const options = { store, signer: TRUSTED.signer, checkpointEvery: 10, checkpointIntervalMs: 3_600_000, anchorFile: anchors, now };
  const record = (i: number) =>
    buildAuditRecord({
      '@timestamp': now(),
      'event.type': i % 4 === 0 ? 'denied' : 'allowed',
      'event.reason': i % 4 === 0 ? 'ERR_TOKEN_EXPIRED' : undefined,
      'user.id': `user-${i % 5}`,
      'http.request.method': 'GET',
      'url.path': `/api/items/${i}`,
      'http.route': 'items',
      'http.response.status_code': i % 4 === 0 ? 401 : 200,
    });
  const a = await createAuditWriter(options);
  for (let i = 0; i < 25; i++) a.write(record(i));
  await a.flush();
  const snapshot = await takeSnapshot(h);
  for (let i = 25; i < 35; i++) a.write(record(i));
  const closedA = await a.close();
  assert.deepEqual([closedA.lastSeq, closedA.terminated], [37, true]);
  const b = await createAuditWriter(options);
  for (let i = 0; i < 15; i++) b.write(record(100 + i));
  const closedB = await b.close();
  assert.deepEqual([closedB.lastSeq, closedB.terminated], [17, true]);
  return { h, store, A: a.chainId, B: b.chainId, anchors, snapshot, now };
}

async function takeSnapshot(h: Harness): Promise<Record<string, Row[]>> {
  const out: Record<string, Row[]> = {};
  for (const table of TABLES) out[table] = await h.sql(`SELECT * FROM ${table} ORDER BY 1`);
  return out;
}

async function restore(h: Harness, snapshot: Record<string, Row[]>): Promise<void> {
  for (const table of TABLES) {
    await h.sql(`DELETE FROM ${table}`);
    for (const row of snapshot[table]!) {
      const cols = Object.keys(row);
      await h.sql(`INSERT INTO ${table} (${cols.join(', ')}) VALUES (${cols.map((_, i) => `$${i + 1}`).join(', ')})`, cols.map((c) => row[c]));
    }
  }
}

interface RecordRow {
  id: number;
  seq: number;
  prev_hash: string;
  hash: string;
  record: string;
}

async function recordAt(h: Harness, chainId: string, seq: number): Promise<RecordRow> {
  const rows = await h.sql('SELECT id, seq, prev_hash, hash, record FROM audit_records WHERE chain_id = $1 AND seq = $2', [chainId, seq]);
  assert.equal(rows.length, 1, `record ${chainId}#${seq}`);
  const r = rows[0]!;
  return { id: Number(r.id), seq: Number(r.seq), prev_hash: String(r.prev_hash), hash: String(r.hash), record: String(r.record) };
}

async function editRecord(h: Harness, chainId: string, seq: number, patch: Row): Promise<void> {
  const row = await recordAt(h, chainId, seq);
  const record = { ...(JSON.parse(row.record) as Row), ...patch };
  await h.sql('UPDATE audit_records SET record = $1 WHERE id = $2', [JSON.stringify(record), row.id]);
}

/** Recomputes hash and prev_hash from `fromSeq` to the end, as an attacker who knows the algorithm can. */
async function rehashFrom(h: Harness, chainId: string, fromSeq: number): Promise<void> {
  let prev = fromSeq > 1 ? (await recordAt(h, chainId, fromSeq - 1)).hash : GENESIS_HASH;
  const rows = await h.sql('SELECT id, seq, record FROM audit_records WHERE chain_id = $1 AND seq >= $2 ORDER BY seq', [chainId, fromSeq]);
  for (const r of rows) {
    const hash = computeEntryHash(chainId, Number(r.seq), prev, canonicalize(JSON.parse(String(r.record))));
    await h.sql('UPDATE audit_records SET prev_hash = $1, hash = $2 WHERE id = $3', [prev, hash, r.id]);
    prev = hash;
  }
}

/** Inserts a record that hashes and links correctly after `prevHash`. */
async function forgeRecord(h: Harness, chainId: string, seq: number, prevHash: string): Promise<void> {
  const record = buildAuditRecord({ '@timestamp': '2025-03-01T01:00:00.000Z', 'event.type': 'allowed', 'user.id': 'mallory', 'url.path': '/admin' });
  const canonical = canonicalize(record);
  await h.sql('INSERT INTO audit_records (chain_id, seq, ts, prev_hash, hash, record) VALUES ($1, $2, $3, $4, $5, $6)', [
    chainId,
    seq,
    timestampOf(record),
    prevHash,
    computeEntryHash(chainId, seq, prevHash, canonical),
    canonical,
  ]);
}

async function checkpointRow(h: Harness, chainId: string, seq: number): Promise<Row> {
  const rows = await h.sql('SELECT * FROM audit_checkpoints WHERE chain_id = $1 AND seq = $2', [chainId, seq]);
  assert.equal(rows.length, 1);
  return rows[0]!;
}

type Label = 'A' | 'B' | 'C';
type Expected = readonly (readonly [FindingCode, Label, number])[];

interface Case {
  readonly name: string;
  /** Returns extra chain labels (C: a chain created by the attack). */
  readonly mutate: (f: Fixture) => Promise<Partial<Record<Label, string>> | void>;
  /** Verify with the anchor file the writers exported. */
  readonly anchors?: boolean;
  /** Leave the guard triggers in place (legitimate operations only). */
  readonly keepGuards?: boolean;
  /** The error findings, exactly (order-insensitive). */
  readonly exact?: Expected;
  /** Error findings that must be among those reported (for attacks whose later effects cascade). */
  readonly includes?: Expected;
  /** The first error finding reported for the chain named by includes[0]. */
  readonly first?: boolean;
}

const CASES: readonly Case[] = [
  { name: 'untouched store verifies', mutate: async () => {}, exact: [] },
  { name: 'untouched store verifies with anchors', mutate: async () => {}, anchors: true, exact: [] },
  {
    name: 'no false positive: stored JSON re-serialised (key order, whitespace)',
    mutate: async ({ h }) => {
      const rows = await h.sql('SELECT id, record FROM audit_records');
      for (const r of rows) {
        const parsed = JSON.parse(String(r.record)) as Row;
        const reordered = Object.fromEntries(Object.entries(parsed).reverse());
        await h.sql('UPDATE audit_records SET record = $1 WHERE id = $2', [JSON.stringify(reordered, null, 2), r.id]);
      }
    },
    anchors: true,
    exact: [],
  },
  {
    name: 'no false positive: a legitimate prune of A through seq 20',
    mutate: async ({ h, store, A }) => {
      const cp20 = await checkpointRow(h, A, 20);
      const report = await pruneAudit({ store, signer: TRUSTED.signer, trustedKeys, before: new Date(Date.parse(String(cp20.time)) + 1) });
      assert.deepEqual(
        report.pruned.map((p) => [p.chainId, p.fromSeq, p.throughSeq, p.records]),
        [[A, 1, 20, 20]],
      );
    },
    anchors: true,
    keepGuards: true,
    exact: [],
  },
  {
    name: 'edit a field',
    mutate: async ({ h, A }) => editRecord(h, A, 5, { 'user.id': 'someone-else' }),
    exact: [['RECORD_HASH_MISMATCH', 'A', 5]],
  },
  {
    name: 'edit a field and rehash that record',
    mutate: async ({ h, A }) => {
      await editRecord(h, A, 5, { 'user.id': 'someone-else' });
      const row = await recordAt(h, A, 5);
      const hash = computeEntryHash(A, 5, row.prev_hash, canonicalize(JSON.parse(row.record)));
      await h.sql('UPDATE audit_records SET hash = $1 WHERE id = $2', [hash, row.id]);
    },
    exact: [['PREV_LINK_MISMATCH', 'A', 6]],
  },
  {
    name: 'edit and rehash the whole suffix (caught by the signed checkpoints)',
    mutate: async ({ h, A }) => {
      await editRecord(h, A, 5, { 'http.response.status_code': 500 });
      await rehashFrom(h, A, 5);
    },
    exact: [
      ['CHECKPOINT_HEAD_MISMATCH', 'A', 10],
      ['CHECKPOINT_HEAD_MISMATCH', 'A', 20],
      ['CHECKPOINT_HEAD_MISMATCH', 'A', 30],
      ['CHECKPOINT_HEAD_MISMATCH', 'A', 37],
      // B's chain-start record witnessed A's head when B started.
      ['ANCHOR_MISMATCH', 'A', 37],
    ],
  },
  {
    name: 'delete one record',
    mutate: async ({ h, A }) => h.sql('DELETE FROM audit_records WHERE chain_id = $1 AND seq = 5', [A]).then(() => {}),
    exact: [['SEQ_GAP', 'A', 5]],
  },
  {
    name: 'delete a range of records',
    mutate: async ({ h, A }) => h.sql('DELETE FROM audit_records WHERE chain_id = $1 AND seq BETWEEN 5 AND 12', [A]).then(() => {}),
    exact: [['SEQ_GAP', 'A', 5]],
  },
  {
    name: 'reorder two records',
    mutate: async ({ h, A }) => {
      await h.sql('UPDATE audit_records SET seq = -5 WHERE chain_id = $1 AND seq = 5', [A]);
      await h.sql('UPDATE audit_records SET seq = 5 WHERE chain_id = $1 AND seq = 6', [A]);
      await h.sql('UPDATE audit_records SET seq = 6 WHERE chain_id = $1 AND seq = -5', [A]);
    },
    exact: [
      ['RECORD_HASH_MISMATCH', 'A', 5],
      ['PREV_LINK_MISMATCH', 'A', 5],
      ['RECORD_HASH_MISMATCH', 'A', 6],
      ['PREV_LINK_MISMATCH', 'A', 6],
      ['PREV_LINK_MISMATCH', 'A', 7],
    ],
  },
  {
    name: 'insert a forged record (renumbering what follows)',
    mutate: async ({ h, A }) => {
      await h.sql('UPDATE audit_records SET seq = seq + 1000 WHERE chain_id = $1 AND seq >= 6', [A]);
      await h.sql('UPDATE audit_records SET seq = seq - 999 WHERE chain_id = $1 AND seq >= 1006', [A]);
      await forgeRecord(h, A, 6, (await recordAt(h, A, 5)).hash);
    },
    includes: [
      ['RECORD_HASH_MISMATCH', 'A', 7],
      ['PREV_LINK_MISMATCH', 'A', 7],
      ['CHECKPOINT_HEAD_MISMATCH', 'A', 10],
    ],
    first: true,
  },
  {
    name: 'insert a forged record and rehash the suffix (caught by the signed checkpoints)',
    mutate: async ({ h, A }) => {
      await h.sql('UPDATE audit_records SET seq = seq + 1000 WHERE chain_id = $1 AND seq >= 6', [A]);
      await h.sql('UPDATE audit_records SET seq = seq - 999 WHERE chain_id = $1 AND seq >= 1006', [A]);
      await forgeRecord(h, A, 6, (await recordAt(h, A, 5)).hash);
      await rehashFrom(h, A, 7);
    },
    includes: [['CHECKPOINT_HEAD_MISMATCH', 'A', 10]],
    first: true,
  },
  {
    name: 'duplicate a seq (unique key dropped)',
    mutate: async ({ h, A }) => {
      await h.sql('DROP INDEX audit_records_chain_seq');
      await h.sql(
        'INSERT INTO audit_records (chain_id, seq, ts, prev_hash, hash, record) SELECT chain_id, seq, ts, prev_hash, hash, record FROM audit_records WHERE chain_id = $1 AND seq = 5',
        [A],
      );
    },
    exact: [['SEQ_DUPLICATE', 'A', 5]],
  },
  {
    name: 'copy a record into another chain',
    mutate: async ({ h, A, B }) => {
      await h.sql('DELETE FROM audit_records WHERE chain_id = $1 AND seq = 5', [B]);
      await h.sql(
        'INSERT INTO audit_records (chain_id, seq, ts, prev_hash, hash, record) SELECT $1, seq, ts, prev_hash, hash, record FROM audit_records WHERE chain_id = $2 AND seq = 5',
        [B, A],
      );
    },
    exact: [
      ['RECORD_HASH_MISMATCH', 'B', 5],
      ['PREV_LINK_MISMATCH', 'B', 5],
      ['PREV_LINK_MISMATCH', 'B', 6],
    ],
  },
  {
    name: 'append a forged record after the last checkpoint',
    mutate: async ({ h, A }) => forgeRecord(h, A, 38, (await recordAt(h, A, 37)).hash),
    exact: [['UNANCHORED_TAIL', 'A', 38]],
  },
  {
    name: 'truncate the tail (records and checkpoints)',
    mutate: async ({ h, A }) => {
      await h.sql('DELETE FROM audit_records WHERE chain_id = $1 AND seq > 25', [A]);
      await h.sql('DELETE FROM audit_checkpoints WHERE chain_id = $1 AND seq > 25', [A]);
    },
    exact: [
      ['CHAIN_UNTERMINATED', 'A', 25],
      ['ANCHOR_MISMATCH', 'A', 37],
    ],
  },
  {
    name: 'truncate the newest chain (only its terminal checkpoint is gone)',
    mutate: async ({ h, B }) => h.sql('DELETE FROM audit_checkpoints WHERE chain_id = $1 AND seq = 17', [B]).then(() => {}),
    exact: [['CHAIN_UNTERMINATED', 'B', 17]],
  },
  {
    name: 'delete a whole chain (caught by the next chain’s witness)',
    mutate: async ({ h, A }) => {
      for (const table of TABLES) await h.sql(`DELETE FROM ${table} WHERE chain_id = $1`, [A]);
    },
    exact: [['CHAIN_MISSING', 'A', 37]],
  },
  {
    name: 'delete the newest chain (caught by the exported anchors)',
    mutate: async ({ h, B }) => {
      for (const table of TABLES) await h.sql(`DELETE FROM ${table} WHERE chain_id = $1`, [B]);
    },
    anchors: true,
    exact: [
      ['ANCHOR_MISMATCH', 'B', 10],
      ['ANCHOR_MISMATCH', 'B', 17],
    ],
  },
  {
    name: 'replace the store with a self-consistent one signed by another key',
    mutate: async ({ h, store, now }) => {
      for (const table of TABLES) await h.sql(`DELETE FROM ${table}`);
      const w = await createAuditWriter({ store, signer: ROGUE.signer, checkpointEvery: 10, now });
      for (let i = 0; i < 15; i++) w.write(buildAuditRecord({ 'event.type': 'allowed', 'user.id': 'nobody' }));
      await w.close();
      return { C: w.chainId };
    },
    exact: [
      ['UNKNOWN_KEY', 'C', 10],
      ['UNKNOWN_KEY', 'C', 17],
      ['CHAIN_UNTERMINATED', 'C', 17],
    ],
  },
  {
    name: 'replace the store with one signed by an impostor key under the trusted kid',
    mutate: async ({ h, store, now }) => {
      for (const table of TABLES) await h.sql(`DELETE FROM ${table}`);
      const w = await createAuditWriter({ store, signer: IMPOSTOR.signer, checkpointEvery: 10, now });
      for (let i = 0; i < 15; i++) w.write(buildAuditRecord({ 'event.type': 'allowed', 'user.id': 'nobody' }));
      await w.close();
      return { C: w.chainId };
    },
    exact: [
      ['CHECKPOINT_SIG_INVALID', 'C', 10],
      ['CHECKPOINT_SIG_INVALID', 'C', 17],
      ['CHAIN_UNTERMINATED', 'C', 17],
    ],
  },
  {
    name: 'restore an old copy of the store (caught by the exported anchors)',
    mutate: async ({ h, snapshot }) => restore(h, snapshot),
    anchors: true,
    exact: [
      ['CHAIN_UNTERMINATED', 'A', 26],
      ['ANCHOR_MISMATCH', 'A', 30],
      ['ANCHOR_MISMATCH', 'A', 37],
      ['ANCHOR_MISMATCH', 'B', 10],
      ['ANCHOR_MISMATCH', 'B', 17],
    ],
  },
  {
    name: 'prune without a prune statement',
    mutate: async ({ h, A }) => {
      await h.sql('DELETE FROM audit_records WHERE chain_id = $1 AND seq <= 10', [A]);
      await h.sql('DELETE FROM audit_checkpoints WHERE chain_id = $1 AND seq < 10', [A]);
    },
    exact: [['SEQ_GAP', 'A', 1]],
  },
  {
    name: 'prune with a prune statement signed by an untrusted key',
    mutate: async ({ h, A }) => {
      const p = signPrune({ chainId: A, throughSeq: 10, lastHash: (await recordAt(h, A, 10)).hash, time: '2025-03-01T02:00:00.000Z' }, ROGUE.signer);
      await h.sql('INSERT INTO audit_prunes (chain_id, through_seq, last_hash, time, kid, sig) VALUES ($1, $2, $3, $4, $5, $6)', [
        p.chainId,
        p.throughSeq,
        p.lastHash,
        p.time,
        p.kid,
        p.sig,
      ]);
      await h.sql('DELETE FROM audit_records WHERE chain_id = $1 AND seq <= 10', [A]);
      await h.sql('DELETE FROM audit_checkpoints WHERE chain_id = $1 AND seq < 10', [A]);
    },
    exact: [['PRUNE_ANCHOR_INVALID', 'A', 10]],
  },
  {
    name: 'edit a checkpoint without its key',
    mutate: async ({ h, A }) => h.sql('UPDATE audit_checkpoints SET requests_seen = requests_seen + 1 WHERE chain_id = $1 AND seq = 10', [A]).then(() => {}),
    exact: [['CHECKPOINT_SIG_INVALID', 'A', 10]],
  },
  {
    name: 'a checkpoint re-signed with the trusted key but counting one request too many',
    mutate: async ({ h, A }) => {
      const row = await checkpointRow(h, A, 10);
      const forged = signCheckpoint(
        {
          chainId: A,
          seq: 10,
          headHash: String(row.head_hash),
          time: String(row.time),
          requestsSeen: Number(row.requests_seen) + 1,
          recordsLost: Number(row.records_lost),
          final: false,
        },
        TRUSTED.signer,
      );
      await h.sql('UPDATE audit_checkpoints SET requests_seen = $1, sig = $2 WHERE chain_id = $3 AND seq = 10', [forged.requestsSeen, forged.sig, A]);
    },
    // The forged count is off against the records before it, and is the base the next checkpoint is counted from.
    exact: [
      ['REQUEST_COUNT_MISMATCH', 'A', 10],
      ['REQUEST_COUNT_MISMATCH', 'A', 20],
    ],
  },
];

const HARNESSES: readonly { readonly kind: 'sqlite' | 'postgres'; readonly make: (t: TestContext) => Promise<Harness | undefined> }[] = [
  { kind: 'sqlite', make: sqliteHarness },
  { kind: 'postgres', make: postgresHarness },
];

const render = (list: Expected): string[] => list.map(([code, chain, seq]) => `${code} ${chain} ${seq}`);

for (const { kind, make } of HARNESSES) {
  for (const c of CASES) {
    test(`${kind}: ${c.name}`, async (t) => {
      const h = await make(t);
      if (h === undefined) return;
      const fixture = await buildFixture(t, h);
      if (!c.keepGuards) await h.disableGuards();
      const extra = (await c.mutate(fixture)) ?? {};
      const labels: Record<string, Label> = { [fixture.A]: 'A', [fixture.B]: 'B' };
      for (const [label, id] of Object.entries(extra)) labels[id] = label as Label;

      const report = await verifyAudit({ store: fixture.store, trustedKeys, ...(c.anchors ? { anchors: fixture.anchors } : {}) });
      const errors = report.findings.filter((f) => f.severity === 'error');
      const got = errors.map((f) => `${f.code} ${labels[f.chainId] ?? f.chainId} ${f.seq}`);
      const detail = JSON.stringify(report.findings, null, 2);
      if (c.exact !== undefined) assert.deepEqual([...got].sort(), render(c.exact).sort(), detail);
      if (c.includes !== undefined) {
        for (const want of render(c.includes)) assert.ok(got.includes(want), `missing ${want}; got ${detail}`);
        if (c.first) {
          const chain = c.includes[0]![1];
          assert.equal(got.find((g) => g.split(' ')[1] === chain), render(c.includes)[0], detail);
        }
      }
      assert.equal(report.exitCode, got.length > 0 ? 1 : 0);
      assert.equal(report.status, got.length > 0 ? 'invalid' : 'valid');
    });
  }

  test(`${kind}: the guard triggers refuse UPDATE and DELETE${kind === 'postgres' ? ' and TRUNCATE' : ''}`, async (t) => {
    const h = await make(t);
    if (h === undefined) return;
    const fixture = await buildFixture(t, h);
    const statements = [
      ['UPDATE audit_records SET record = $1 WHERE chain_id = $2', ['{}', fixture.A]],
      ['DELETE FROM audit_records WHERE chain_id = $1', [fixture.A]],
      ['UPDATE audit_checkpoints SET requests_seen = 0 WHERE chain_id = $1', [fixture.A]],
      ['DELETE FROM audit_checkpoints WHERE chain_id = $1', [fixture.A]],
      ['DELETE FROM audit_chains WHERE chain_id = $1', [fixture.A]],
      ['UPDATE audit_chains SET started_at = $1 WHERE chain_id = $2', ['x', fixture.A]],
      ...(kind === 'postgres' ? TABLES.map((table) => [`TRUNCATE ${table}`, []] as const) : []),
    ] as const;
    for (const [sql, params] of statements) {
      await assert.rejects(h.sql(sql, params), /append-only/, sql);
    }
    const report = await verifyAudit({ store: fixture.store, trustedKeys });
    assert.equal(report.exitCode, 0, JSON.stringify(report.findings));
  });
}
