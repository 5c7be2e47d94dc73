import { test } from 'node:test';
import assert from 'node:assert/strict';
import { normalizeRequestTarget } from '../../src/routing/normalize-path.ts';
import { ProxyError } from '../../src/errors.ts';

const cases: Array<[string, string, string]> = [
  ['/a/b', '/a/b', ''],
  ['/a/b?x=1&y', '/a/b', 'x=1&y'],
  ['//a///b', '/a/b', ''],
  ['/public/../admin', '/admin', ''],
  ['/public/./x', '/public/x', ''],
  ['/a/b/..', '/a/', ''],
  ['/..', '/', ''],
  ['/../../etc/passwd', '/etc/passwd', ''],
  ['/%70ublic/x', '/public/x', ''],
  ['/public/%2e%2e/admin', '/admin', ''],
  ['/a%20b', '/a%20b', ''],
  ['/a%3fb?q', '/a%3Fb', 'q'],
  ['/a#frag', '/a', ''],
];

test('paths are normalised before routing (RFC 3986 §5.2.4, §6.2.2)', () => {
  for (const [input, path, query] of cases) {
    assert.deepEqual(normalizeRequestTarget(input), { path, query }, input);
  }
});

test('encoded slashes, backslashes, bad escapes and non-origin forms are refused', () => {
  for (const input of ['/a%2fb', '/a%2Fb', '/a%5cb', '/a\\b', '/a%zz', '/a%2', 'http://evil/a', '*']) {
    assert.throws(() => normalizeRequestTarget(input), (e: unknown) => e instanceof ProxyError && e.code === 'ERR_REQUEST_INVALID', input);
  }
});
