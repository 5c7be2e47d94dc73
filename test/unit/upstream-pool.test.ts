import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { UpstreamConfig } from '../../src/config/types.ts';
import { createUpstream } from '../../src/upstream/pool.ts';

function config(targets: string[]): UpstreamConfig {
  return { id: 'up', targets, connectTimeoutMs: 1000, timeoutMs: 1000, bodyTimeoutMs: 1000, connections: 4 };
}

describe('createUpstream', () => {
  test('next() goes round robin over the targets and wraps', async () => {
    const upstream = createUpstream(
      config(['http://127.0.0.1:1001', 'http://127.0.0.1:1002', 'http://127.0.0.1:1003']),
    );
    try {
      const seen = Array.from({ length: 7 }, () => upstream.next().origin);
      assert.deepEqual(seen, [
        'http://127.0.0.1:1001',
        'http://127.0.0.1:1002',
        'http://127.0.0.1:1003',
        'http://127.0.0.1:1001',
        'http://127.0.0.1:1002',
        'http://127.0.0.1:1003',
        'http://127.0.0.1:1001',
      ]);
      assert.equal(upstream.id, 'up');
    } finally {
      await upstream.close();
    }
  });

  test('each target keeps its own pool', async () => {
    const upstream = createUpstream(config(['http://127.0.0.1:1001', 'http://127.0.0.1:1002']));
    try {
      const a = upstream.next();
      const b = upstream.next();
      assert.notEqual(a.dispatcher, b.dispatcher);
      assert.equal(upstream.next(), a);
    } finally {
      await upstream.close();
    }
  });

  test('a single target is always returned', async () => {
    const upstream = createUpstream(config(['http://127.0.0.1:1001']));
    try {
      assert.equal(upstream.next(), upstream.next());
    } finally {
      await upstream.close();
    }
  });

  test('origins are normalised', async () => {
    const upstream = createUpstream(config(['http://LOCALHOST:80/', 'https://example.com:8443']));
    try {
      assert.equal(upstream.next().origin, 'http://localhost');
      assert.equal(upstream.next().origin, 'https://example.com:8443');
    } finally {
      await upstream.close();
    }
  });

  const invalid: Array<[string, string[]]> = [
    ['no targets', []],
    ['not a URL', ['127.0.0.1:80']],
    ['not http', ['ftp://127.0.0.1']],
  ];
  for (const [name, targets] of invalid) {
    test(`rejects ${name}`, () => {
      assert.throws(() => createUpstream(config(targets)), TypeError);
    });
  }
});
