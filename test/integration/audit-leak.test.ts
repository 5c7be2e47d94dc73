/**
 * No credential ever reaches storage: records built from request data full of tokens, Authorization headers
 * and cookies — and records handed to the writer without the builder — are written through the store AND the
 * spool on SQLite and PostgreSQL; then every byte that was persisted (database rows, the SQLite files, spool
 * files, the anchor file) is searched for the secrets.
 */
import { test } from 'node:test';
import type { TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createTrustedKeys, generateAuditKey } from '../../src/audit/keys.ts';
import { openAuditStore } from '../../src/audit/open-store.ts';
import { buildAuditRecord } from '../../src/audit/record.ts';
import type { AuditRecord } from '../../src/audit/record.ts';
import type { AuditStore } from '../../src/audit/store.ts';
import { verifyAudit } from '../../src/audit/verify.ts';
import { createAuditWriter } from '../../src/audit/writer.ts';
import { createTestSchema } from '../helpers/postgres.ts';

const KEY = generateAuditKey('audit-1');
const JWT = 'eyJhbGciOiJSUzI1NiIsImtpZCI6ImsxIn0.eyJzdWIiOiJhbGljZSIsImV4cCI6OTk5OTk5OTk5OX0.c2lnbmF0dXJlLWJ5dGVz';
const OPAQUE = 'opaque-access-token-7f3c9a';
const COOKIE = 'sid=c00kie-s3cr3t-value';
const SECRETS = [JWT, JWT.split('.')[1]!, JWT.split('.')[2]!, OPAQUE, 'c00kie-s3cr3t-value', 'Bearer', 'bearer'];

/** Request data as a careless pipeline might pass it on. */
const hostile = {
  '@timestamp': Date.now(),
  'event.type': 'denied' as const,
  'event.reason': 'ERR_TOKEN_EXPIRED',
  'user.id': 'alice',
  'http.request.method': 'GET',
  'url.path': `/loki/api/v1/query?access_token=${JWT}`,
  'user_agent.original': `curl/8 (Authorization: Bearer ${OPAQUE})`,
  'logql.original': `{app="api"} |= "${JWT}"`,
  authorization: `Bearer ${JWT}`,
  cookie: COOKIE,
  'http.request.headers': { authorization: `Bearer ${JWT}`, cookie: COOKIE },
  http: { request: { headers: { cookie: COOKIE } } },
  token: JWT,
  jwt: { raw: JWT, kid: 'k1' },
  claims: { sub: 'alice', session: COOKIE },
};

function tempDir(t: TestContext): string {
  const dir = mkdtempSync(join(tmpdir(), 'portcullis-audit-leak-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

function assertClean(where: string, text: string): void {
  for (const secret of SECRETS) assert.ok(!text.includes(secret), `${where} contains ${secret.slice(0, 24)}`);
}

async function writeHostile(store: AuditStore, dir: string): Promise<void> {
  let down = false;
  const flaky: AuditStore = { ...store, append: (b, o) => (down ? Promise.reject(new Error('down (injected)')) : store.append(b, o)) };
  const writer = await createAuditWriter({
    store: flaky,
    signer: KEY.signer,
    checkpointEvery: 3,
    spool: { dir: join(dir, 'spool'), maxBytes: 1 << 20 },
    anchorFile: join(dir, 'anchors.jsonl'),
  });
  writer.write(buildAuditRecord(hostile));
  // Straight to the writer, bypassing the builder's allowlist: the writer's own scrub still applies.
  writer.write({ ...buildAuditRecord({ 'event.type': 'allowed' }), 'url.path': `/x?t=${JWT}`, 'user_agent.original': `Bearer ${OPAQUE}` } as AuditRecord);
  await writer.flush();
  down = true;
  writer.write(buildAuditRecord(hostile));
  await writer.flush();
  const spoolFiles = readdirSync(join(dir, 'spool'));
  assert.equal(spoolFiles.length, 1, 'one batch went through the spool');
  assertClean('spool file', readFileSync(join(dir, 'spool', spoolFiles[0]!), 'utf8'));
  down = false;
  writer.write(buildAuditRecord(hostile));
  await writer.close();
  assertClean('anchor file', readFileSync(join(dir, 'anchors.jsonl'), 'utf8'));
  const report = await verifyAudit({ store, trustedKeys: createTrustedKeys([{ kid: 'audit-1', publicKey: KEY.signer.publicKey }]) });
  assert.deepEqual(report.findings, []);
}

test('sqlite: no token, Authorization value or cookie in any persisted byte', async (t) => {
  const dir = tempDir(t);
  const store = await openAuditStore(`sqlite:${join(dir, 'audit.db')}`);
  await writeHostile(store, dir);
  let rows = 0;
  for await (const e of store.scan({})) {
    rows++;
    assertClean(`record ${e.seq}`, e.record);
  }
  assert.equal(rows, 6);
  await store.close();
  for (const name of readdirSync(dir).filter((n) => n.startsWith('audit.db'))) {
    assertClean(name, readFileSync(join(dir, name)).toString('latin1'));
  }
});

test('postgres: no token, Authorization value or cookie in any persisted row', async (t) => {
  const schema = await createTestSchema(t);
  if (schema === undefined) return;
  const dir = tempDir(t);
  const store = await openAuditStore(schema.url);
  t.after(() => store.close());
  await writeHostile(store, dir);
  const tables: readonly string[] = ['audit_chains', 'audit_records', 'audit_checkpoints', 'audit_prunes'];
  for (const table of tables) {
    const rows: { row: string }[] = (await schema.client.query<{ row: string }>(`SELECT t::text AS row FROM ${table} t`)).rows;
    for (const row of rows) assertClean(table, row.row);
    if (table === 'audit_records') assert.equal(rows.length, 6);
  }
});
