/**
 * The writer against an in-memory SQLite store: where checkpoints fall, the chain-start and chain-end records,
 * queue overflow and invalid records turning into LOSS records, admission, close, and hostile observers.
 */
import { test } from 'node:test';
import type { TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createTrustedKeys, generateAuditKey } from '../../src/audit/keys.ts';
import { openAuditStore } from '../../src/audit/open-store.ts';
import { buildAuditRecord } from '../../src/audit/record.ts';
import type { AuditRecord } from '../../src/audit/record.ts';
import type { AuditStore } from '../../src/audit/store.ts';
import { verifyAudit } from '../../src/audit/verify.ts';
import { createAuditWriter } from '../../src/audit/writer.ts';
import type { AuditWriterOptions, LossReason } from '../../src/audit/writer.ts';

const KEY = generateAuditKey('audit-1');
const trustedKeys = createTrustedKeys([{ kid: 'audit-1', publicKey: KEY.signer.publicKey }]);
const record = (i: number): AuditRecord => buildAuditRecord({ 'event.type': 'allowed', 'user.id': `u${i}` });

async function memoryStore(t: TestContext): Promise<AuditStore> {
  const store = await openAuditStore('sqlite::memory:');
  t.after(() => store.close());
  return store;
}

async function checkpointsOf(store: AuditStore, chainId: string): Promise<[number, number, number, boolean][]> {
  const out: [number, number, number, boolean][] = [];
  for await (const cp of store.checkpoints(chainId)) out.push([cp.seq, cp.requestsSeen, cp.recordsLost, cp.final]);
  return out;
}

async function actionsOf(store: AuditStore, chainId: string): Promise<string[]> {
  const out: string[] = [];
  for await (const e of store.entries(chainId)) out.push(String(JSON.parse(e.record)['event.action']));
  return out;
}

test('checkpoints at exact multiples of checkpointEvery, a chain-end record and a terminal checkpoint', async (t) => {
  const store = await memoryStore(t);
  const writer = await createAuditWriter({ store, signer: KEY.signer, checkpointEvery: 5, batchMax: 3 });
  for (let i = 0; i < 12; i++) writer.write(record(i));
  const closed = await writer.close();
  assert.deepEqual(closed, { chainId: writer.chainId, lastSeq: 14, terminated: true, unpersisted: 0 });
  assert.deepEqual(await checkpointsOf(store, writer.chainId), [
    [5, 4, 0, false],
    [10, 9, 0, false],
    [14, 12, 0, true],
  ]);
  const actions = await actionsOf(store, writer.chainId);
  assert.deepEqual([actions[0], actions.at(-1), actions.length], ['audit-chain-start', 'audit-chain-end', 14]);
  assert.deepEqual((await verifyAudit({ store, trustedKeys })).findings, []);
});

test('the chain-start record names the key and witnesses the newest chain already stored', async (t) => {
  const store = await memoryStore(t);
  const first = await createAuditWriter({ store, signer: KEY.signer });
  first.write(record(1));
  await first.close();
  const second = await createAuditWriter({ store, signer: KEY.signer, serviceVersion: '1.2.3' });
  await second.flush();
  const start = JSON.parse((await store.entryAt(second.chainId, 1))!.record) as Record<string, unknown>;
  const firstEnd = await store.entryAt(first.chainId, 3);
  assert.equal(start['event.action'], 'audit-chain-start');
  assert.equal(start['audit.checkpoint_kid'], 'audit-1');
  assert.equal(start['process.pid'], process.pid);
  assert.equal(start['service.version'], '1.2.3');
  assert.deepEqual([start['audit.prev_chain_id'], start['audit.prev_chain_seq'], start['audit.prev_chain_hash']], [first.chainId, 3, firstEnd!.hash]);
  await second.close();
});

test('a time-based checkpoint once records waited checkpointIntervalMs', async (t) => {
  const store = await memoryStore(t);
  let clock = 1_750_000_000_000;
  const writer = await createAuditWriter({ store, signer: KEY.signer, checkpointEvery: 1000, checkpointIntervalMs: 60_000, now: () => clock });
  for (let i = 0; i < 3; i++) writer.write(record(i));
  await writer.flush();
  assert.deepEqual(await checkpointsOf(store, writer.chainId), []);
  clock += 60_000;
  await writer.flush();
  assert.deepEqual(await checkpointsOf(store, writer.chainId), [[4, 3, 0, false]]);
  await writer.flush();
  assert.equal((await checkpointsOf(store, writer.chainId)).length, 1, 'no new records, no new checkpoint');
  await writer.close();
});

test('queue overflow: admit() refuses, the overflow is counted and recorded as a LOSS', async (t) => {
  const store = await memoryStore(t);
  const lost: [number, LossReason][] = [];
  const writer = await createAuditWriter({ store, signer: KEY.signer, queueMax: 3, observer: { recordsLost: (n, r) => lost.push([n, r]) } });
  await writer.flush();
  for (let i = 0; i < 3; i++) writer.write(record(i));
  assert.equal(writer.admit(), false, 'queue full');
  writer.write(record(3));
  writer.write(record(4));
  assert.deepEqual(lost, [
    [1, 'queue-full'],
    [1, 'queue-full'],
  ]);
  await writer.close();
  assert.equal(writer.requestsSeen, 5);
  assert.equal(writer.recordsLost, 2);
  const report = await verifyAudit({ store, trustedKeys });
  assert.deepEqual(
    report.findings.map((f) => [f.code, f.seq]),
    [['LOSS_RECORDED', 2]],
  );
  assert.match(report.findings[0]!.detail, /2 lost record\(s\) \(queue-full\)/);
  assert.deepEqual((await checkpointsOf(store, writer.chainId)).at(-1), [6, 5, 2, true]);
});

test('a record that is not JSON data (the builder bypassed) becomes part of a LOSS record, the rest is written', async (t) => {
  const store = await memoryStore(t);
  const writer = await createAuditWriter({ store, signer: KEY.signer });
  writer.write(record(1));
  writer.write({ ...record(2), 'event.duration': NaN } as AuditRecord);
  writer.write(record(3));
  await writer.close();
  assert.deepEqual(await actionsOf(store, writer.chainId), ['audit-chain-start', 'audit-loss', 'http-request', 'http-request', 'audit-chain-end']);
  const report = await verifyAudit({ store, trustedKeys });
  assert.deepEqual(report.findings.map((f) => [f.code, f.seq]), [['LOSS_RECORDED', 2]]);
  assert.match(report.findings[0]!.detail, /\(invalid\)/);
});

test('credentials in a record handed straight to write() are scrubbed by the writer too', async (t) => {
  const store = await memoryStore(t);
  let redacted = 0;
  const writer = await createAuditWriter({ store, signer: KEY.signer, observer: { secretsRedacted: (n) => (redacted += n) } });
  writer.write({ ...record(1), 'url.path': '/x?token=eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.sig', 'user_agent.original': 'Bearer abc' });
  await writer.close();
  const stored = (await store.entryAt(writer.chainId, 2))!.record;
  assert.ok(!stored.includes('eyJ') && !/bearer/i.test(stored), stored);
  assert.equal(redacted, 2);
});

test('close: terminal once, idempotent, then admit() refuses and late writes are counted', async (t) => {
  const store = await memoryStore(t);
  const lost: LossReason[] = [];
  const writer = await createAuditWriter({ store, signer: KEY.signer, observer: { recordsLost: (_n, r) => lost.push(r) } });
  writer.write(record(1));
  const [a, b] = await Promise.all([writer.close(), writer.close()]);
  assert.deepEqual(a, b);
  assert.equal(a.terminated, true);
  assert.equal(writer.admit(), false);
  writer.write(record(2));
  assert.deepEqual(lost, ['closed']);
  assert.equal(writer.recordsLost, 1);
  assert.deepEqual((await writer.close()).lastSeq, 3);
});

test('an observer that throws does not stop auditing', async (t) => {
  const store = await memoryStore(t);
  const boom = (): never => {
    throw new Error('observer bug');
  };
  const writer = await createAuditWriter({ store, signer: KEY.signer, checkpointEvery: 2, observer: { batchPersisted: boom, checkpointSigned: boom } });
  for (let i = 0; i < 5; i++) writer.write(record(i));
  assert.equal((await writer.close()).terminated, true);
  assert.deepEqual((await verifyAudit({ store, trustedKeys })).findings, []);
});

test('without a spool, a failing store blocks admission at once (fail-closed) and recovery unblocks it', async (t) => {
  const real = await memoryStore(t);
  let down = true;
  const store: AuditStore = {
    ...real,
    append: (batch, options) => (down ? Promise.reject(new Error('down (injected)')) : real.append(batch, options)),
    latestChain: () => (down ? Promise.reject(new Error('down (injected)')) : real.latestChain()),
  };
  const writer = await createAuditWriter({ store, signer: KEY.signer });
  await writer.flush();
  assert.equal(writer.admit(), false);
  writer.write(record(1));
  down = false;
  await writer.flush();
  assert.equal(writer.admit(), true);
  await writer.close();
  const start = JSON.parse((await real.entryAt(writer.chainId, 1))!.record) as Record<string, unknown>;
  assert.equal(start['audit.prev_chain_unknown'], true, 'the store was down at start: no witness, and it says so');
  assert.deepEqual((await verifyAudit({ store: real, trustedKeys })).findings, []);
});

/** A writer whose persisted batches are listed by their record counts (the chain-start batch first). */
async function batchingWriter(t: TestContext, options: Partial<AuditWriterOptions>) {
  const store = await memoryStore(t);
  const batches: number[] = [];
  let persisted: (() => void) | undefined;
  const writer = await createAuditWriter({
    store,
    signer: KEY.signer,
    ...options,
    observer: {
      batchPersisted: (info) => {
        batches.push(info.records);
        persisted?.();
      },
    },
  });
  await writer.flush();
  /** Resolves at the next persisted batch. */
  const nextBatch = (): Promise<void> => new Promise((resolve) => (persisted = resolve));
  /** Lets the event loop turn a few times: a writer that does not wait would have written by then. */
  const turns = async (): Promise<void> => {
    for (let i = 0; i < 5; i++) await new Promise((resolve) => setImmediate(resolve));
  };
  return { store, writer, batches, nextBatch, turns };
}

test('batchWaitMs: records queued apart in time share one batch; without it the first goes alone', async (t) => {
  for (const [batchWaitMs, expected] of [[60_000, [1, 3]], [0, [1, 1, 2]]] as const) {
    const { writer, batches, turns } = await batchingWriter(t, { batchWaitMs });
    writer.write(record(1));
    await turns();
    writer.write(record(2));
    writer.write(record(3));
    await writer.flush();
    assert.deepEqual(batches, expected, `batchWaitMs ${batchWaitMs}: the chain start, then the requests`);
    await writer.close();
  }
});

test('batchWaitMs: a full batch goes at once, without waiting for the timer', async (t) => {
  const full = await batchingWriter(t, { batchWaitMs: 60_000, batchMax: 2 });
  full.writer.write(record(1));
  await full.turns();
  assert.deepEqual(full.batches, [1], 'one record waits');
  full.writer.write(record(2));
  await full.turns();
  assert.deepEqual(full.batches, [1, 2], 'the second fills the batch');
  await full.writer.close();
});

test('batchWaitMs: a small queueMax makes half of it a full batch, so waiting never makes admit() refuse', async (t) => {
  const { writer, batches, turns } = await batchingWriter(t, { batchWaitMs: 60_000, queueMax: 4 });
  writer.write(record(1));
  await turns();
  assert.deepEqual(batches, [1]);
  assert.equal(writer.admit(), true);
  writer.write(record(2));
  await turns();
  assert.deepEqual(batches, [1, 2], 'two of a queue of four go at once');
  assert.equal(writer.admit(), true);
  await writer.close();
});

test('batchWaitMs: records that did not fit in a batch keep their wait; one queued alone waits from its arrival', { timeout: 10_000 }, async (t) => {
  let clock = 0;
  // No time-based checkpoint within the test: only the batch wait can start a batch here.
  const { writer, batches, turns, nextBatch } = await batchingWriter(t, { batchWaitMs: 100, batchMax: 3, checkpointIntervalMs: 600_000, monotonic: () => clock });
  writer.write(record(0));
  clock = 60;
  for (let i = 1; i < 5; i++) writer.write(record(i));
  await turns();
  assert.deepEqual(batches, [1, 3], 'a full batch at 60; two records wait, with the first one\'s mark (0)');
  clock = 100;
  await nextBatch();
  assert.deepEqual(batches, [1, 3, 2], 'the wait timer finds them due at 100, not at 160');
  clock = 150;
  writer.write(record(5));
  await turns();
  assert.deepEqual(batches, [1, 3, 2], 'a record queued alone at 150 waits');
  clock = 250;
  await nextBatch();
  assert.deepEqual(batches, [1, 3, 2, 1]);
  await writer.close();
});

test('batchWaitMs: a lone record goes when its wait is over', { timeout: 30_000 }, async (t) => {
  const lone = await batchingWriter(t, { batchWaitMs: 5 });
  const alone = lone.nextBatch();
  lone.writer.write(record(1));
  await alone;
  assert.deepEqual(lone.batches, [1, 1], 'written by the wait timer: nothing flushed or closed it');
  const closed = await lone.writer.close();
  assert.equal(closed.unpersisted, 0);
  assert.deepEqual((await verifyAudit({ store: lone.store, trustedKeys })).findings, []);
});

test('batchWaitMs: close writes what is waiting, with the chain end and the terminal checkpoint', async (t) => {
  const { store, writer, batches, turns } = await batchingWriter(t, { batchWaitMs: 60_000 });
  for (let i = 0; i < 4; i++) writer.write(record(i));
  await turns();
  assert.deepEqual(batches, [1], 'the four wait');
  const closed = await writer.close();
  assert.deepEqual(closed, { chainId: writer.chainId, lastSeq: 6, terminated: true, unpersisted: 0 });
  assert.deepEqual(await checkpointsOf(store, writer.chainId), [[6, 4, 0, true]]);
});

const BAD_OPTIONS: readonly Partial<AuditWriterOptions>[] = [{ checkpointEvery: 0 }, { queueMax: -1 }, { batchMax: 1.5 }, { checkpointIntervalMs: NaN }, { batchWaitMs: -1 }, { batchWaitMs: 0.5 }];
for (const bad of BAD_OPTIONS) {
  test(`options refused: ${JSON.stringify(bad)}`, async (t) => {
    const store = await memoryStore(t);
    await assert.rejects(createAuditWriter({ store, signer: KEY.signer, ...bad }), { name: 'AuditError', code: 'ERR_AUDIT_OPTIONS_INVALID' });
  });
}

test('with nothing but time passing, the writer retries the store on its own and drains the spool', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'portcullis-audit-writer-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const real = await memoryStore(t);
  let down = true;
  const store: AuditStore = { ...real, append: (batch, options) => (down ? Promise.reject(new Error('down (injected)')) : real.append(batch, options)) };
  let recovered!: () => void;
  const drained = new Promise<void>((resolve) => (recovered = resolve));
  const writer = await createAuditWriter({
    store,
    signer: KEY.signer,
    retryMs: 5,
    spool: { dir, maxBytes: 1 << 20 },
    observer: { storeRecovered: () => recovered() },
  });
  writer.write(record(1));
  await writer.flush();
  assert.ok(writer.stats().spooledBytes > 0);
  down = false;
  await drained; // the retry timer fired and replayed; no flush() was called
  assert.equal(writer.stats().storeAvailable, true);
  assert.equal(writer.stats().spooledBytes, 0);
  await writer.close();
  assert.deepEqual((await verifyAudit({ store: real, trustedKeys })).findings, []);
});
