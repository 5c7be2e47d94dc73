/**
 * The writer under failure: a store that goes down and comes back (SQLite through a wrapper whose calls throw —
 * injected failure; PostgreSQL through a TCP relay pointed at a closed port, then at the server), an
 * acknowledgement lost after a commit, a full spool in both modes, a writer process killed with SIGKILL while
 * it writes (with and without a spool in use), and two writers sharing one PostgreSQL database.
 */
import { test } from 'node:test';
import type { TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { createServer, connect } from 'node:net';
import type { AddressInfo, Socket } from 'node:net';
import { once } from 'node:events';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { pathToFileURL } from 'node:url';
import { createTrustedKeys, generateAuditKey } from '../../src/audit/keys.ts';
import { openAuditStore } from '../../src/audit/open-store.ts';
import { queryAudit } from '../../src/audit/query.ts';
import { buildAuditRecord } from '../../src/audit/record.ts';
import type { AuditRecord } from '../../src/audit/record.ts';
import type { ReplayProgress } from '../../src/audit/spool.ts';
import type { AuditStore } from '../../src/audit/store.ts';
import { verifyAudit } from '../../src/audit/verify.ts';
import type { VerifyReport } from '../../src/audit/verify.ts';
import { createAuditWriter } from '../../src/audit/writer.ts';
import { freePort } from '../helpers/ports.ts';
import { createTestSchema, PG_URL } from '../helpers/postgres.ts';

const KEY = generateAuditKey('audit-1');
const trustedKeys = createTrustedKeys([{ kid: 'audit-1', publicKey: KEY.signer.publicKey }]);

function tempDir(t: TestContext): string {
  const dir = mkdtempSync(join(tmpdir(), 'portcullis-audit-faults-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

const record = (i: number): AuditRecord => buildAuditRecord({ 'event.type': 'allowed', 'user.id': `user-${i}`, 'http.route': 'r', 'url.path': `/r/${i}` });

/** A store whose calls fail on demand: the injected failure mode. `ackLoss` commits and then reports failure. */
function flaky(store: AuditStore): { store: AuditStore; state: { down: boolean; ackLoss: number } } {
  const state = { down: false, ackLoss: 0 };
  const down = (): Error => new Error('audit store down (injected)');
  return {
    state,
    store: {
      ...store,
      async append(batch, options) {
        if (state.down) throw down();
        if (state.ackLoss > 0) {
          state.ackLoss--;
          await store.append(batch, options);
          throw new Error('connection lost after commit (injected)');
        }
        return store.append(batch, options);
      },
      async latestChain() {
        if (state.down) throw down();
        return store.latestChain();
      },
    },
  };
}

async function countRecords(store: AuditStore): Promise<{ all: number; requests: number }> {
  let all = 0;
  for await (const _ of store.scan({})) all++;
  let requests = 0;
  for await (const _ of queryAudit(store, { limit: 0 })) requests++;
  return { all, requests };
}

function errorsOf(report: VerifyReport): string[] {
  return report.findings.filter((f) => f.severity === 'error').map((f) => `${f.code} ${f.chainId} ${f.seq}`);
}

async function finalCheckpoint(store: AuditStore, chainId: string) {
  let last;
  for await (const cp of store.checkpoints(chainId)) last = cp;
  return last;
}

test('sqlite: store down then back — the spool replays in order, verify passes, counts match', async (t) => {
  const dir = tempDir(t);
  const real = await openAuditStore(`sqlite:${join(dir, 'audit.db')}`);
  t.after(() => real.close());
  const { store, state } = flaky(real);
  state.down = true;
  const replayed: ReplayProgress[] = [];
  let failures = 0;
  const spoolDir = join(dir, 'spool');
  const writer = await createAuditWriter({
    store,
    signer: KEY.signer,
    checkpointEvery: 10,
    spool: { dir: spoolDir, maxBytes: 1 << 20 },
    observer: { spoolReplayed: (p) => replayed.push(p), storeFailed: () => failures++ },
  });
  for (let i = 0; i < 30; i++) writer.write(record(i));
  await writer.flush();

  assert.ok(failures > 0);
  assert.equal(writer.stats().storeAvailable, false);
  assert.ok(writer.stats().spooledBytes > 0);
  assert.deepEqual(readdirSync(spoolDir), [`${writer.chainId}.spool.jsonl`]);
  assert.equal((await countRecords(real)).all, 0);
  assert.equal(writer.admit(), true, 'the spool still has room: requests are admitted');

  state.down = false;
  await writer.flush();
  assert.equal(writer.stats().spooledBytes, 0);
  assert.deepEqual(readdirSync(spoolDir), []);
  assert.equal(replayed.reduce((n, p) => n + p.records, 0), 31, 'chain start + 30 requests, each replayed once');
  assert.equal(replayed.reduce((n, p) => n + p.duplicates, 0), 0);

  for (let i = 30; i < 40; i++) writer.write(record(i));
  const closed = await writer.close();
  assert.equal(closed.terminated, true);

  const report = await verifyAudit({ store: real, trustedKeys });
  assert.deepEqual(report.findings, []);
  assert.equal(report.exitCode, 0);
  assert.deepEqual(await countRecords(real), { all: 42, requests: 40 });
  const last = await finalCheckpoint(real, writer.chainId);
  assert.deepEqual([last?.seq, last?.final, last?.requestsSeen, last?.recordsLost], [42, true, 40, 0]);
  assert.equal(writer.requestsSeen, 40);
});

test('sqlite: a commit whose acknowledgement is lost is replayed exactly once', async (t) => {
  const dir = tempDir(t);
  const real = await openAuditStore(`sqlite:${join(dir, 'audit.db')}`);
  t.after(() => real.close());
  const { store, state } = flaky(real);
  const replayed: ReplayProgress[] = [];
  const writer = await createAuditWriter({
    store,
    signer: KEY.signer,
    checkpointEvery: 4,
    spool: { dir: join(dir, 'spool'), maxBytes: 1 << 20 },
    observer: { spoolReplayed: (p) => replayed.push(p) },
  });
  await writer.flush();
  state.ackLoss = 1;
  for (let i = 0; i < 5; i++) writer.write(record(i));
  await writer.flush(); // committed, reported failed: spooled as well
  assert.ok(writer.stats().spooledBytes > 0);
  await writer.flush(); // replays: every row is already there and identical
  assert.equal(writer.stats().spooledBytes, 0);
  assert.deepEqual(
    replayed.map((p) => [p.records, p.duplicates]),
    [[5, 6]],
    'five records and one checkpoint, all recognised as already stored',
  );
  await writer.close();
  const report = await verifyAudit({ store: real, trustedKeys });
  assert.deepEqual(report.findings, []);
  assert.deepEqual(await countRecords(real), { all: 7, requests: 5 });
});

test('sqlite: spool full in fail-closed mode — admit() refuses, nothing is lost, recovery resumes', async (t) => {
  const dir = tempDir(t);
  const real = await openAuditStore(`sqlite:${join(dir, 'audit.db')}`);
  t.after(() => real.close());
  const { store, state } = flaky(real);
  state.down = true;
  const blockedChanges: boolean[] = [];
  const writer = await createAuditWriter({
    store,
    signer: KEY.signer,
    checkpointEvery: 10,
    spool: { dir: join(dir, 'spool'), maxBytes: 4096 },
    mode: 'fail-closed',
    observer: { blockedChanged: (b) => blockedChanges.push(b) },
  });
  let admitted = 0;
  for (let i = 0; i < 200 && writer.admit(); i++) {
    writer.write(record(i));
    admitted++;
    await writer.flush();
  }
  assert.equal(writer.admit(), false, 'store down and spool full: the proxy must answer 503');
  assert.ok(admitted > 1 && admitted < 200, `admitted ${admitted}`);
  assert.equal(writer.stats().blocked, true);
  assert.ok(writer.stats().queued > 0, 'the refused batch stays queued, not dropped');
  assert.ok(writer.stats().spooledBytes <= 4096);
  assert.deepEqual(blockedChanges, [true]);

  state.down = false;
  await writer.flush();
  assert.equal(writer.admit(), true);
  assert.equal(writer.stats().queued, 0);
  assert.equal(writer.recordsLost, 0);
  await writer.close();
  const report = await verifyAudit({ store: real, trustedKeys });
  assert.deepEqual(report.findings, []);
  assert.equal((await countRecords(real)).requests, admitted);
  assert.deepEqual(blockedChanges, [true, false]);
});

test('sqlite: fail-open with everything down writes an exact, signed LOSS record once the store is back', async (t) => {
  const dir = tempDir(t);
  const real = await openAuditStore(`sqlite:${join(dir, 'audit.db')}`);
  t.after(() => real.close());
  const { store, state } = flaky(real);
  state.down = true;
  const lost: [number, string][] = [];
  const writer = await createAuditWriter({
    store,
    signer: KEY.signer,
    checkpointEvery: 100,
    mode: 'fail-open',
    observer: { recordsLost: (n, reason) => lost.push([n, reason]) },
  });
  for (let i = 0; i < 7; i++) {
    assert.equal(writer.admit(), true, 'fail-open always admits');
    writer.write(record(i));
  }
  await writer.flush();
  assert.deepEqual(lost, [[7, 'unavailable']]);
  assert.equal(writer.recordsLost, 7);

  state.down = false;
  for (let i = 7; i < 10; i++) writer.write(record(i));
  await writer.close();

  const report = await verifyAudit({ store: real, trustedKeys });
  assert.deepEqual(errorsOf(report), [`LOSS_RECORDED ${writer.chainId} 2`]);
  assert.match(report.findings[0]!.detail, /7 lost record/);
  assert.equal(report.exitCode, 1);
  const loss = await real.entryAt(writer.chainId, 2);
  assert.deepEqual(JSON.parse(loss!.record)['audit.lost_count'], 7);
  const checkpoints = [];
  for await (const cp of real.checkpoints(writer.chainId)) checkpoints.push([cp.seq, cp.requestsSeen, cp.recordsLost, cp.final]);
  // The loss record is signed at once; the terminal checkpoint accounts for all ten requests.
  assert.deepEqual(checkpoints, [
    [2, 7, 7, false],
    [6, 10, 7, true],
  ]);
});

/** Child process: writes continuously to a SQLite store, printing each durable batch, until killed. */
const CHILD = `
const [{ openAuditStore }, { createAuditWriter }, { createAuditSigner }, { buildAuditRecord }] = await Promise.all([
  import(process.env.SRC + '/open-store.ts'), import(process.env.SRC + '/writer.ts'),
  import(process.env.SRC + '/keys.ts'), import(process.env.SRC + '/record.ts')]);
const real = await openAuditStore('sqlite:' + process.env.DB);
const failAfter = Number(process.env.FAIL_AFTER);
let appends = 0;
const store = failAfter > 0 ? { ...real, async append(batch, options) {
  if (!options?.idempotent && ++appends > failAfter) throw new Error('store down (injected)');
  return real.append(batch, options);
} } : real;
const writer = await createAuditWriter({ store, signer: createAuditSigner({ privateKey: process.env.KEY, kid: 'audit-1' }),
  checkpointEvery: 50, spool: { dir: process.env.SPOOL, maxBytes: 1 << 30 },
  observer: { batchPersisted: (b) => process.stdout.write('persisted ' + b.target + ' ' + b.lastSeq + '\\n') } });
process.stdout.write('chain ' + writer.chainId + '\\n');
let i = 0;
const loop = () => {
  if (writer.stats().queued < 500) for (let k = 0; k < 100; k++) writer.write(buildAuditRecord({ 'event.type': 'allowed', 'user.id': 'u' + i++ }));
  setImmediate(loop);
};
loop();
`;

async function killWhileWriting(dir: string, failAfter: number, target: 'store' | 'spool'): Promise<{ chainId: string; acked: number }> {
  const child = spawn(process.execPath, ['--input-type=module', '-e', CHILD], {
    env: {
      ...process.env,
      SRC: pathToFileURL(join(import.meta.dirname, '../../src/audit')).href,
      DB: join(dir, 'audit.db'),
      SPOOL: join(dir, 'spool'),
      KEY: KEY.privateKeyPem,
      FAIL_AFTER: String(failAfter),
    },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const exited = once(child, 'exit');
  let chainId = '';
  let acked = 0;
  let seen = 0;
  for await (const line of createInterface({ input: child.stdout! })) {
    const [kind, where, seq] = line.split(' ');
    if (kind === 'chain') chainId = where!;
    if (kind === 'persisted') {
      acked = Math.max(acked, Number(seq));
      if (where === target && ++seen === 5) child.kill('SIGKILL');
    }
  }
  const [code, signal] = await exited;
  assert.equal(signal, 'SIGKILL', `child exited with ${String(code)}`);
  return { chainId, acked };
}

for (const variant of [
  { name: 'committing to the store', failAfter: 0, target: 'store' as const },
  { name: 'spooling (store failing)', failAfter: 3, target: 'spool' as const },
]) {
  test(`sqlite: a writer killed with SIGKILL while ${variant.name} — restart loses nothing silently, duplicates nothing`, async (t) => {
    const dir = tempDir(t);
    const killed = await killWhileWriting(dir, variant.failAfter, variant.target);
    assert.ok(killed.chainId !== '' && killed.acked > 0);

    const store = await openAuditStore(`sqlite:${join(dir, 'audit.db')}`);
    t.after(() => store.close());
    const writer = await createAuditWriter({ store, signer: KEY.signer, checkpointEvery: 50, spool: { dir: join(dir, 'spool'), maxBytes: 1 << 30 } });
    for (let i = 0; i < 5; i++) writer.write(record(i));
    await writer.close();
    assert.deepEqual(readdirSync(join(dir, 'spool')), [], 'the dead writer’s spool was replayed and removed');

    // Everything the dead writer reported durable is in the store.
    let last = 0;
    for await (const e of store.entries(killed.chainId)) last = e.seq;
    assert.ok(last >= killed.acked, `store holds up to ${last}, the writer acknowledged ${killed.acked}`);
    t.diagnostic(`killed chain: acknowledged ${killed.acked}, stored ${last}`);

    const report = await verifyAudit({ store, trustedKeys });
    assert.deepEqual(errorsOf(report), [`CHAIN_UNTERMINATED ${killed.chainId} ${last}`], JSON.stringify(report.findings));
    assert.ok(report.findings.every((f) => f.chainId === killed.chainId), 'the new chain is clean');
    const start = JSON.parse((await store.entryAt(writer.chainId, 1))!.record);
    assert.equal(start['audit.prev_chain_id'], killed.chainId, 'the new chain witnesses the killed one');
    assert.equal(start['audit.prev_chain_seq'], last);
  });
}

/** A TCP relay whose target port can be switched: the store "points at" a wrong port, then the right one. */
async function startRelay(t: TestContext, initialTarget: number): Promise<{ port: number; setTarget(port: number): void }> {
  let target = initialTarget;
  const sockets = new Set<Socket>();
  const server = createServer((client) => {
    const upstream = connect(target, '127.0.0.1');
    for (const s of [client, upstream]) {
      sockets.add(s);
      s.on('close', () => sockets.delete(s));
    }
    upstream.on('error', () => client.destroy());
    client.on('error', () => upstream.destroy());
    client.pipe(upstream).pipe(client);
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  t.after(async () => {
    for (const s of sockets) s.destroy();
    server.close();
    await once(server, 'close');
  });
  return { port: (server.address() as AddressInfo).port, setTarget: (port) => (target = port) };
}

test('postgres: store on a wrong port, then the right one — the spool replays, verify passes, counts match', async (t) => {
  const schema = await createTestSchema(t);
  if (schema === undefined) return;
  const dir = tempDir(t);
  const direct = await openAuditStore(schema.url);
  t.after(() => direct.close());
  const relay = await startRelay(t, await freePort());
  const viaRelay = new URL(schema.url);
  viaRelay.port = String(relay.port);
  const store = await openAuditStore(viaRelay.toString(), { init: false, connectTimeoutMs: 2000 });
  t.after(() => store.close());

  const writer = await createAuditWriter({ store, signer: KEY.signer, checkpointEvery: 10, spool: { dir: join(dir, 'spool'), maxBytes: 1 << 20 } });
  for (let i = 0; i < 20; i++) writer.write(record(i));
  await writer.flush();
  assert.equal(writer.stats().storeAvailable, false);
  assert.ok(writer.stats().spooledBytes > 0);
  assert.equal((await countRecords(direct)).all, 0);

  relay.setTarget(Number(new URL(PG_URL).port || 5432));
  await writer.flush();
  assert.equal(writer.stats().storeAvailable, true);
  assert.equal(writer.stats().spooledBytes, 0);
  for (let i = 20; i < 25; i++) writer.write(record(i));
  assert.equal((await writer.close()).terminated, true);

  const report = await verifyAudit({ store: direct, trustedKeys });
  assert.deepEqual(report.findings, []);
  assert.deepEqual(await countRecords(direct), { all: 27, requests: 25 });
  assert.equal((await finalCheckpoint(direct, writer.chainId))?.requestsSeen, 25);
});

test('postgres: two writers (two pools) on one database concurrently, each its own chain, verify passes', async (t) => {
  const schema = await createTestSchema(t);
  if (schema === undefined) return;
  const stores = await Promise.all([openAuditStore(schema.url), openAuditStore(schema.url)]);
  t.after(() => Promise.all(stores.map((s) => s.close())));
  const writers = await Promise.all(stores.map((store) => createAuditWriter({ store, signer: KEY.signer, checkpointEvery: 25, batchMax: 16 })));
  await Promise.all(
    writers.map(async (writer, w) => {
      for (let i = 0; i < 200; i++) {
        writer.write(record(w * 1000 + i));
        if (i % 7 === 0) await writer.flush();
      }
      return writer.close();
    }),
  );
  const report = await verifyAudit({ store: stores[0]!, trustedKeys });
  assert.deepEqual(report.findings, []);
  assert.equal(report.stats.chains, 2);
  assert.deepEqual(await countRecords(stores[0]!), { all: 404, requests: 400 });
  for (const writer of writers) assert.equal((await finalCheckpoint(stores[0]!, writer.chainId))?.requestsSeen, 200);
});
