/**
 * The hash chain: one per writer (per proxy instance lifetime), `chain_id` minted at start, `seq` from 1.
 *
 *   hash = SHA-256( lp("portcullis.audit.v1") || lp(chain_id) || u64be(seq) || lp(prev_hash) || lp(canonical JSON) )
 *
 * where `lp(x)` is a 4-byte big-endian length followed by the UTF-8 bytes of `x`, and `prev_hash` is the
 * previous entry's hash as 64 lowercase hex characters (64 zeros for seq 1). Length-prefixing every variable
 * field makes the encoding injective: no two different (chain_id, seq, prev_hash, record) tuples feed the hash
 * the same bytes, so no field can borrow bytes from its neighbour. The domain tag keeps these hashes from ever
 * colliding with another protocol's SHA-256 over similar bytes, and names the version.
 */
import { hash } from 'node:crypto';
import { canonicalize } from './canonical.ts';
import type { ChainRecord } from './record.ts';

/** Domain separation tag and format version of entry hashes. */
export const AUDIT_HASH_DOMAIN = 'portcullis.audit.v1';

/** `prev_hash` of seq 1. */
export const GENESIS_HASH = '0'.repeat(64);

/** One link of a chain, as appended to a store. `record` is the canonical JSON that was hashed. */
export interface ChainEntry {
  readonly chainId: string;
  readonly seq: number;
  readonly prevHash: string;
  readonly hash: string;
  /** `@timestamp` of the record in epoch ms (an index column for time-range queries; verify checks it). */
  readonly ts: number;
  readonly record: string;
}

/**
 * The hash input is assembled in one buffer and hashed in one call: per record, that is a third of the cost
 * of a streaming Hash with an update per part. Reused across calls (hashing is synchronous); it grows to
 * the largest record seen, which the record's field bounds limit.
 */
let scratch = Buffer.allocUnsafe(4096);

/**
 * The entry hash (lowercase hex) over already-canonical record JSON: SHA-256 over the domain, chain id, seq
 * (8 bytes, big-endian), previous hash and record, each text part as its UTF-8 bytes after a 4-byte
 * big-endian byte length.
 *
 * @example computeEntryHash(chainId, 1, GENESIS_HASH, canonicalize(record))
 */
export function computeEntryHash(chainId: string, seq: number, prevHash: string, canonicalRecord: string): string {
  if (!Number.isSafeInteger(seq) || seq < 0) throw new RangeError(`seq must be a non-negative safe integer, got ${seq}`);
  // UTF-8 takes at most 3 bytes per UTF-16 code unit.
  const most = 4 * 4 + 8 + 3 * (AUDIT_HASH_DOMAIN.length + chainId.length + prevHash.length + canonicalRecord.length);
  if (scratch.length < most) scratch = Buffer.allocUnsafe(most);
  const buf = scratch;
  let at = putText(buf, 0, AUDIT_HASH_DOMAIN);
  at = putText(buf, at, chainId);
  buf.writeUInt32BE(Math.floor(seq / 2 ** 32), at);
  buf.writeUInt32BE(seq >>> 0, at + 4);
  at = putText(buf, at + 8, prevHash);
  at = putText(buf, at, canonicalRecord);
  return hash('sha256', buf.subarray(0, at), 'hex');
}

/** Writes `text` as a 4-byte big-endian byte length and its UTF-8 bytes at `at`; returns the next offset. */
function putText(buf: Buffer, at: number, text: string): number {
  const n = buf.write(text, at + 4);
  buf.writeUInt32BE(n, at);
  return at + 4 + n;
}

/** `@timestamp` in epoch ms, or 0 when absent or unparsable (system records always carry one). */
export function timestampOf(record: object): number {
  const ts = (record as { readonly '@timestamp'?: unknown })['@timestamp'];
  if (typeof ts !== 'string') return 0;
  const ms = Date.parse(ts);
  return Number.isFinite(ms) ? ms : 0;
}

/** The running head of a chain. */
export interface ChainHead {
  readonly chainId: string;
  /** Seq of the last entry (0 before the first). */
  readonly seq: number;
  readonly hash: string;
}

/** A chain being extended; `append` is pure bookkeeping, nothing is written anywhere. */
export interface ChainBuilder {
  readonly head: ChainHead;
  /** Links `record` after the head and advances it. */
  append(record: ChainRecord): ChainEntry;
  /** The same for a record already in canonical form, with its `@timestamp` in epoch ms. */
  appendCanonical(canonical: string, ts: number): ChainEntry;
  /** Moves the head back (the batch holding those entries could not be persisted). */
  reset(head: ChainHead): void;
}

/** Starts (or, with `head`, continues) a chain. */
export function createChainBuilder(chainId: string, head?: { seq: number; hash: string }): ChainBuilder {
  let seq = head?.seq ?? 0;
  let hash = head?.hash ?? GENESIS_HASH;
  return {
    get head() {
      return { chainId, seq, hash };
    },
    append(record) {
      return this.appendCanonical(canonicalize(record), timestampOf(record));
    },
    appendCanonical(canonical, ts) {
      const next = seq + 1;
      const entry: ChainEntry = { chainId, seq: next, prevHash: hash, hash: computeEntryHash(chainId, next, hash, canonical), ts, record: canonical };
      seq = next;
      hash = entry.hash;
      return entry;
    },
    reset(to) {
      seq = to.seq;
      hash = to.hash;
    },
  };
}
