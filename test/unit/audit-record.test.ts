/**
 * buildAuditRecord: the allowlist (everything else is dropped, credentials above all), flat and nested input,
 * type checks and bounds, defaults, the always-on credential scrub, and UUIDv7 ids.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { canonicalize } from '../../src/audit/canonical.ts';
import { AUDIT_FIELDS, buildAuditRecord, isoTime, prepareAuditRecord, uuidv7 } from '../../src/audit/record.ts';
import { createRedactor } from '../../src/audit/redact.ts';
import { containsSecret, scrubRecord, scrubSecrets } from '../../src/audit/secrets.ts';

const JWT = 'eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJl';
const NOW = Date.parse('2025-05-01T12:00:00.000Z');

test('keeps allowlisted fields, drops everything else (headers, claims, tokens, cookies)', () => {
  const record = buildAuditRecord({
    '@timestamp': '2025-05-01T12:00:00.000Z',
    'event.type': 'denied',
    'event.reason': 'ERR_TOKEN_EXPIRED',
    'user.id': 'alice',
    'http.request.method': 'GET',
    authorization: `Bearer ${JWT}`,
    cookie: 'session=abc123',
    'http.request.headers.cookie': 'session=abc123',
    token: JWT,
    claims: { sub: 'alice', email: 'alice@example.com' },
    'user.password': 'hunter2',
  });
  assert.deepEqual(Object.keys(record).sort(), ['@timestamp', 'event.action', 'event.id', 'event.reason', 'event.type', 'http.request.method', 'user.id']);
  assert.equal(record['event.action'], 'http-request');
  const text = JSON.stringify(record);
  for (const secret of ['eyJ', 'Bearer', 'session=abc123', 'hunter2']) assert.ok(!text.includes(secret), secret);
});

test('nested input is flattened into the dotted names; a flat key wins over the nested one', () => {
  const record = buildAuditRecord({
    'event.type': 'allowed',
    user: { id: 'nested', roles: ['a', 'b'], secret: 'x' },
    'user.id': 'flat',
    http: { request: { method: 'POST' }, response: { status_code: 201 } },
    jwt: { iss: 'https://idp', aud: ['api', 'logs'], exp: 1700000000 },
  });
  assert.equal(record['user.id'], 'flat');
  assert.deepEqual(record['user.roles'], ['a', 'b']);
  assert.equal(record['http.request.method'], 'POST');
  assert.equal(record['http.response.status_code'], 201);
  assert.deepEqual([record['jwt.iss'], record['jwt.aud'], record['jwt.exp']], ['https://idp', ['api', 'logs'], 1700000000]);
  assert.ok(!('user.secret' in record));
});

test('only own enumerable members are read: inherited and non-enumerable fields are not recorded', () => {
  const input = Object.create({ 'user.email': 'inherited@example.com', user: { name: 'inherited' } }) as Record<string, unknown>;
  input['event.type'] = 'denied';
  Object.defineProperty(input, 'user.id', { value: 'hidden', enumerable: false });
  input.http = Object.create({ request: { method: 'INHERITED' } });
  const record = buildAuditRecord(input as never);
  assert.equal(record['event.type'], 'denied');
  for (const field of ['user.email', 'user.name', 'user.id', 'http.request.method']) assert.ok(!(field in record), field);
});

const TYPES: readonly [string, Record<string, unknown>, string, unknown][] = [
  ['a number where a string belongs is dropped', { 'user.id': 42 }, 'user.id', undefined],
  ['a string where an integer belongs is dropped', { 'http.response.status_code': '200' }, 'http.response.status_code', undefined],
  ['durations round to integer nanoseconds', { 'event.duration': 1234.6 }, 'event.duration', 1235],
  ['bigint durations become numbers', { 'event.duration': 5_000_000n }, 'event.duration', 5_000_000],
  ['an unknown decision is dropped', { 'event.type': 'maybe' }, 'event.type', undefined],
  ['non-strings are dropped from lists', { 'user.roles': ['a', 1, null, 'b'] }, 'user.roles', ['a', 'b']],
  ['a Date @timestamp becomes RFC 3339', { '@timestamp': new Date(NOW) }, '@timestamp', '2025-05-01T12:00:00.000Z'],
  ['epoch ms @timestamp becomes RFC 3339', { '@timestamp': NOW }, '@timestamp', '2025-05-01T12:00:00.000Z'],
  ['an unparsable @timestamp falls back to now', { '@timestamp': 'soon' }, '@timestamp', '2025-05-01T12:00:00.000Z'],
];

for (const [name, input, field, want] of TYPES) {
  test(`types: ${name}`, () => {
    const record = buildAuditRecord({ 'event.type': 'allowed', ...input } as never, { now: () => NOW }) as unknown as Record<string, unknown>;
    assert.deepEqual(record[field], want);
  });
}

test('sizes are bounded: long strings truncated on a code point boundary, long lists cut', () => {
  const record = buildAuditRecord({
    'event.type': 'allowed',
    'user_agent.original': 'a'.repeat(2047) + '😀' + 'b'.repeat(100),
    'logql.query': 'x'.repeat(20000),
    'user.roles': Array.from({ length: 100 }, (_, i) => `r${i}`),
  });
  assert.equal(record['user_agent.original'], 'a'.repeat(2047) + '…[truncated]');
  assert.equal(record['logql.query']!.length, 16384 + '…[truncated]'.length);
  assert.equal(record['user.roles']!.length, 65);
  assert.equal(record['user.roles']![64], '…[truncated]');
});

test('defaults: @timestamp now and a UUIDv7 event.id', () => {
  const record = buildAuditRecord({ 'event.type': 'allowed' }, { now: () => NOW });
  assert.equal(record['@timestamp'], '2025-05-01T12:00:00.000Z');
  assert.match(record['event.id'], /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
});

test('credentials inside allowed fields are replaced and counted', () => {
  const seen: string[] = [];
  const record = buildAuditRecord(
    {
      'event.type': 'allowed',
      'url.path': `/cb?access_token=${JWT}&x=1`,
      'user_agent.original': `curl (Authorization: bearer ${JWT.slice(0, 20)})`,
      'logql.original': `{app="x"} |= "Bearer abc.def"`,
      'user.roles': [`${JWT}`, 'reader'],
    },
    { onSecret: (field) => seen.push(field) },
  );
  assert.equal(record['url.path'], '/cb?access_token=[redacted]&x=1');
  assert.equal(record['user_agent.original'], 'curl (Authorization: [redacted]');
  assert.equal(record['logql.original'], '{app="x"} |= "[redacted]');
  assert.deepEqual(record['user.roles'], ['[redacted]', 'reader']);
  assert.deepEqual(seen.sort(), ['logql.original', 'url.path', 'user.roles', 'user_agent.original']);
  assert.equal(containsSecret(JSON.stringify(record)), false);
});

const SCRUB: readonly [string, string, string, number][] = [
  ['compact JWS', `x ${JWT} y`, 'x [redacted] y', 1],
  ['unsigned JWT (alg none, empty signature)', 'eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.', '[redacted]', 1],
  ['JWE (five segments)', 'eyJhbGciOiJSU0EtT0FFUCJ9.a2V5.aXY.Y2lwaGVy.dGFn', '[redacted]', 1],
  ['Bearer in any case', 'BEARER abc Bearer  def', '[redacted] [redacted]', 2],
  ['a bare "Bearer " with nothing after', 'Bearer ', '[redacted]', 1],
  ['two dot-separated segments are not a JWT', 'eyJhbGciOi.eyJzdWIi', 'eyJhbGciOi.eyJzdWIi', 0],
  ['plain text', 'GET /api/items', 'GET /api/items', 0],
];

for (const [name, input, want, count] of SCRUB) {
  test(`scrubSecrets: ${name}`, () => assert.deepEqual(scrubSecrets(input), { value: want, count }));
}

test('scrubRecord returns the same object when clean and a scrubbed copy otherwise', () => {
  const clean = { a: 'x', b: ['y'], c: 1 };
  assert.equal(scrubRecord(clean).record, clean);
  const dirty = { a: `Bearer ${JWT}`, b: ['ok', JWT], c: 1 };
  const out = scrubRecord(dirty);
  assert.deepEqual(out, { record: { a: '[redacted]', b: ['ok', '[redacted]'], c: 1 }, count: 2 });
  assert.equal(dirty.a, `Bearer ${JWT}`, 'the input is not mutated');
});

test('uuidv7: version 7, RFC 9562 variant, time-ordered', () => {
  const a = uuidv7(1_700_000_000_000);
  const b = uuidv7(1_700_000_000_001);
  assert.match(a, /^018bcfe5-6800-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
  assert.ok(a < b);
});

test('uuidv7: ids stay unique and well-formed across refills of the random pool', () => {
  // The random bits come 128 ids at a time; 1000 ids in the same millisecond cross several refills.
  const ids = Array.from({ length: 1000 }, () => uuidv7(1_700_000_000_000));
  assert.equal(new Set(ids).size, ids.length);
  for (const id of ids) assert.match(id, /^018bcfe5-6800-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
});

test('records come out with their members in canonical order, so their canonical form is their JSON', () => {
  const record = buildAuditRecord({
    'user_agent.original': 'curl',
    'event.type': 'denied',
    'event.reason': 'ERR_TOKEN_EXPIRED',
    'client.ip': '10.0.0.1',
    user: { id: 'alice', roles: ['b', 'a'] },
    'jwt.aud': ['x', 'y'],
    'http.response.status_code': 401,
    '@timestamp': NOW,
    tenant: 'team-a',
  });
  const keys = Object.keys(record);
  assert.deepEqual(keys, [...keys].sort());
  assert.ok(keys.includes('event.action') && keys.includes('event.id') && keys.includes('user.roles'));
  assert.equal(canonicalize(record), JSON.stringify(record));
});

test('the text a record is chained with is the canonical form of the record, whatever its values', () => {
  const redactor = createRedactor({ keyId: 'k1', key: Buffer.alloc(32, 7), fields: ['user.id'], emails: true });
  const inputs = [
    { 'event.type': 'allowed' },
    { 'event.type': 'denied', 'user.id': 'quote " backslash \\ newline \n tab \t nul \u0000 del \u007f', 'url.path': '/ä/€/🦊' },
    { 'event.type': 'allowed', 'user.roles': ['a"b', 'c\\d', 'é'], 'jwt.aud': ['x', 'y'], 'event.duration': -0.4, 'jwt.exp': 1e21 },
    { 'event.type': 'allowed', 'user.id': 'lone \ud800 high', 'user.name': '\udc00', 'user_agent.original': 'x'.repeat(5000) },
    { 'event.type': 'allowed', 'url.path': '/cb?access_token=eyJhbGciOi.eyJzdWIi.c2ln', 'user_agent.original': 'Bearer abc' },
    { 'event.type': 'allowed', '@timestamp': '1970-01-01T00:00:00.001Z', 'user.email': 'a@example.com', user: { id: 'nested' } },
  ] as const;
  for (const input of inputs) {
    for (const options of [{}, { redactor }]) {
      const made = prepareAuditRecord(input, options);
      const record = made.record;
      assert.equal(made.canonical, canonicalize(record), JSON.stringify(input));
      assert.equal(made.ts, Date.parse(record['@timestamp']));
    }
  }
});

test('a lone surrogate in a value becomes U+FFFD instead of making the record unwritable', () => {
  const record = buildAuditRecord({ 'event.type': 'allowed', 'user.id': 'a\ud800b', 'user.roles': ['\udfff'] });
  assert.equal(record['user.id'], 'a\ufffdb');
  assert.deepEqual(record['user.roles'], ['\ufffd']);
});

test('timestamps: formatted like toISOString, including across seconds, before 1970 and outside four-digit years', () => {
  for (const ms of [0, 1, 999, 1000, 1_700_000_000_123, 1_700_000_001_000, -1, -1001, 253_402_300_799_999, 253_402_300_800_000, -62_167_219_200_001, 8.64e15, -8.64e15]) {
    assert.equal(isoTime(ms), new Date(ms).toISOString(), String(ms));
  }
  // Out of Date's range, or not a time: the record gets the current time instead of throwing.
  for (const given of [1e20, -1e20, NaN, 'not a date', new Date(NaN)]) {
    const record = buildAuditRecord({ 'event.type': 'allowed', '@timestamp': given as never }, { now: () => 5 });
    assert.equal(record['@timestamp'], '1970-01-01T00:00:00.005Z', String(given));
  }
  assert.equal(buildAuditRecord({ 'event.type': 'allowed', '@timestamp': 1.9 }, { now: () => 5 })['@timestamp'], '1970-01-01T00:00:00.001Z');
});

test('every allowlisted field survives the builder with a value of its kind', () => {
  const sample: Record<string, unknown> = {};
  for (const [name, kind] of Object.entries(AUDIT_FIELDS)) {
    sample[name] = { timestamp: NOW, string: 's', 'long-string': 'l', integer: 1, decision: 'allowed', 'string-list': ['x'], 'string-or-list': 'y' }[kind];
  }
  const record = buildAuditRecord(sample as never);
  assert.deepEqual(Object.keys(record).sort(), [...Object.keys(AUDIT_FIELDS), 'event.action'].sort());
});
