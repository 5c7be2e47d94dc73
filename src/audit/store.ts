/**
 * The one interface both audit stores (SQLite, PostgreSQL) implement.
 *
 * Tables (same names and columns in both):
 *   audit_chains      (n, chain_id UNIQUE, started_at)                    the chain registry, insertion-ordered
 *   audit_records     (id, chain_id, seq, ts, prev_hash, hash, record)   UNIQUE (chain_id, seq); record = canonical JSON text
 *   audit_checkpoints (id, chain_id, seq, head_hash, time, requests_seen, records_lost, is_final, kid, sig)  UNIQUE (chain_id, seq)
 *   audit_prunes      (id, chain_id, through_seq, last_hash, time, kid, sig)  UNIQUE (chain_id, through_seq)
 *
 * Every table is append-only (UPDATE/DELETE/TRUNCATE refused by triggers); only prune deletes, through a
 * guarded path. Reading is by keyset pagination (`WHERE (seq, id) > (last) ORDER BY seq, id LIMIT page`), so a
 * walk over millions of rows holds one page in memory and no long-lived cursor or read transaction. The
 * `id` tiebreak keeps the walk exact even when the unique key was dropped and a seq duplicated.
 */
import type { ChainEntry } from './chain.ts';
import { AuditError } from './errors.ts';
import type { Checkpoint, PruneStatement } from './checkpoint.ts';

/** Rows fetched per round trip when walking. */
export const STORE_PAGE_SIZE = 1000;

/** A chain's registration, written with its first record. */
export interface ChainRegistration {
  readonly chainId: string;
  readonly startedAt: string;
}

/** What one `append` commits, atomically. */
export interface AppendBatch {
  readonly chains?: readonly ChainRegistration[];
  readonly entries: readonly ChainEntry[];
  readonly checkpoints: readonly Checkpoint[];
}

export interface AppendOptions {
  /**
   * Replay mode: a row whose (chain_id, seq) already exists is skipped when it is identical (same hash /
   * signature) — it was committed before and the acknowledgement was lost — and refused with
   * `ERR_AUDIT_CONFLICT` when it differs. Without it a duplicate is an error like any other.
   */
  readonly idempotent?: boolean;
}

export interface AppendResult {
  /** Records and checkpoints inserted. */
  readonly inserted: number;
  /** Identical rows skipped (idempotent mode only). */
  readonly duplicates: number;
}

/** What one `prune` deleted. */
export interface PruneResult {
  readonly records: number;
  readonly checkpoints: number;
}

export interface SeqRange {
  /** Inclusive; default 1. */
  readonly fromSeq?: number;
  /** Inclusive; default unbounded. */
  readonly toSeq?: number;
}

export interface TimeRange {
  /** Epoch ms, inclusive. */
  readonly fromTs?: number;
  /** Epoch ms, exclusive. */
  readonly toTs?: number;
}

/** The newest registered chain and its newest record, for a new chain to witness. */
export interface ChainTip {
  readonly chainId: string;
  /** 0 when the chain has no record. */
  readonly seq: number;
  readonly hash: string;
}

/** A stored entry with its row id (keyset tiebreak, never part of any hash). */
export interface StoredEntry extends ChainEntry {
  readonly id: number;
}

export interface AuditStore {
  readonly kind: 'sqlite' | 'postgres';
  /** Where the store is, without credentials (for logs and messages). */
  readonly location: string;
  /** Creates or migrates the schema (idempotent, safe to run from several instances at once). */
  init(): Promise<void>;
  /** Commits chain registrations, records and checkpoints in ONE transaction: all or nothing. */
  append(batch: AppendBatch, options?: AppendOptions): Promise<AppendResult>;
  /** Every chain id present in any table, ascending, streamed. */
  chainIds(): AsyncIterable<string>;
  /** A chain's records in (seq, id) order, streamed in pages. */
  entries(chainId: string, range?: SeqRange): AsyncIterable<StoredEntry>;
  /** A chain's checkpoints in seq order, streamed in pages. */
  checkpoints(chainId: string, range?: SeqRange): AsyncIterable<Checkpoint>;
  /** A chain's prune statements, through_seq ascending (few: one per prune run). */
  prunes(chainId: string): Promise<PruneStatement[]>;
  /** The record at (chainId, seq) (the lowest id when duplicated). */
  entryAt(chainId: string, seq: number): Promise<StoredEntry | undefined>;
  /** True when any table mentions the chain. */
  hasChain(chainId: string): Promise<boolean>;
  /** The most recently registered chain and its newest record, or undefined for an empty store. */
  latestChain(): Promise<ChainTip | undefined>;
  /** Records in (ts, id) order within a time range, across chains, streamed (for query). */
  scan(range: TimeRange & { readonly chainId?: string }): AsyncIterable<StoredEntry>;
  /**
   * Stores the prune statement and deletes records 1..throughSeq and checkpoints before throughSeq of its
   * chain, in one transaction. The store refuses unless a checkpoint at throughSeq has head = lastHash.
   */
  prune(statement: PruneStatement): Promise<PruneResult>;
  close(): Promise<void>;
}

/** The schema both stores create; a store of another version is refused rather than misread. */
export const SCHEMA_VERSION = '1';

/** @throws AuditError ERR_AUDIT_SCHEMA_VERSION for a store without, or with another, schema version. */
export function checkVersion(version: string | undefined): void {
  if (version === undefined) throw new AuditError('ERR_AUDIT_SCHEMA_VERSION', 'not a Portcullis audit store (no schema version)');
  if (version !== SCHEMA_VERSION) {
    throw new AuditError('ERR_AUDIT_SCHEMA_VERSION', `audit store schema version ${version} is not supported (this build knows ${SCHEMA_VERSION})`);
  }
}

/** A row that differs from one already stored at the same (chain, seq): never overwritten. */
export function conflict(chainId: string, seq: number, what: string): AuditError {
  return new AuditError('ERR_AUDIT_CONFLICT', `a different ${what} already exists at chain ${chainId} seq ${seq}`);
}
