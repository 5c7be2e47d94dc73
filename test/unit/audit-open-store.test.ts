/**
 * Store URLs as config and the CLI give them, and read-only opening that never creates an empty store.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openAuditStore, parseAuditStoreUrl } from '../../src/audit/open-store.ts';
import type { AuditStoreUrl } from '../../src/audit/open-store.ts';

const URLS: readonly [string, AuditStoreUrl][] = [
  ['sqlite:./data/audit.db', { kind: 'sqlite', path: './data/audit.db' }],
  ['sqlite:///var/lib/portcullis/audit.db', { kind: 'sqlite', path: '/var/lib/portcullis/audit.db' }],
  ['sqlite::memory:', { kind: 'sqlite', path: ':memory:' }],
  ['postgres://u:p@db:5432/audit', { kind: 'postgres', connectionString: 'postgres://u:p@db:5432/audit', schema: 'public' }],
  ['postgresql://db/audit?schema=audit&sslmode=require', { kind: 'postgres', connectionString: 'postgresql://db/audit?sslmode=require', schema: 'audit' }],
];
for (const [url, want] of URLS) {
  test(`parses ${url}`, () => assert.deepEqual(parseAuditStoreUrl(url), want));
}

for (const url of ['sqlite:', 'mysql://db/audit', './audit.db', 'postgres://[bad']) {
  test(`refuses ${JSON.stringify(url)}`, () => assert.throws(() => parseAuditStoreUrl(url), { name: 'AuditError', code: 'ERR_AUDIT_STORE_URL_INVALID' }));
}

test('an invalid schema name is refused before anything is sent', async () => {
  await assert.rejects(openAuditStore('postgres://db/audit?schema=a;drop'), { code: 'ERR_AUDIT_STORE_URL_INVALID' });
});

test('read-only: a missing SQLite file fails (exit 2 for verify) instead of becoming an empty, "valid" store', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'portcullis-audit-open-'));
  try {
    const path = join(dir, 'missing.db');
    await assert.rejects(openAuditStore(`sqlite:${path}`, { readOnly: true }), { code: 'ERR_AUDIT_STORE_UNAVAILABLE' });
    assert.equal(existsSync(path), false);
    const writable = await openAuditStore(`sqlite:${join(dir, 'nested', 'audit.db')}`);
    await writable.close();
    const reader = await openAuditStore(`sqlite:${join(dir, 'nested', 'audit.db')}`, { readOnly: true });
    await reader.close();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('read-only: a SQLite file that is not an audit store is refused with ERR_AUDIT_SCHEMA_VERSION', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'portcullis-audit-open-'));
  try {
    const { DatabaseSync } = await import('node:sqlite');
    const db = new DatabaseSync(join(dir, 'other.db'));
    db.exec('CREATE TABLE audit_meta (key TEXT, value TEXT)');
    db.close();
    await assert.rejects(openAuditStore(`sqlite:${join(dir, 'other.db')}`, { readOnly: true }), { code: 'ERR_AUDIT_SCHEMA_VERSION' });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
