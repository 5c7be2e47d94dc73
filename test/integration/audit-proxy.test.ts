/**
 * The audit log through the real proxy: one record per decision (allowed and denied, 401s included) with
 * the event id returned to the client; the auditors' API is guarded and itself audited; `audit verify`
 * passes on what the proxy wrote; no token, Bearer or cookie ever reaches the store or the logs; and with
 * PostgreSQL down and the spool full, fail-closed answers 503 and forwards nothing, then recovers.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { generateAuditKey, trustedKeysDocument } from '../../src/audit/keys.ts';
import { createTestSigner } from '../helpers/keys.ts';
import { startRecordingUpstream } from '../helpers/upstream.ts';
import { startProxy } from '../helpers/proxy.ts';
import { runCli } from '../helpers/cli.ts';
import { createTestSchema } from '../helpers/postgres.ts';

const ISS = 'https://idp.audit.test';

function auditKeys(dir: string): { signing: string; trusted: string } {
  const key = generateAuditKey('audit-test');
  const signing = join(dir, 'audit-signing.pem');
  const trusted = join(dir, 'trusted-keys.json');
  writeFileSync(signing, key.privateKeyPem, { mode: 0o600 });
  writeFileSync(trusted, trustedKeysDocument([key.signer]));
  return { signing, trusted };
}

const config = (upstream: string, store: string, signing: string, extra = '') => `
issuers:
  corp: { issuer: ${ISS}, keys: [{ jwks_file: jwks.json }] }
upstreams:
  up: { targets: ["${upstream}"] }
audit:
  store: "${store}"
  signing_key: { file: ${signing} }
  redaction: { key: { env: AUDIT_HMAC_KEY }, key_id: h1, fields: [user.email] }
  key_id: audit-test
  checkpoint: { every: 5 }
${extra}
routes:
  - id: audit-api
    match: { path: /audit/records }
    audit_api: true
    require: { roles: [auditor] }
  - id: guarded
    match: { path_prefix: /guarded/ }
    require: { roles: [reader] }
    upstream: up
  - id: api
    match: { path_prefix: / }
    upstream: up
`;

test('every decision is recorded, the event id is returned, the API is guarded and audited, verify passes, nothing leaks', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'pc-audit-proxy-'));
  const signer = await createTestSigner('ES256');
  const upstream = await startRecordingUpstream();
  const keys = auditKeys(dir);
  const store = `sqlite:${join(dir, 'audit.db')}`;
  const proxy = await startProxy(config(upstream.origin, store, keys.signing, '  trusted_hops: [127.0.0.1]'), {
    files: { 'jwks.json': JSON.stringify(signer.jwks) },
    env: { AUDIT_HMAC_KEY: 'k'.repeat(40) },
  });
  const now = Math.floor(Date.now() / 1000);
  const reader = await signer.sign({ iss: ISS, sub: 'alice', email: 'alice@example.com', roles: ['reader'], exp: now + 600 });
  const auditor = await signer.sign({ iss: ISS, sub: 'carol', roles: ['auditor'], exp: now + 600 });
  const expired = await signer.sign({ iss: ISS, sub: 'mallory', exp: now - 600 });
  const tokens = [reader, auditor, expired];
  const call = async (path: string, token?: string, headers: Record<string, string> = {}) => {
    const res = await fetch(proxy.url + path, { headers: { ...(token ? { authorization: `Bearer ${token}` } : {}), cookie: 'session=s3cr3t-cookie', ...headers } });
    await res.arrayBuffer();
    return { status: res.status, eventId: res.headers.get('x-portcullis-event-id') };
  };
  try {
    const allowed = await call('/guarded/data', reader, { 'x-forwarded-for': '203.0.113.9', traceparent: '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01', 'user-agent': 'audit-test/1' });
    const missing = await call('/guarded/data');
    const expiredAnswer = await call('/guarded/data', expired);
    const denied = await call('/guarded/data', auditor);
    // Two hops: the trusted one (this test's own address) is skipped, the one before it is the client.
    const relayed = await call('/guarded/data', reader, { 'x-forwarded-for': '198.51.100.7, 127.0.0.1' });
    assert.deepEqual([allowed.status, missing.status, expiredAnswer.status, denied.status, relayed.status], [200, 401, 401, 403, 200]);
    for (const a of [allowed, missing, expiredAnswer, denied, relayed]) assert.match(a.eventId ?? '', /^[0-9a-f-]{36}$/);

    // A non-auditor cannot read the audit log.
    assert.equal((await call('/audit/records', reader)).status, 403);
    const res = await fetch(`${proxy.url}/audit/records?limit=50`, { headers: { authorization: `Bearer ${auditor}` } });
    assert.equal(res.status, 200);
    const { records } = (await res.json()) as { records: Record<string, unknown>[] };
    const byId = new Map(records.map((r) => [r['event.id'], r]));
    const a = byId.get(allowed.eventId)!;
    assert.ok(a, 'the allowed request is recorded');
    assert.equal(a['event.type'], 'allowed');
    assert.equal(a['rule.id'], 'require');
    assert.equal(a['user.id'], 'alice');
    assert.deepEqual(a['user.roles'], ['reader']);
    assert.equal(a['jwt.iss'], ISS);
    assert.equal(a['jwt.alg'], 'ES256');
    assert.equal(a['http.route'], 'guarded');
    assert.equal(a['http.response.status_code'], 200);
    assert.equal(a['client.ip'], '203.0.113.9', 'X-Forwarded-For believed from a trusted hop');
    assert.equal(byId.get(relayed.eventId)!['client.ip'], '198.51.100.7', 'trusted hops are skipped from the right');
    assert.equal(byId.get(missing.eventId)!['client.ip'], '127.0.0.1', 'without X-Forwarded-For the peer is the client');
    assert.equal(a['user_agent.original'], 'audit-test/1');
    assert.equal(a['trace.id'], '4bf92f3577b34da6a3ce929d0e0e4736');
    assert.equal(a['destination.address'], 'up');
    assert.match(String(a['user.email']), /^hmac-sha256:h1:[0-9a-f]{64}$/, 'configured PII is a keyed HMAC');
    assert.equal(byId.get(missing.eventId)!['event.reason'], 'ERR_TOKEN_MISSING');
    assert.equal(byId.get(expiredAnswer.eventId)!['event.reason'], 'ERR_TOKEN_EXPIRED');
    assert.equal(byId.get(denied.eventId)!['event.type'], 'denied');
    assert.equal(byId.get(denied.eventId)!['event.reason'], 'ERR_ACCESS_DENIED');
    // The auditor can search a redacted value by its HMAC.
    const hash = await runCli(['audit', 'hash', '--key-id', 'h1', '--key-env', 'AUDIT_HMAC_KEY', 'alice@example.com'], { env: { AUDIT_HMAC_KEY: 'k'.repeat(40) } });
    assert.equal(hash.stdout.trim(), a['user.email']);

    // Reading the audit log is itself audited.
    const second = await fetch(`${proxy.url}/audit/records?route=audit-api`, { headers: { authorization: `Bearer ${auditor}` } });
    const reads = ((await second.json()) as { records: Record<string, unknown>[] }).records;
    assert.ok(reads.some((r) => r['http.route'] === 'audit-api' && r['user.id'] === 'carol' && r['event.type'] === 'allowed'));
    assert.ok(reads.some((r) => r['http.route'] === 'audit-api' && r['user.id'] === 'alice' && r['event.type'] === 'denied'));
  } finally {
    await proxy.close();
    await upstream.close();
  }

  // After a clean shutdown every chain is terminated and verifies.
  const verify = await runCli(['audit', 'verify', '--store', store, '--trusted-keys', keys.trusted]);
  assert.equal(verify.code, 0, verify.stdout + verify.stderr);
  assert.match(verify.stdout, /^valid: 1 chain\(s\), \d+ record\(s\)/m);
  const query = await runCli(['audit', 'query', '--store', store, '--decision', 'denied', '--reason', 'ERR_TOKEN_EXPIRED']);
  assert.equal(query.code, 0);
  // An unverified token names nobody: the record carries no subject for it.
  assert.match(query.stdout, /denied\s+401\s+guarded\s+ERR_TOKEN_EXPIRED\s+\/guarded\/data/);
  const otherKeys = auditKeys(mkdtempSync(join(tmpdir(), 'pc-audit-other-')));
  const wrongKey = await runCli(['audit', 'verify', '--store', store, '--trusted-keys', otherKeys.trusted]);
  assert.equal(wrongKey.code, 1, 'checkpoints signed by an untrusted key do not verify');
  assert.match(wrongKey.stdout, /CHECKPOINT_SIG_INVALID|UNKNOWN_KEY/);

  // Leak check: the store, its WAL and the logs hold no token, Bearer or cookie.
  const stored = readdirSync(dir).filter((f) => f.startsWith('audit.db')).map((f) => readFileSync(join(dir, f)).toString('latin1')).join('');
  const logs = proxy.logText();
  for (const t of tokens) {
    assert.ok(!stored.includes(t) && !stored.includes(t.split('.')[2]!), 'no token in the store');
    assert.ok(!logs.includes(t), 'no token in the logs');
  }
  for (const secret of ['Bearer ', 's3cr3t-cookie', 'alice@example.com']) {
    assert.ok(!stored.includes(secret), `no ${secret} in the store`);
  }
  rmSync(dir, { recursive: true, force: true });
});

test('fail-closed: PostgreSQL down and spool full -> 503 and the upstream sees nothing; back up -> spool replays', async (t) => {
  const pg = await createTestSchema(t);
  if (pg === undefined) return;
  const dir = mkdtempSync(join(tmpdir(), 'pc-audit-pg-'));
  const signer = await createTestSigner('ES256');
  const upstream = await startRecordingUpstream();
  const keys = auditKeys(dir);
  const proxy = await startProxy(config(upstream.origin, pg.url, keys.signing, `  spool: { dir: ${join(dir, 'spool')}, max_bytes: 4096 }`), {
    files: { 'jwks.json': JSON.stringify(signer.jwks) },
    env: { AUDIT_HMAC_KEY: 'k'.repeat(40) },
  });
  const token = await signer.sign({ iss: ISS, sub: 'alice', roles: ['reader'], exp: Math.floor(Date.now() / 1000) + 600 });
  const get = async () => {
    const res = await fetch(`${proxy.url}/guarded/x`, { headers: { authorization: `Bearer ${token}` } });
    await res.arrayBuffer();
    return res.status;
  };
  try {
    assert.equal(await get(), 200);
    // The store goes away: inserts fail, records spool until the 4 KiB spool is full.
    await pg.client.query('ALTER TABLE audit_records RENAME TO audit_records_away');
    const statuses: number[] = [];
    for (let i = 0; i < 200 && !statuses.includes(503); i++) statuses.push(await get());
    assert.ok(statuses.includes(503), 'fail-closed: 503 once nothing can keep the record');
    const forwarded = upstream.requests.length;
    upstream.reset();
    assert.equal(await get(), 503);
    assert.equal(upstream.requests.length, 0, 'nothing forwarded unaudited');
    const metrics = await (await fetch(proxy.adminUrl + '/metrics')).text();
    assert.match(metrics, /portcullis_audit_blocked 1/);
    // The store comes back: the spool replays and requests flow again.
    await pg.client.query('ALTER TABLE audit_records_away RENAME TO audit_records');
    await proxy.waitForLog((l) => l.msg === 'audit accepting records again');
    assert.equal(await get(), 200);
    assert.ok(forwarded > 0);
  } finally {
    await proxy.close();
    await upstream.close();
  }
  const verify = await runCli(['audit', 'verify', '--store', pg.url, '--trusted-keys', keys.trusted]);
  assert.equal(verify.code, 0, verify.stdout + verify.stderr);
  await pg.drop();
  rmSync(dir, { recursive: true, force: true });
});

test('two proxies on one PostgreSQL under load: every answered request has exactly one record; verify passes', async (t) => {
  const pg = await createTestSchema(t);
  if (pg === undefined) return;
  const dir = mkdtempSync(join(tmpdir(), 'pc-audit-two-'));
  const signer = await createTestSigner('ES256');
  const upstream = await startRecordingUpstream();
  const keys = auditKeys(dir);
  const options = { files: { 'jwks.json': JSON.stringify(signer.jwks) }, env: { AUDIT_HMAC_KEY: 'k'.repeat(40) } };
  const one = await startProxy(config(upstream.origin, pg.url, keys.signing), options);
  const two = await startProxy(config(upstream.origin, pg.url, keys.signing), options);
  const token = await signer.sign({ iss: ISS, sub: 'load', roles: ['reader'], exp: Math.floor(Date.now() / 1000) + 600 });
  const eventIds = new Set<string>();
  try {
    // 8 concurrent clients, 300 requests, spread over both proxies; a quarter are denied.
    let next = 0;
    await Promise.all(Array.from({ length: 8 }, async () => {
      while (next < 300) {
        const i = next++;
        const base = i % 2 === 0 ? one.url : two.url;
        const res = await fetch(`${base}/guarded/${i}`, { headers: i % 4 === 3 ? {} : { authorization: `Bearer ${token}` } });
        await res.arrayBuffer();
        assert.equal(res.status, i % 4 === 3 ? 401 : 200);
        eventIds.add(res.headers.get('x-portcullis-event-id')!);
      }
    }));
  } finally {
    await one.close();
    await two.close();
    await upstream.close();
  }
  assert.equal(eventIds.size, 300);
  const { rows } = await pg.client.query<{ event_id: string; n: string }>(
    "SELECT record::jsonb->>'event.id' AS event_id, count(*) AS n FROM audit_records WHERE record::jsonb->>'http.route' = 'guarded' GROUP BY 1",
  );
  assert.equal(rows.length, 300, 'one record per answered request');
  assert.ok(rows.every((r) => r.n === '1' && eventIds.has(r.event_id)), 'no duplicate, no stray record');
  const chains = await pg.client.query('SELECT count(*) AS n FROM audit_chains');
  assert.equal(chains.rows[0].n, '2', 'each instance writes its own chain');
  const verify = await runCli(['audit', 'verify', '--store', pg.url, '--trusted-keys', keys.trusted]);
  assert.equal(verify.code, 0, verify.stdout + verify.stderr);
  await pg.drop();
  rmSync(dir, { recursive: true, force: true });
});
