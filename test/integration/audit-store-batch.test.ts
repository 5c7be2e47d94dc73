/**
 * The store contract for one append batch, on every store: each entry comes back field for field, byte for
 * byte (quotes, backslashes, escapes, control characters, non-BMP text, a large record, the largest seq), in
 * seq order; an idempotent replay counts duplicates; a different row under a taken seq is ERR_AUDIT_CONFLICT.
 * The stores ship batches differently (PostgreSQL as one JSON parameter, SQLite's write thread as a flat
 * array), and the entry hash is over this text, so any change to it in transit would break verify.
 */
import { test } from 'node:test';
import type { TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { ChainEntry } from '../../src/audit/chain.ts';
import { openAuditStore } from '../../src/audit/open-store.ts';
import type { AppendBatch, AuditStore } from '../../src/audit/store.ts';
import { createTestSchema } from '../helpers/postgres.ts';

const RECORDS = [
  '{"url.path":"/a \\"quoted\\" \\\\ path","user.id":"名前 🦀"}',
  '{"escaped":"\\u0000\\u001f\\ud83e\\udd80","raw":"tab\there\u001fend"}',
  `{"big":"${'x'.repeat(64 * 1024)}"}`,
  '{}',
];

function entries(chainId: string): ChainEntry[] {
  return RECORDS.map((record, i) => ({
    chainId,
    seq: i === RECORDS.length - 1 ? Number.MAX_SAFE_INTEGER : i + 1,
    prevHash: String(i).repeat(64),
    hash: String.fromCharCode(97 + i).repeat(64),
    ts: [1_764_915_672_123, -1, 0, 8.64e15][i]!,
    record,
  }));
}

const STORES: readonly { readonly name: string; readonly open: (t: TestContext) => Promise<AuditStore | undefined> }[] = [
  { name: 'sqlite', open: (t) => sqlite(t, false) },
  { name: 'sqlite, appends on the write thread', open: (t) => sqlite(t, true) },
  {
    name: 'postgres',
    open: async (t) => {
      const pg = await createTestSchema(t);
      if (pg === undefined) return undefined;
      const store = await openAuditStore(pg.url);
      t.after(() => store.close());
      return store;
    },
  },
];

async function sqlite(t: TestContext, appendOffThread: boolean): Promise<AuditStore> {
  const dir = mkdtempSync(join(tmpdir(), 'portcullis-audit-batch-'));
  const store = await openAuditStore(`sqlite:${join(dir, 'audit.db')}`, { appendOffThread });
  t.after(async () => {
    await store.close();
    rmSync(dir, { recursive: true, force: true });
  });
  return store;
}

for (const { name, open } of STORES) {
  test(`${name}: a batch comes back field for field, and replays are counted, a different row under a taken seq refused`, async (t) => {
    const store = await open(t);
    if (store === undefined) return;
    const chain = 'chain-ü';
    const batch: AppendBatch = { chains: [{ chainId: chain, startedAt: '2026-12-05T00:00:00.000Z' }], entries: entries(chain), checkpoints: [] };
    assert.deepEqual(await store.append(batch), { inserted: RECORDS.length, duplicates: 0 });

    const stored: ChainEntry[] = [];
    for await (const { id: _id, ...entry } of store.entries(chain)) stored.push(entry);
    assert.deepEqual(stored, entries(chain));

    assert.deepEqual(await store.append(batch, { idempotent: true }), { inserted: 0, duplicates: RECORDS.length });
    const changed = { entries: [{ ...entries(chain)[1]!, hash: 'f'.repeat(64) }], checkpoints: [] };
    await assert.rejects(store.append(changed, { idempotent: true }), { name: 'AuditError', code: 'ERR_AUDIT_CONFLICT' });
    await assert.rejects(store.append(batch), { name: 'AuditError' }, 'without idempotent, a taken seq is an error');
    assert.equal((await store.entryAt(chain, 2))?.record, RECORDS[1]);
  });
}
