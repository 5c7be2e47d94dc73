/**
 * Keyed redaction: configured fields, LogQL label values and emails become hmac-sha256:<key id>:<hex>, the
 * same string `hashForSearch` (behind `portcullis audit hash`) computes, and bad configuration is refused.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import { buildAuditRecord } from '../../src/audit/record.ts';
import { createRedactor, hashForSearch } from '../../src/audit/redact.ts';

const KEY = Buffer.alloc(32, 7);
const hmac = (value: string): string => `hmac-sha256:k1:${createHmac('sha256', KEY).update(value).digest('hex')}`;

test('configured fields are replaced by their HMAC, which hashForSearch reproduces', () => {
  const redactor = createRedactor({ keyId: 'k1', key: KEY, fields: ['user.id', 'user.roles', 'client.ip'] });
  const record = buildAuditRecord(
    { 'event.type': 'allowed', 'user.id': 'alice', 'user.roles': ['admin', 'reader'], 'client.ip': '10.0.0.1', 'http.route': 'r' },
    { redactor },
  );
  assert.equal(record['user.id'], hmac('alice'));
  assert.equal(record['user.id'], hashForSearch('k1', KEY, 'alice'));
  assert.deepEqual(record['user.roles'], [hmac('admin'), hmac('reader')]);
  assert.equal(record['client.ip'], hmac('10.0.0.1'));
  assert.equal(record['http.route'], 'r');
  assert.equal(redactor.redact(record as never)['user.id'], record['user.id'], 'redacting twice does not hash the hash');
});

test('emails inside any string are replaced, the rest of the string is kept', () => {
  const redactor = createRedactor({ keyId: 'k1', key: KEY });
  const record = buildAuditRecord({ 'event.type': 'denied', 'url.path': '/users/Bob.Smith+x@mail.example.org./profile', 'user.email': 'a@b.io' }, { redactor });
  assert.equal(record['url.path'], `/users/${hmac('Bob.Smith+x@mail.example.org')}./profile`);
  assert.equal(record['user.email'], hmac('a@b.io'));
});

const NOT_EMAILS = ['user@localhost', '@example.com', 'a@b.c', 'x@@y.com', 'trailing@', 'a'.repeat(5000) + '@'];
for (const text of NOT_EMAILS) {
  test(`not an email: ${text.length > 40 ? text.slice(0, 10) + '…' : text}`, () => {
    const redactor = createRedactor({ keyId: 'k1', key: KEY });
    assert.equal(redactor.redact({ 'url.path': text })['url.path'], text);
  });
}

test('emails can be left alone', () => {
  const redactor = createRedactor({ keyId: 'k1', key: KEY, emails: false });
  assert.equal(redactor.redact({ 'url.path': '/u/a@b.io' })['url.path'], '/u/a@b.io');
});

test('LogQL label values of configured labels are replaced in both the enforced and the original query', () => {
  const redactor = createRedactor({ keyId: 'k1', key: KEY, logqlLabels: ['user', 'email'], emails: false });
  const out = redactor.redact({
    'logql.query': 'sum(rate({app="api", user=~"bob|eve", env="prod"} |= `user="x"` [5m])) by (user)',
    'logql.original': '{user = "a\\"b", user_id="keep"}',
    'url.path': '/x?user="kept-outside-logql"',
  });
  assert.equal(out['logql.query'], `sum(rate({app="api", user=~"${hmac('bob|eve')}", env="prod"} |= \`user="${hmac('x')}"\` [5m])) by (user)`);
  assert.equal(out['logql.original'], `{user = "${hmac('a\\"b')}", user_id="keep"}`);
  assert.equal(out['url.path'], '/x?user="kept-outside-logql"');
});

const BAD: readonly [string, () => unknown, string][] = [
  ['short key', () => createRedactor({ keyId: 'k1', key: Buffer.alloc(16) }), 'ERR_AUDIT_REDACTION_KEY_INVALID'],
  ['key id with a colon', () => createRedactor({ keyId: 'k:1', key: KEY }), 'ERR_AUDIT_REDACTION_KEY_INVALID'],
  ['field outside the allowlist', () => createRedactor({ keyId: 'k1', key: KEY, fields: ['claims.email'] }), 'ERR_AUDIT_OPTIONS_INVALID'],
  ['the decision itself', () => createRedactor({ keyId: 'k1', key: KEY, fields: ['event.type'] }), 'ERR_AUDIT_OPTIONS_INVALID'],
  ['a label that is not a label name', () => createRedactor({ keyId: 'k1', key: KEY, logqlLabels: ['a|b'] }), 'ERR_AUDIT_OPTIONS_INVALID'],
];
for (const [name, make, code] of BAD) {
  test(`refused: ${name}`, () => assert.throws(make, { name: 'AuditError', code }));
}
