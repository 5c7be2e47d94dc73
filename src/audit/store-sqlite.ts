/**
 * The embedded audit store: one SQLite file through `node:sqlite` (DatabaseSync).
 *
 * - WAL journal: readers (verify, query) never block the writer and the writer never blocks them.
 * - `synchronous=FULL`: in WAL mode NORMAL is crash-safe for the process but may lose the last commits on
 *   power loss or an OS crash. An acknowledged audit batch must survive both: the writer deletes its spool once
 *   the store has acknowledged, so a lost commit would be a silent loss. FULL costs one fsync of the WAL per
 *   commit, which batching amortises over hundreds of records.
 * - Guard triggers refuse UPDATE and DELETE on every audit table. Anyone holding the file can drop them (that
 *   is what the tamper tests do); they stop mistakes, and the hash chain plus signed checkpoints catch the rest.
 *   Prune drops and re-creates the two delete guards inside its own transaction (DDL is transactional here).
 *
 * DatabaseSync is synchronous: each call blocks the event loop for the statement's duration. The writer calls it
 * off the request path, once per batch.
 */
import { DatabaseSync } from 'node:sqlite';
import type { StatementSync } from 'node:sqlite';
import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import { GENESIS_HASH } from './chain.ts';
import type { Checkpoint, PruneStatement } from './checkpoint.ts';
import { AuditError } from './errors.ts';
import { createSqliteAppender } from './sqlite-appender.ts';
import { SCHEMA_VERSION, STORE_PAGE_SIZE, checkVersion, conflict } from './store.ts';
import type { AppendBatch, AppendOptions, AppendResult, AuditStore, ChainTip, SeqRange, StoredEntry, TimeRange } from './store.ts';

const MAX_ID = Number.MAX_SAFE_INTEGER;

const TABLES = ['audit_chains', 'audit_records', 'audit_checkpoints', 'audit_prunes'] as const;

const guard = (table: string, op: 'UPDATE' | 'DELETE'): string =>
  `CREATE TRIGGER IF NOT EXISTS ${table}_no_${op.toLowerCase()} BEFORE ${op} ON ${table}
   BEGIN SELECT RAISE(ABORT, 'portcullis audit tables are append-only: ${op} on ${table} refused'); END;`;

const SCHEMA = `
CREATE TABLE IF NOT EXISTS audit_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS audit_chains (
  n INTEGER PRIMARY KEY AUTOINCREMENT,
  chain_id TEXT NOT NULL,
  started_at TEXT NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS audit_chains_chain_id ON audit_chains (chain_id);
CREATE TABLE IF NOT EXISTS audit_records (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  chain_id TEXT NOT NULL,
  seq INTEGER NOT NULL,
  ts INTEGER NOT NULL,
  prev_hash TEXT NOT NULL,
  hash TEXT NOT NULL,
  record TEXT NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS audit_records_chain_seq ON audit_records (chain_id, seq);
CREATE INDEX IF NOT EXISTS audit_records_ts ON audit_records (ts, id);
CREATE TABLE IF NOT EXISTS audit_checkpoints (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  chain_id TEXT NOT NULL,
  seq INTEGER NOT NULL,
  head_hash TEXT NOT NULL,
  time TEXT NOT NULL,
  requests_seen INTEGER NOT NULL,
  records_lost INTEGER NOT NULL,
  is_final INTEGER NOT NULL,
  kid TEXT NOT NULL,
  sig TEXT NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS audit_checkpoints_chain_seq ON audit_checkpoints (chain_id, seq);
CREATE TABLE IF NOT EXISTS audit_prunes (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  chain_id TEXT NOT NULL,
  through_seq INTEGER NOT NULL,
  last_hash TEXT NOT NULL,
  time TEXT NOT NULL,
  kid TEXT NOT NULL,
  sig TEXT NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS audit_prunes_chain_seq ON audit_prunes (chain_id, through_seq);
${TABLES.map((t) => guard(t, 'UPDATE') + guard(t, 'DELETE')).join('\n')}
`;

export interface SqliteStoreOptions {
  /** Open read-only and never create or migrate (verify, query): a wrong path fails instead of making an empty store. */
  readonly readOnly?: boolean;
  /** How long to wait for another process's write lock, ms (default 5000). */
  readonly busyTimeoutMs?: number;
  /**
   * Commit appends and prunes on a worker thread (sqlite-appender.ts) so their fsync never blocks the event
   * loop: for the proxy. Ignored for read-only and in-memory stores (a second connection would see another database).
   */
  readonly appendOffThread?: boolean;
}

interface EntryRow {
  id: number;
  chain_id: string;
  seq: number;
  ts: number;
  prev_hash: string;
  hash: string;
  record: string;
}

interface CheckpointRow {
  chain_id: string;
  seq: number;
  head_hash: string;
  time: string;
  requests_seen: number;
  records_lost: number;
  is_final: number;
  kid: string;
  sig: string;
}

interface PruneRow {
  chain_id: string;
  through_seq: number;
  last_hash: string;
  time: string;
  kid: string;
  sig: string;
}

const toEntry = (r: EntryRow): StoredEntry => ({
  id: r.id,
  chainId: r.chain_id,
  seq: r.seq,
  ts: r.ts,
  prevHash: r.prev_hash,
  hash: r.hash,
  record: r.record,
});

const toCheckpoint = (r: CheckpointRow): Checkpoint => ({
  chainId: r.chain_id,
  seq: r.seq,
  headHash: r.head_hash,
  time: r.time,
  requestsSeen: r.requests_seen,
  recordsLost: r.records_lost,
  final: r.is_final === 1,
  kid: r.kid,
  sig: r.sig,
});

const toPrune = (r: PruneRow): PruneStatement => ({
  chainId: r.chain_id,
  throughSeq: r.through_seq,
  lastHash: r.last_hash,
  time: r.time,
  kid: r.kid,
  sig: r.sig,
});

/**
 * Opens (creating the file and directory when writable) a SQLite audit store at `path`; call `init()` before use.
 *
 * @throws AuditError `ERR_AUDIT_STORE_UNAVAILABLE` when the file cannot be opened.
 */
export function createSqliteStore(path: string, options: SqliteStoreOptions = {}): AuditStore {
  const readOnly = options.readOnly ?? false;
  let db: DatabaseSync;
  try {
    if (!readOnly && path !== ':memory:') mkdirSync(dirname(path), { recursive: true });
    db = new DatabaseSync(path, { readOnly, timeout: options.busyTimeoutMs ?? 5000 });
  } catch (cause) {
    throw new AuditError('ERR_AUDIT_STORE_UNAVAILABLE', `cannot open audit store sqlite:${path}: ${(cause as Error).message}`, { cause });
  }
  const appender =
    options.appendOffThread === true && !readOnly && path !== ':memory:' ? createSqliteAppender(path, options.busyTimeoutMs ?? 5000) : undefined;
  const cache = new Map<string, StatementSync>();
  const stmt = (sql: string): StatementSync => {
    let s = cache.get(sql);
    if (s === undefined) {
      s = db.prepare(sql);
      cache.set(sql, s);
    }
    return s;
  };
  const fail = (what: string, cause: unknown): AuditError =>
    cause instanceof AuditError ? cause : new AuditError('ERR_AUDIT_STORE_UNAVAILABLE', `sqlite:${path}: ${what}: ${(cause as Error).message}`, { cause });

  function transaction<T>(fn: () => T): T {
    db.exec('BEGIN IMMEDIATE');
    try {
      const result = fn();
      db.exec('COMMIT');
      return result;
    } catch (error) {
      if (db.isTransaction) db.exec('ROLLBACK');
      throw error;
    }
  }

  const store: AuditStore = {
    kind: 'sqlite',
    location: `sqlite:${path}`,

    async init() {
      try {
        if (readOnly) {
          const row = db.prepare("SELECT value FROM audit_meta WHERE key = 'schema_version'").get() as { value: string } | undefined;
          checkVersion(row?.value);
          return;
        }
        db.exec('PRAGMA journal_mode = WAL');
        db.exec('PRAGMA synchronous = FULL');
        transaction(() => {
          db.exec(SCHEMA);
          db.prepare("INSERT OR IGNORE INTO audit_meta (key, value) VALUES ('schema_version', ?)").run(SCHEMA_VERSION);
          const row = db.prepare("SELECT value FROM audit_meta WHERE key = 'schema_version'").get() as { value: string } | undefined;
          checkVersion(row?.value);
        });
      } catch (cause) {
        throw fail('init', cause);
      }
    },

    async append(batch: AppendBatch, opts: AppendOptions = {}): Promise<AppendResult> {
      if (appender !== undefined) return appender.append(batch, opts);
      const idempotent = opts.idempotent ?? false;
      const or = idempotent ? 'OR IGNORE ' : '';
      try {
        return transaction(() => {
          let inserted = 0;
          let duplicates = 0;
          // A registration is naturally idempotent: the same chain registered twice is the same fact.
          const reg = stmt('INSERT OR IGNORE INTO audit_chains (chain_id, started_at) VALUES (?, ?)');
          for (const c of batch.chains ?? []) reg.run(c.chainId, c.startedAt);
          const ins = stmt(`INSERT ${or}INTO audit_records (chain_id, seq, ts, prev_hash, hash, record) VALUES (?, ?, ?, ?, ?, ?)`);
          for (const e of batch.entries) {
            if (ins.run(e.chainId, e.seq, e.ts, e.prevHash, e.hash, e.record).changes === 1) inserted++;
            else {
              const existing = stmt('SELECT hash FROM audit_records WHERE chain_id = ? AND seq = ? ORDER BY id LIMIT 1').get(e.chainId, e.seq) as
                | { hash: string }
                | undefined;
              if (existing?.hash !== e.hash) throw conflict(e.chainId, e.seq, 'record');
              duplicates++;
            }
          }
          const cp = stmt(
            `INSERT ${or}INTO audit_checkpoints (chain_id, seq, head_hash, time, requests_seen, records_lost, is_final, kid, sig) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`,
          );
          for (const c of batch.checkpoints) {
            if (cp.run(c.chainId, c.seq, c.headHash, c.time, c.requestsSeen, c.recordsLost, c.final ? 1 : 0, c.kid, c.sig).changes === 1) inserted++;
            else {
              const existing = stmt('SELECT sig FROM audit_checkpoints WHERE chain_id = ? AND seq = ? ORDER BY id LIMIT 1').get(c.chainId, c.seq) as
                | { sig: string }
                | undefined;
              if (existing?.sig !== c.sig) throw conflict(c.chainId, c.seq, 'checkpoint');
              duplicates++;
            }
          }
          return { inserted, duplicates };
        });
      } catch (cause) {
        throw fail('append', cause);
      }
    },

    async *chainIds() {
      let after = '';
      const next = stmt(`SELECT min(c) AS c FROM (
        SELECT min(chain_id) AS c FROM audit_records WHERE chain_id > ?1
        UNION ALL SELECT min(chain_id) FROM audit_checkpoints WHERE chain_id > ?1
        UNION ALL SELECT min(chain_id) FROM audit_chains WHERE chain_id > ?1
        UNION ALL SELECT min(chain_id) FROM audit_prunes WHERE chain_id > ?1)`);
      for (;;) {
        // One index probe per table per chain (a loose index scan), not a DISTINCT over every record.
        let row: { c: string | null } | undefined;
        try {
          row = next.get(after) as { c: string | null } | undefined;
        } catch (cause) {
          throw fail('list chains', cause);
        }
        if (row?.c == null) return;
        after = row.c;
        yield after;
      }
    },

    async *entries(chainId: string, range: SeqRange = {}) {
      let lastSeq = (range.fromSeq ?? 1) - 1;
      let lastId = MAX_ID;
      const toSeq = range.toSeq ?? MAX_ID;
      const page = stmt(`SELECT id, chain_id, seq, ts, prev_hash, hash, record FROM audit_records
        WHERE chain_id = ?1 AND (seq > ?2 OR (seq = ?2 AND id > ?3)) AND seq <= ?4 ORDER BY seq, id LIMIT ?5`);
      for (;;) {
        let rows: EntryRow[];
        try {
          rows = page.all(chainId, lastSeq, lastId, toSeq, STORE_PAGE_SIZE) as unknown as EntryRow[];
        } catch (cause) {
          throw fail('read records', cause);
        }
        for (const r of rows) yield toEntry(r);
        if (rows.length < STORE_PAGE_SIZE) return;
        const last = rows[rows.length - 1]!;
        lastSeq = last.seq;
        lastId = last.id;
      }
    },

    async *checkpoints(chainId: string, range: SeqRange = {}) {
      let lastSeq = (range.fromSeq ?? 1) - 1;
      let lastId = MAX_ID;
      const toSeq = range.toSeq ?? MAX_ID;
      const page = stmt(`SELECT id, chain_id, seq, head_hash, time, requests_seen, records_lost, is_final, kid, sig FROM audit_checkpoints
        WHERE chain_id = ?1 AND (seq > ?2 OR (seq = ?2 AND id > ?3)) AND seq <= ?4 ORDER BY seq, id LIMIT ?5`);
      for (;;) {
        let rows: (CheckpointRow & { id: number })[];
        try {
          rows = page.all(chainId, lastSeq, lastId, toSeq, STORE_PAGE_SIZE) as unknown as (CheckpointRow & { id: number })[];
        } catch (cause) {
          throw fail('read checkpoints', cause);
        }
        for (const r of rows) yield toCheckpoint(r);
        if (rows.length < STORE_PAGE_SIZE) return;
        const last = rows[rows.length - 1]!;
        lastSeq = last.seq;
        lastId = last.id;
      }
    },

    async prunes(chainId) {
      try {
        const rows = stmt('SELECT chain_id, through_seq, last_hash, time, kid, sig FROM audit_prunes WHERE chain_id = ? ORDER BY through_seq, id').all(
          chainId,
        ) as unknown as PruneRow[];
        return rows.map(toPrune);
      } catch (cause) {
        throw fail('read prunes', cause);
      }
    },

    async entryAt(chainId, seq) {
      try {
        const row = stmt('SELECT id, chain_id, seq, ts, prev_hash, hash, record FROM audit_records WHERE chain_id = ? AND seq = ? ORDER BY id LIMIT 1').get(
          chainId,
          seq,
        ) as EntryRow | undefined;
        return row === undefined ? undefined : toEntry(row);
      } catch (cause) {
        throw fail('read record', cause);
      }
    },

    async hasChain(chainId) {
      try {
        const row = stmt(`SELECT 1 AS x FROM audit_chains WHERE chain_id = ?1
          UNION ALL SELECT 1 FROM audit_records WHERE chain_id = ?1
          UNION ALL SELECT 1 FROM audit_checkpoints WHERE chain_id = ?1
          UNION ALL SELECT 1 FROM audit_prunes WHERE chain_id = ?1 LIMIT 1`).get(chainId);
        return row !== undefined;
      } catch (cause) {
        throw fail('look up chain', cause);
      }
    },

    async latestChain(): Promise<ChainTip | undefined> {
      try {
        const chain = stmt('SELECT chain_id FROM audit_chains ORDER BY n DESC LIMIT 1').get() as { chain_id: string } | undefined;
        if (chain === undefined) return undefined;
        const head = stmt('SELECT seq, hash FROM audit_records WHERE chain_id = ? ORDER BY seq DESC, id LIMIT 1').get(chain.chain_id) as
          | { seq: number; hash: string }
          | undefined;
        return { chainId: chain.chain_id, seq: head?.seq ?? 0, hash: head?.hash ?? GENESIS_HASH };
      } catch (cause) {
        throw fail('read latest chain', cause);
      }
    },

    async *scan(range: TimeRange & { chainId?: string }) {
      let lastTs = (range.fromTs ?? -MAX_ID) - 1;
      let lastId = MAX_ID;
      const toTs = range.toTs ?? MAX_ID;
      const byChain = range.chainId !== undefined;
      const page = stmt(`SELECT id, chain_id, seq, ts, prev_hash, hash, record FROM audit_records
        WHERE (ts > ?1 OR (ts = ?1 AND id > ?2)) AND ts < ?3 ${byChain ? 'AND chain_id = ?5' : 'AND ?5 IS NULL'}
        ORDER BY ts, id LIMIT ?4`);
      for (;;) {
        let rows: EntryRow[];
        try {
          rows = page.all(lastTs, lastId, toTs, STORE_PAGE_SIZE, range.chainId ?? null) as unknown as EntryRow[];
        } catch (cause) {
          throw fail('scan records', cause);
        }
        for (const r of rows) yield toEntry(r);
        if (rows.length < STORE_PAGE_SIZE) return;
        const last = rows[rows.length - 1]!;
        lastTs = last.ts;
        lastId = last.id;
      }
    },

    async prune(p: PruneStatement) {
      if (appender !== undefined) return appender.prune(p);
      try {
        return transaction(() => {
          const boundary = stmt('SELECT 1 AS x FROM audit_checkpoints WHERE chain_id = ? AND seq = ? AND head_hash = ?').get(
            p.chainId,
            p.throughSeq,
            p.lastHash,
          );
          if (boundary === undefined) {
            throw new AuditError('ERR_AUDIT_PRUNE_REFUSED', `no checkpoint of chain ${p.chainId} at seq ${p.throughSeq} with the prune's hash`);
          }
          stmt('INSERT INTO audit_prunes (chain_id, through_seq, last_hash, time, kid, sig) VALUES (?, ?, ?, ?, ?, ?)').run(
            p.chainId,
            p.throughSeq,
            p.lastHash,
            p.time,
            p.kid,
            p.sig,
          );
          db.exec('DROP TRIGGER IF EXISTS audit_records_no_delete; DROP TRIGGER IF EXISTS audit_checkpoints_no_delete;');
          const records = db.prepare('DELETE FROM audit_records WHERE chain_id = ? AND seq <= ?').run(p.chainId, p.throughSeq).changes;
          // The boundary checkpoint stays: it is what the prune statement is checked against.
          const checkpoints = db.prepare('DELETE FROM audit_checkpoints WHERE chain_id = ? AND seq < ?').run(p.chainId, p.throughSeq).changes;
          db.exec(guard('audit_records', 'DELETE') + guard('audit_checkpoints', 'DELETE'));
          return { records: Number(records), checkpoints: Number(checkpoints) };
        });
      } catch (cause) {
        throw fail('prune', cause);
      } finally {
        // Trigger DDL invalidates prepared statements' schema; drop the cache so they are re-prepared.
        cache.clear();
      }
    },

    async close() {
      await appender?.close();
      cache.clear();
      if (db.isOpen) db.close();
    },
  };
  return store;
}

