/**
 * Generated request ids are well-formed UUIDv8 (RFC 9562) and never repeat within a process.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { newRequestId } from '../../src/rewrite/headers.ts';

test('request ids are RFC 9562 version 8, variant 10, and distinct', () => {
  const ids = Array.from({ length: 10_000 }, () => newRequestId());
  for (const id of ids.slice(0, 100)) assert.match(id, /^[0-9a-f]{8}-[0-9a-f]{4}-8[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
  assert.equal(new Set(ids).size, ids.length);
  assert.ok(ids[1]! > ids[0]!, 'ordered within a process');
});
