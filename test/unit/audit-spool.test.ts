/**
 * The spool on its own: size bound, exactly-once replay (a second replay of the same batches is all
 * duplicates), a torn last line after a crash, a corrupt line in the middle, and files left by another chain.
 */
import { test } from 'node:test';
import type { TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { appendFileSync, copyFileSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createChainBuilder } from '../../src/audit/chain.ts';
import { signCheckpoint } from '../../src/audit/checkpoint.ts';
import { generateAuditKey } from '../../src/audit/keys.ts';
import { openAuditStore } from '../../src/audit/open-store.ts';
import { openSpool } from '../../src/audit/spool.ts';
import type { ReplayProgress } from '../../src/audit/spool.ts';
import type { AppendBatch, AuditStore } from '../../src/audit/store.ts';

const KEY = generateAuditKey('k1');

function tempDir(t: TestContext): string {
  const dir = mkdtempSync(join(tmpdir(), 'portcullis-audit-spool-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

async function memoryStore(t: TestContext): Promise<AuditStore> {
  const store = await openAuditStore('sqlite::memory:');
  t.after(() => store.close());
  return store;
}

/** `count` batches of `size` records each, for `chainId`, the last record of each batch checkpointed. */
function batches(chainId: string, count: number, size: number): AppendBatch[] {
  const chain = createChainBuilder(chainId);
  const out: AppendBatch[] = [];
  for (let b = 0; b < count; b++) {
    const entries = Array.from({ length: size }, (_, i) => chain.append({ '@timestamp': '2025-01-01T00:00:00.000Z', n: b * size + i }));
    const head = chain.head;
    const cp = signCheckpoint({ chainId, seq: head.seq, headHash: head.hash, time: '2025-01-01T00:00:00.000Z', requestsSeen: 0, recordsLost: 0, final: false }, KEY.signer);
    out.push({ chains: b === 0 ? [{ chainId, startedAt: '2025-01-01T00:00:00.000Z' }] : [], entries, checkpoints: [cp] });
  }
  return out;
}

async function rows(store: AuditStore, chainId: string): Promise<number[]> {
  const seqs: number[] = [];
  for await (const e of store.entries(chainId)) seqs.push(e.seq);
  return seqs;
}

test('append is bounded by maxBytes and writes nothing when refused', async (t) => {
  const dir = tempDir(t);
  const spool = await openSpool({ dir, maxBytes: 3000, chainId: 'c1' });
  const [a, b, c] = batches('c1', 3, 3);
  assert.equal(await spool.append(a!), true);
  assert.equal(await spool.append(b!), true);
  const before = spool.bytes;
  assert.equal(await spool.append(c!), false);
  assert.equal(spool.bytes, before);
  assert.equal(readFileSync(join(dir, 'c1.spool.jsonl')).length, before);
  await spool.close();
});

test('replay writes each batch once, in order, and removes the file; replaying the same lines again only finds duplicates', async (t) => {
  const dir = tempDir(t);
  const store = await memoryStore(t);
  const spool = await openSpool({ dir, maxBytes: 1 << 20, chainId: 'c1' });
  for (const batch of batches('c1', 3, 4)) assert.equal(await spool.append(batch), true);
  const copy = join(dir, 'keep.jsonl');
  copyFileSync(join(dir, 'c1.spool.jsonl'), copy);
  const progress: ReplayProgress[] = [];
  await spool.replay(store, (p) => progress.push(p));
  assert.deepEqual(progress.map((p) => [p.records, p.checkpoints, p.duplicates]), [[4, 1, 0], [4, 1, 0], [4, 1, 0]]);
  assert.equal(spool.isEmpty, true);
  assert.equal(existsSync(join(dir, 'c1.spool.jsonl')), false);
  assert.deepEqual(await rows(store, 'c1'), [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]);

  // The same file again, as if the process had died after committing but before deleting it.
  copyFileSync(copy, join(dir, 'c1-again.spool.jsonl'));
  rmSync(copy);
  const again = await openSpool({ dir, maxBytes: 1 << 20, chainId: 'c2' });
  const second: ReplayProgress[] = [];
  await again.replay(store, (p) => second.push(p));
  assert.deepEqual(second.map((p) => p.duplicates), [5, 5, 5]);
  assert.deepEqual(await rows(store, 'c1'), [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]);
  assert.deepEqual(readdirSync(dir), []);
});

test('a replayed row that differs from the stored one is a conflict, not a silent skip', async (t) => {
  const dir = tempDir(t);
  const store = await memoryStore(t);
  await store.append(batches('c1', 1, 2)[0]!);
  // The same (chain_id, seq) positions with other hashes: not the rows that were committed.
  const original = batches('c1', 1, 2)[0]!;
  const forged: AppendBatch = { ...original, entries: original.entries.map((e) => ({ ...e, hash: 'f'.repeat(64) })) };
  writeFileSync(join(dir, 'c0.spool.jsonl'), JSON.stringify({ v: 1, ...forged }) + '\n');
  const spool = await openSpool({ dir, maxBytes: 1 << 20, chainId: 'c9' });
  await assert.rejects(spool.replay(store), { name: 'AuditError', code: 'ERR_AUDIT_CONFLICT' });
  assert.equal(existsSync(join(dir, 'c0.spool.jsonl')), true, 'kept for an operator');
});

test('a torn last line (crash inside a write) is skipped; earlier lines are replayed', async (t) => {
  const dir = tempDir(t);
  const store = await memoryStore(t);
  const [a, b] = batches('c0', 2, 2);
  writeFileSync(join(dir, 'c0.spool.jsonl'), JSON.stringify({ v: 1, ...a }) + '\n' + JSON.stringify({ v: 1, ...b }).slice(0, 100));
  const spool = await openSpool({ dir, maxBytes: 1 << 20, chainId: 'c9' });
  assert.equal(spool.isEmpty, false);
  await spool.replay(store);
  assert.deepEqual(await rows(store, 'c0'), [1, 2]);
  assert.equal(spool.isEmpty, true);
});

test('a corrupt line before the end stops replay with ERR_AUDIT_SPOOL_CORRUPT and keeps the file', async (t) => {
  const dir = tempDir(t);
  const store = await memoryStore(t);
  const [a, b] = batches('c0', 2, 2);
  const file = join(dir, 'c0.spool.jsonl');
  writeFileSync(file, JSON.stringify({ v: 1, ...a }) + '\n{"v":1,"garbage"\n');
  appendFileSync(file, JSON.stringify({ v: 1, ...b }) + '\n');
  const spool = await openSpool({ dir, maxBytes: 1 << 20, chainId: 'c9' });
  await assert.rejects(spool.replay(store), { name: 'AuditError', code: 'ERR_AUDIT_SPOOL_CORRUPT' });
  assert.deepEqual(await rows(store, 'c0'), [1, 2], 'the good line before it was replayed');
  assert.equal(existsSync(file), true);
});

test('a store failure mid-replay keeps the remaining lines for the next attempt', async (t) => {
  const dir = tempDir(t);
  const real = await memoryStore(t);
  let budget = 1;
  const store: AuditStore = {
    ...real,
    append: (batch, options) => (budget-- > 0 ? real.append(batch, options) : Promise.reject(new Error('down (injected)'))),
  };
  const spool = await openSpool({ dir, maxBytes: 1 << 20, chainId: 'c1' });
  for (const batch of batches('c1', 3, 2)) await spool.append(batch);
  await assert.rejects(spool.replay(store), /down/);
  assert.deepEqual(await rows(real, 'c1'), [1, 2]);
  budget = 10;
  await spool.replay(store);
  assert.deepEqual(await rows(real, 'c1'), [1, 2, 3, 4, 5, 6]);
  assert.equal(spool.isEmpty, true);
});
