/**
 * The entry hash: its exact byte layout (recomputed here with node:crypto, independently of the code under
 * test), that length-prefixing keeps neighbouring fields from trading bytes, and the chain builder's links.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { canonicalize } from '../../src/audit/canonical.ts';
import { AUDIT_HASH_DOMAIN, GENESIS_HASH, computeEntryHash, createChainBuilder, timestampOf } from '../../src/audit/chain.ts';

function lp(text: string): Buffer {
  const bytes = Buffer.from(text, 'utf8');
  const len = Buffer.alloc(4);
  len.writeUInt32BE(bytes.length);
  return Buffer.concat([len, bytes]);
}

test('hash = SHA-256(lp(domain) || lp(chain_id) || u64be(seq) || lp(prev_hash) || lp(canonical record))', () => {
  const chainId = '0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b';
  const record = canonicalize({ '@timestamp': '2025-01-01T00:00:00.000Z', 'user.id': 'alice' });
  const seq = Buffer.alloc(8);
  seq.writeBigUInt64BE(7n);
  const want = createHash('sha256')
    .update(Buffer.concat([lp('portcullis.audit.v1'), lp(chainId), seq, lp(GENESIS_HASH), lp(record)]))
    .digest('hex');
  assert.equal(AUDIT_HASH_DOMAIN, 'portcullis.audit.v1');
  assert.equal(computeEntryHash(chainId, 7, GENESIS_HASH, record), want);
  assert.match(want, /^[0-9a-f]{64}$/);
});

test('the hash is taken over UTF-8 bytes, lengths counted in bytes, also for non-ASCII ids and records', () => {
  const seq = Buffer.alloc(8);
  seq.writeBigUInt64BE(3n);
  for (const [chainId, prev, record] of [
    ['chaîne-ü', GENESIS_HASH, canonicalize({ 'user.name': 'Zoë 🦊', path: '/ä/€' })],
    ['c', 'prév', '{"a":"\u0000"}'],
    ['0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b', 'f'.repeat(64), ''],
    // A lone surrogate: every encoder here writes U+FFFD (3 bytes) for it, and the length must agree.
    ['c2', GENESIS_HASH, '{"a":"\ud800"}'],
  ] as const) {
    const want = createHash('sha256')
      .update(Buffer.concat([lp('portcullis.audit.v1'), lp(chainId), seq, lp(prev), lp(record)]))
      .digest('hex');
    assert.equal(computeEntryHash(chainId, 3, prev, record), want, `${chainId} ${prev} ${record}`);
  }
  // Alternating chains: the cached prefix of one chain is never used for another.
  const a = computeEntryHash('chain-a', 1, GENESIS_HASH, '{}');
  const b = computeEntryHash('chain-b', 1, GENESIS_HASH, '{}');
  assert.notEqual(a, b);
  assert.equal(computeEntryHash('chain-a', 1, GENESIS_HASH, '{}'), a);
});

test('records larger than the hash buffer, then smaller ones, and seqs past 32 bits hash as specified', () => {
  const chainId = '0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b';
  for (const [seq, record] of [
    [1, JSON.stringify({ q: 'ü€🦊'.repeat(3000) })],
    [2, '{"a":1}'],
    [2 ** 32 + 5, JSON.stringify({ q: 'x'.repeat(9000) })],
    [Number.MAX_SAFE_INTEGER, '{}'],
  ] as const) {
    const seqBytes = Buffer.alloc(8);
    seqBytes.writeBigUInt64BE(BigInt(seq));
    const want = createHash('sha256')
      .update(Buffer.concat([lp('portcullis.audit.v1'), lp(chainId), seqBytes, lp(GENESIS_HASH), lp(record)]))
      .digest('hex');
    assert.equal(computeEntryHash(chainId, seq, GENESIS_HASH, record), want, `seq ${seq}, ${record.length} code units`);
  }
  for (const bad of [-1, 1.5, 2 ** 53]) assert.throws(() => computeEntryHash(chainId, bad, GENESIS_HASH, '{}'), RangeError);
});

test('every input changes the hash, and shifting bytes between fields does not collide', () => {
  const base = computeEntryHash('chain-a', 1, GENESIS_HASH, '{"a":1}');
  const variants = [
    computeEntryHash('chain-b', 1, GENESIS_HASH, '{"a":1}'),
    computeEntryHash('chain-a', 2, GENESIS_HASH, '{"a":1}'),
    computeEntryHash('chain-a', 1, '1'.repeat(64), '{"a":1}'),
    computeEntryHash('chain-a', 1, GENESIS_HASH, '{"a":2}'),
    // Without length prefixes these two would feed identical bytes: "chain-a" + "X{..." vs "chain-aX" + "{...".
    computeEntryHash('chain-aX', 1, GENESIS_HASH, '{"a":1}'),
  ];
  assert.equal(new Set([base, ...variants]).size, variants.length + 1);
  assert.notEqual(computeEntryHash('ab', 1, 'c', 'd'), computeEntryHash('a', 1, 'bc', 'd'));
});

test('the builder links each entry to the previous hash and can be rolled back', () => {
  const chain = createChainBuilder('c1');
  const first = chain.append({ '@timestamp': '2025-01-01T00:00:00.000Z', n: 1 });
  const second = chain.append({ n: 2 });
  assert.deepEqual([first.seq, first.prevHash], [1, GENESIS_HASH]);
  assert.deepEqual([second.seq, second.prevHash], [2, first.hash]);
  assert.equal(first.ts, Date.parse('2025-01-01T00:00:00.000Z'));
  assert.equal(second.ts, 0, 'no @timestamp: ts 0');
  assert.equal(first.hash, computeEntryHash('c1', 1, GENESIS_HASH, first.record));
  assert.equal(first.record, '{"@timestamp":"2025-01-01T00:00:00.000Z","n":1}');
  const mark = chain.head;
  const dropped = chain.append({ n: 3 });
  chain.reset(mark);
  const again = chain.append({ n: 3 });
  assert.deepEqual([again.seq, again.hash], [dropped.seq, dropped.hash]);
  assert.throws(() => chain.append({ bad: NaN }), { code: 'ERR_AUDIT_CANONICAL_INVALID' });
  assert.equal(chain.head.seq, 3, 'a refused record does not advance the chain');
});

test('timestampOf reads @timestamp in epoch ms', () => {
  assert.equal(timestampOf({ '@timestamp': '1970-01-01T00:00:01.000Z' }), 1000);
  assert.equal(timestampOf({ '@timestamp': 'yesterday' }), 0);
  assert.equal(timestampOf({}), 0);
});
