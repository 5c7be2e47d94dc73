/**
 * The local spool: where the writer puts batches while the store cannot take them.
 *
 * - One append-only JSONL file per chain, `<chain_id>.spool.jsonl`, one already-chained batch (records with
 *   seq and hash, checkpoints signed) per line. Each line is written with one `write` and then `fdatasync`ed
 *   before the batch counts as persisted; a failed write is cut back off so the file never holds half a line
 *   followed by more lines.
 * - Replay walks the files in chain-id order (UUIDv7: oldest chain first) and appends each line to the store
 *   in idempotent mode, so a batch that reached the store before a crash (commit done, acknowledgement or
 *   unlink lost) is recognised by its (chain_id, seq) and skipped, never written twice: exactly once.
 * - A file fully replayed is deleted. A torn LAST line (the process died inside a write) was never
 *   acknowledged and is skipped; a bad line anywhere else stops replay with `ERR_AUDIT_SPOOL_CORRUPT` and the
 *   file is kept for an operator.
 * - Files left by an earlier process (killed, or closed while the store was down) are picked up at start, so
 *   a restart recovers them.
 *
 * The spool directory must belong to one proxy instance (like a WAL directory): two live instances sharing it
 * would replay each other's files while they are still being written.
 */
import { createReadStream } from 'node:fs';
import { mkdir, open, readdir, stat, unlink } from 'node:fs/promises';
import type { FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import type { ChainEntry } from './chain.ts';
import type { Checkpoint } from './checkpoint.ts';
import { AuditError } from './errors.ts';
import type { AppendBatch, AuditStore } from './store.ts';

export const SPOOL_SUFFIX = '.spool.jsonl';

export interface SpoolOptions {
  readonly dir: string;
  /** Upper bound on the bytes of all spool files together; a batch that would cross it is refused. */
  readonly maxBytes: number;
  /** The writer's own chain: its file is replayed last and is the one appended to. */
  readonly chainId: string;
}

export interface ReplayProgress {
  readonly file: string;
  readonly records: number;
  readonly checkpoints: number;
  readonly duplicates: number;
}

export interface Spool {
  readonly dir: string;
  /** Bytes currently held in spool files. */
  readonly bytes: number;
  /** True when nothing waits for replay. */
  readonly isEmpty: boolean;
  /**
   * Appends one batch durably. Resolves false (and writes nothing) when the batch would cross `maxBytes` or the
   * disk refuses it; the reason goes to `onError` when given.
   */
  append(batch: AppendBatch, onError?: (error: unknown) => void): Promise<boolean>;
  /**
   * Replays every pending file into `store` in order, deleting each file once fully replayed.
   *
   * @throws the store's error when it fails (progress so far is kept; the next replay resumes),
   *   AuditError `ERR_AUDIT_SPOOL_CORRUPT` or `ERR_AUDIT_CONFLICT`.
   */
  replay(store: AuditStore, onProgress?: (progress: ReplayProgress) => void): Promise<void>;
  close(): Promise<void>;
}

interface SpoolFile {
  readonly path: string;
  size: number;
  /** Bytes already replayed into the store (resume point). */
  replayed: number;
}

/** Opens (creating, mode 0700) the spool directory and finds files left by earlier processes. */
export async function openSpool(options: SpoolOptions): Promise<Spool> {
  if (!(options.maxBytes > 0)) throw new AuditError('ERR_AUDIT_OPTIONS_INVALID', 'spool.maxBytes must be positive');
  await mkdir(options.dir, { recursive: true, mode: 0o700 });
  const ownPath = join(options.dir, options.chainId + SPOOL_SUFFIX);
  const files: SpoolFile[] = [];
  for (const name of (await readdir(options.dir)).sort()) {
    if (!name.endsWith(SPOOL_SUFFIX)) continue;
    const path = join(options.dir, name);
    if (path === ownPath) continue;
    const info = await stat(path);
    if (info.isFile()) files.push({ path, size: info.size, replayed: 0 });
  }
  let own: SpoolFile | undefined;
  let handle: FileHandle | undefined;
  const total = (): number => files.reduce((sum, f) => sum + f.size, 0) + (own?.size ?? 0);

  async function syncDir(): Promise<void> {
    // A new file's directory entry must be durable too, or a power cut could lose the whole file.
    const dir = await open(options.dir, 'r');
    try {
      await dir.sync();
    } finally {
      await dir.close();
    }
  }

  async function replayFile(file: SpoolFile, store: AuditStore, onProgress?: (p: ReplayProgress) => void): Promise<void> {
    const stream = createReadStream(file.path, { encoding: 'utf8', start: file.replayed });
    const lines = createInterface({ input: stream, crlfDelay: Infinity });
    let offset = file.replayed;
    try {
      for await (const line of lines) {
        const length = Buffer.byteLength(line, 'utf8');
        const complete = offset + length + 1 <= file.size;
        let batch: AppendBatch;
        try {
          batch = parseBatch(line);
        } catch (cause) {
          if (!complete) {
            // A torn last line: the process died inside the write, the batch was never acknowledged.
            offset = file.size;
            break;
          }
          throw new AuditError('ERR_AUDIT_SPOOL_CORRUPT', `${file.path}: unreadable batch at byte ${offset}`, { cause });
        }
        const result = await store.append(batch, { idempotent: true });
        offset += length + 1;
        file.replayed = Math.min(offset, file.size);
        onProgress?.({ file: file.path, records: batch.entries.length, checkpoints: batch.checkpoints.length, duplicates: result.duplicates });
      }
    } finally {
      lines.close();
      stream.destroy();
    }
  }

  return {
    dir: options.dir,
    get bytes() {
      return total();
    },
    get isEmpty() {
      return files.length === 0 && (own === undefined || own.size === 0);
    },

    async append(batch, onError) {
      const line = JSON.stringify(toSpoolJson(batch)) + '\n';
      const bytes = Buffer.byteLength(line, 'utf8');
      if (total() + bytes > options.maxBytes) return false;
      const before = own?.size ?? 0;
      try {
        if (handle === undefined) {
          handle = await open(ownPath, 'a', 0o600);
          own = { path: ownPath, size: (await handle.stat()).size, replayed: 0 };
          await syncDir();
        }
        await handle.write(line);
        await handle.datasync();
        own!.size += bytes;
        return true;
      } catch (error) {
        onError?.(error);
        // Cut a partial write back off so the next line starts on a line boundary.
        await handle?.truncate(before).catch(() => {});
        if (own !== undefined) own.size = before;
        return false;
      }
    },

    async replay(store, onProgress) {
      while (files.length > 0) {
        const file = files[0]!;
        await replayFile(file, store, onProgress);
        await unlink(file.path);
        files.shift();
      }
      if (own !== undefined && own.size > own.replayed) {
        await replayFile(own, store, onProgress);
      }
      if (own !== undefined && own.replayed >= own.size) {
        await handle?.close();
        handle = undefined;
        await unlink(own.path).catch(() => {});
        own = undefined;
      }
    },

    async close() {
      await handle?.close();
      handle = undefined;
    },
  };
}

/** The JSON form of a batch in a spool line. */
function toSpoolJson(batch: AppendBatch): object {
  return { v: 1, chains: batch.chains ?? [], entries: batch.entries, checkpoints: batch.checkpoints };
}

function parseBatch(line: string): AppendBatch {
  const value = JSON.parse(line) as { v?: unknown; chains?: unknown; entries?: unknown; checkpoints?: unknown };
  if (value.v !== 1 || !Array.isArray(value.entries) || !Array.isArray(value.checkpoints) || !Array.isArray(value.chains)) {
    throw new Error('not a spool batch');
  }
  for (const e of value.entries as ChainEntry[]) {
    if (typeof e.chainId !== 'string' || !Number.isSafeInteger(e.seq) || typeof e.hash !== 'string' || typeof e.record !== 'string') {
      throw new Error('malformed entry');
    }
  }
  for (const c of value.checkpoints as Checkpoint[]) {
    if (typeof c.chainId !== 'string' || !Number.isSafeInteger(c.seq) || typeof c.sig !== 'string') throw new Error('malformed checkpoint');
  }
  return value as AppendBatch;
}
