/**
 * Exports from an audit store as JSONL, one object per line, each with a `type`:
 *
 *   {"type":"prune","chain_id":...,"through_seq":...,"last_hash":...,"time":...,"kid":...,"sig":...}
 *   {"type":"record","chain_id":...,"seq":...,"prev_hash":...,"hash":...,"ts":...,"record":{...}}
 *   {"type":"checkpoint","chain_id":...,"seq":...,"head_hash":...,...,"sig":...}
 *
 * Prune statements come first, then records in seq order, each checkpoint right after the record it signs.
 * `record` is the stored JSON parsed (its canonical form is what was hashed, so re-serialising is harmless).
 * Checkpoint lines are anchor lines: an export file can be passed to `verify --anchors`.
 */
import { open } from 'node:fs/promises';
import type { FileHandle } from 'node:fs/promises';
import { checkpointToJson, pruneToJson } from './checkpoint.ts';
import type { Checkpoint } from './checkpoint.ts';
import type { AuditStore, SeqRange, StoredEntry } from './store.ts';

export interface ExportSegmentOptions extends SeqRange {
  readonly store: AuditStore;
  readonly chainId: string;
  /** The file to write; refused when it exists (an export is evidence, never overwritten). */
  readonly out: string;
}

export interface ExportResult {
  readonly records: number;
  readonly checkpoints: number;
  readonly prunes: number;
}

/** The export line object of a stored record. */
export function recordToJson(entry: StoredEntry): Record<string, unknown> {
  let record: unknown;
  try {
    record = JSON.parse(entry.record);
  } catch {
    // Keep what is stored, verbatim, rather than drop it: an export of a damaged store is evidence too.
    record = entry.record;
  }
  return { type: 'record', chain_id: entry.chainId, seq: entry.seq, prev_hash: entry.prevHash, hash: entry.hash, ts: entry.ts, record };
}

/** Buffered line writer over a file handle: fsynced before close, since prune deletes after exporting. */
async function openJsonl(path: string): Promise<{ line(value: unknown): Promise<void>; close(): Promise<void> }> {
  const handle: FileHandle = await open(path, 'wx', 0o640);
  let buffer = '';
  const flush = async (): Promise<void> => {
    if (buffer === '') return;
    const text = buffer;
    buffer = '';
    await handle.write(text);
  };
  return {
    async line(value) {
      buffer += JSON.stringify(value) + '\n';
      if (buffer.length >= 1 << 16) await flush();
    },
    async close() {
      try {
        await flush();
        await handle.datasync();
      } finally {
        await handle.close();
      }
    },
  };
}

/**
 * Writes one chain's records (default: all) with their checkpoints and prune statements, streaming.
 *
 * @example await exportSegment({ store, chainId, fromSeq: 1, toSeq: 5000, out: 'archive/chain-1-5000.jsonl' })
 */
export async function exportSegment(options: ExportSegmentOptions): Promise<ExportResult> {
  const { store, chainId } = options;
  const range: SeqRange = {
    ...(options.fromSeq === undefined ? {} : { fromSeq: options.fromSeq }),
    ...(options.toSeq === undefined ? {} : { toSeq: options.toSeq }),
  };
  const out = await openJsonl(options.out);
  let records = 0;
  let checkpoints = 0;
  let prunes = 0;
  try {
    for (const p of await store.prunes(chainId)) {
      await out.line(pruneToJson(p));
      prunes++;
    }
    const cps = store.checkpoints(chainId, range)[Symbol.asyncIterator]();
    let cp: Checkpoint | undefined = await next(cps);
    for await (const entry of store.entries(chainId, range)) {
      while (cp !== undefined && cp.seq < entry.seq) {
        await out.line(checkpointToJson(cp));
        checkpoints++;
        cp = await next(cps);
      }
      await out.line(recordToJson(entry));
      records++;
      while (cp !== undefined && cp.seq === entry.seq) {
        await out.line(checkpointToJson(cp));
        checkpoints++;
        cp = await next(cps);
      }
    }
    while (cp !== undefined) {
      await out.line(checkpointToJson(cp));
      checkpoints++;
      cp = await next(cps);
    }
  } finally {
    await out.close();
  }
  return { records, checkpoints, prunes };
}

/**
 * Writes every checkpoint of the store (or of one chain) as anchor lines, to keep outside the store.
 *
 * @returns the number of checkpoints written
 */
export async function exportAnchors(options: { readonly store: AuditStore; readonly out: string; readonly chainId?: string }): Promise<number> {
  const out = await openJsonl(options.out);
  let n = 0;
  try {
    const chains = options.chainId !== undefined ? [options.chainId] : options.store.chainIds();
    for await (const chainId of chains) {
      for await (const cp of options.store.checkpoints(chainId)) {
        await out.line(checkpointToJson(cp));
        n++;
      }
    }
  } finally {
    await out.close();
  }
  return n;
}

async function next<T>(iterator: AsyncIterator<T>): Promise<T | undefined> {
  const r = await iterator.next();
  return r.done ? undefined : r.value;
}
