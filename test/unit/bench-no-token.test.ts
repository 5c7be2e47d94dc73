/**
 * The bench's `missing` scenario measures a 401 without any signature check, the floor under the `invalid`
 * scenario's refusals. It means that only if its requests really carry no Authorization header, and every
 * other scenario's requests still carry their token.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createDriver } from '../../bench/lib/drive.ts';
import { writeWrkScript } from '../../bench/lib/wrk.ts';
import { NO_TOKEN, SCENARIOS, authHeaders, selectScenarios } from '../../bench/lib/scenarios.ts';

test('the missing scenario sends no token and expects 401; it is part of "all", not of the default set', () => {
  const [missing] = selectScenarios('missing');
  assert.equal(missing!.tokens, 'none');
  assert.equal(missing!.expect, 401);
  assert.ok(selectScenarios('all').some((s) => s.id === 'missing'));
  assert.ok(!selectScenarios('default').some((s) => s.id === 'missing'));
  assert.equal(SCENARIOS.filter((s) => s.tokens === 'none').length, 1);
});

test('authHeaders: no header for NO_TOKEN, a bearer header for a token', () => {
  assert.deepEqual(authHeaders(NO_TOKEN), {});
  assert.deepEqual(authHeaders('a.b.c'), { authorization: 'Bearer a.b.c' });
});

test('the request driver sends NO_TOKEN as a request without Authorization', async () => {
  const seen: (string | undefined)[] = [];
  const server = createServer((req, res) => {
    seen.push(req.headers.authorization);
    res.statusCode = req.headers.authorization === undefined ? 401 : 200;
    res.end();
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const driver = createDriver((server.address() as AddressInfo).port, '/');
  try {
    const statuses = await driver.send([NO_TOKEN, 'a.b.c', NO_TOKEN]);
    assert.deepEqual(statuses, { '401': 2, '200': 1 });
    assert.deepEqual(seen.sort(), ['Bearer a.b.c', undefined, undefined]);
  } finally {
    driver.close();
    server.close();
  }
});

test("wrk's script leaves the Authorization line out for a NO_TOKEN line, and only for it", () => {
  const dir = mkdtempSync(join(tmpdir(), 'portcullis-wrk-script-'));
  try {
    const script = readFileSync(writeWrkScript(dir), 'utf8');
    assert.ok(script.includes(`if line ~= "${NO_TOKEN}" then auth = "Authorization: Bearer " .. line .. "\\r\\n" end`));
    assert.ok(script.includes('Accept: */*\\r\\n" .. auth .. "\\r\\n"'));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
