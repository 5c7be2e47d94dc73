/**
 * Checkpoint and prune statements: what the signature covers, verification against trusted keys, the two
 * trusted-keys file forms and their refusals, loading the signing key, and anchor files.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  appendAnchors,
  checkCheckpoint,
  checkPrune,
  checkpointFromJson,
  checkpointToJson,
  readAnchors,
  signCheckpoint,
  signPrune,
} from '../../src/audit/checkpoint.ts';
import type { Checkpoint } from '../../src/audit/checkpoint.ts';
import { createAuditSigner, createTrustedKeys, ed25519Thumbprint, generateAuditKey, loadAuditSigner, loadTrustedKeys, trustedKeysDocument } from '../../src/audit/keys.ts';

let dir: string;
before(() => {
  dir = mkdtempSync(join(tmpdir(), 'portcullis-audit-keys-'));
});
after(() => rmSync(dir, { recursive: true, force: true }));

const key = generateAuditKey('k1');
const trusted = createTrustedKeys([{ kid: 'k1', publicKey: key.signer.publicKey }]);
const body = { chainId: 'c1', seq: 10, headHash: 'a'.repeat(64), time: '2025-01-01T00:00:00.000Z', requestsSeen: 9, recordsLost: 0, final: false };

test('a signed checkpoint verifies, and changing any signed member breaks it', () => {
  const cp = signCheckpoint(body, key.signer);
  assert.equal(cp.kid, 'k1');
  assert.equal(checkCheckpoint(cp, trusted), 'valid');
  const changes: Partial<Checkpoint>[] = [
    { chainId: 'c2' },
    { seq: 11 },
    { headHash: 'b'.repeat(64) },
    { time: '2025-01-01T00:00:00.001Z' },
    { requestsSeen: 10 },
    { recordsLost: 1 },
    { final: true },
  ];
  for (const change of changes) assert.equal(checkCheckpoint({ ...cp, ...change }, trusted), 'invalid', JSON.stringify(change));
  assert.equal(checkCheckpoint({ ...cp, kid: 'other' }, trusted), 'unknown-key');
  assert.equal(checkCheckpoint({ ...cp, sig: cp.sig + 'A' }, trusted), 'invalid');
  assert.equal(checkCheckpoint({ ...cp, sig: 'not base64url!' }, trusted), 'invalid');
});

test('a checkpoint signature cannot pass as a prune signature (domain separation)', () => {
  const prune = signPrune({ chainId: 'c1', throughSeq: 10, lastHash: 'a'.repeat(64), time: body.time }, key.signer);
  assert.equal(checkPrune(prune, trusted), 'valid');
  const cp = signCheckpoint(body, key.signer);
  assert.equal(checkPrune({ ...prune, sig: cp.sig }, trusted), 'invalid');
  assert.equal(checkPrune({ ...prune, throughSeq: 9 }, trusted), 'invalid');
});

test('trusted keys file: publicKeyPem form, JWKS form, mixed', async () => {
  const other = generateAuditKey('k2');
  const pemFile = join(dir, 'pem.json');
  writeFileSync(pemFile, trustedKeysDocument([key.signer, other.signer]));
  const jwksFile = join(dir, 'jwks.json');
  writeFileSync(jwksFile, JSON.stringify({ keys: [{ ...key.signer.publicKey.export({ format: 'jwk' }), kid: 'k1', use: 'sig', alg: 'EdDSA' }] }));
  const mixedFile = join(dir, 'mixed.json');
  writeFileSync(mixedFile, JSON.stringify({ keys: [{ kid: 'k1', publicKeyPem: key.publicKeyPem }, { ...other.signer.publicKey.export({ format: 'jwk' }), kid: 'k2' }] }));
  const cp = signCheckpoint(body, other.signer);
  for (const file of [pemFile, mixedFile]) {
    const keys = await loadTrustedKeys(file);
    assert.deepEqual(keys.kids, ['k1', 'k2']);
    assert.equal(checkCheckpoint(cp, keys), 'valid');
  }
  assert.equal(checkCheckpoint(signCheckpoint(body, key.signer), await loadTrustedKeys(jwksFile)), 'valid');
});

const BAD_FILES: readonly [string, string][] = [
  ['not JSON', '{'],
  ['no keys', '{"keys":[]}'],
  ['a private JWK', JSON.stringify({ keys: [{ ...key.signer.publicKey.export({ format: 'jwk' }), d: 'AAAA', kid: 'k1' }] })],
  ['a private PEM', JSON.stringify({ keys: [{ kid: 'k1', publicKeyPem: key.privateKeyPem }] })],
  ['an RSA key', JSON.stringify({ keys: [{ kid: 'r', publicKeyPem: generateKeyPairSync('rsa', { modulusLength: 2048 }).publicKey.export({ format: 'pem', type: 'spki' }) }] })],
  ['no kid', JSON.stringify({ keys: [{ publicKeyPem: key.publicKeyPem }] })],
  ['a duplicate kid', JSON.stringify({ keys: [{ kid: 'k1', publicKeyPem: key.publicKeyPem }, { kid: 'k1', publicKeyPem: key.publicKeyPem }] })],
  ['an EC JWK', JSON.stringify({ keys: [{ kty: 'EC', crv: 'P-256', x: 'x', y: 'y', kid: 'e' }] })],
];
for (const [name, content] of BAD_FILES) {
  test(`trusted keys file refused: ${name}`, async () => {
    const file = join(dir, `bad-${name.replace(/\W+/g, '-')}.json`);
    writeFileSync(file, content);
    await assert.rejects(loadTrustedKeys(file), { name: 'AuditError', code: 'ERR_AUDIT_KEYS_FILE_INVALID' });
  });
}

test('trusted keys file missing', async () => {
  await assert.rejects(loadTrustedKeys(join(dir, 'missing.json')), { code: 'ERR_AUDIT_KEYS_FILE_INVALID' });
});

test('signing key from a PEM file or an environment variable; kid defaults to the RFC 7638 thumbprint', async () => {
  const file = join(dir, 'audit.pem');
  writeFileSync(file, key.privateKeyPem);
  const fromFile = await loadAuditSigner({ file });
  assert.equal(fromFile.kid, ed25519Thumbprint(key.signer.publicKey));
  assert.match(fromFile.kid, /^[A-Za-z0-9_-]{43}$/);
  const fromEnv = await loadAuditSigner({ env: 'AUDIT_KEY', kid: 'k1', environment: { AUDIT_KEY: key.privateKeyPem } });
  assert.equal(checkCheckpoint(signCheckpoint(body, fromEnv), trusted), 'valid');
  await assert.rejects(loadAuditSigner({ env: 'AUDIT_KEY', environment: {} }), { code: 'ERR_AUDIT_KEY_INVALID' });
  await assert.rejects(loadAuditSigner({}), { code: 'ERR_AUDIT_KEY_INVALID' });
  await assert.rejects(loadAuditSigner({ file: join(dir, 'nope.pem') }), { code: 'ERR_AUDIT_KEY_INVALID' });
  const ec = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey;
  assert.throws(() => createAuditSigner({ privateKey: ec }), { code: 'ERR_AUDIT_KEY_INVALID' });
  assert.throws(() => createAuditSigner({ privateKey: 'not a pem' }), { code: 'ERR_AUDIT_KEY_INVALID' });
});

test('anchors: appended as JSONL, read back, malformed lines reported, other line types skipped', async () => {
  const file = join(dir, 'anchors.jsonl');
  const cps = [signCheckpoint(body, key.signer), signCheckpoint({ ...body, seq: 20, final: true }, key.signer)];
  await appendAnchors(file, cps.slice(0, 1));
  await appendAnchors(file, cps.slice(1));
  writeFileSync(file, readFileSync(file, 'utf8') + '{"type":"record","seq":1}\nnot json\n{"type":"checkpoint","seq":"x"}\n\n');
  const lines = [];
  for await (const line of readAnchors(file)) lines.push(line);
  assert.deepEqual(lines, [
    { line: 1, checkpoint: cps[0] },
    { line: 2, checkpoint: cps[1] },
    { line: 4, error: 'not JSON' },
    { line: 5, error: 'malformed checkpoint' },
  ]);
  assert.deepEqual(checkpointFromJson(checkpointToJson(cps[0]!)), cps[0]);
});
