/**
 * The shared audit store: PostgreSQL (14 or later: `CREATE OR REPLACE TRIGGER`) through a `pg` Pool.
 *
 * Several proxy instances write to one database, each its own chain (its own chain_id), so their inserts
 * never contend on a key. The tables are INSERT-only:
 *
 * - Triggers RAISE on UPDATE, DELETE and TRUNCATE of every audit table, for every role including the owner.
 * - The single exception is prune, through `audit_prune(chain_id, through_seq)`, a SECURITY DEFINER function
 *   that deletes only a checkpoint-aligned prefix of one chain and only when a prune statement naming that
 *   boundary was inserted first (the caller signs it; the function checks it matches the stored checkpoint).
 *   It sets a transaction-local flag (`portcullis.audit_prune`) that the DELETE trigger honours. Any session
 *   can set that flag, so the flag is not the security boundary — privileges are:
 *
 *     -- the proxy: append and read, nothing else
 *     GRANT USAGE ON SCHEMA audit TO portcullis_writer;
 *     GRANT SELECT, INSERT ON ALL TABLES IN SCHEMA audit TO portcullis_writer;
 *     GRANT USAGE ON ALL SEQUENCES IN SCHEMA audit TO portcullis_writer;
 *     -- the retention job: prune through the function only (it runs with the owner's rights)
 *     REVOKE EXECUTE ON FUNCTION audit.audit_prune(text, bigint) FROM PUBLIC;
 *     GRANT EXECUTE ON FUNCTION audit.audit_prune(text, bigint) TO portcullis_pruner;
 *     GRANT SELECT, INSERT ON audit.audit_prunes TO portcullis_pruner;
 *
 *   (`postgresGrantSql` prints exactly this for a schema.) Neither role owns the tables, so neither can DELETE,
 *   disable triggers or drop them. A superuser can, which is why the chain and the signed checkpoints exist.
 *
 * Reads use keyset pagination (one page per round trip, no server-side cursor, no long transaction).
 */
import pg from 'pg';
import type { PoolClient, PoolConfig } from 'pg';
import { GENESIS_HASH } from './chain.ts';
import type { Checkpoint, PruneStatement } from './checkpoint.ts';
import { AuditError } from './errors.ts';
import { SCHEMA_VERSION, STORE_PAGE_SIZE, checkVersion, conflict } from './store.ts';
import type { AppendBatch, AppendOptions, AppendResult, AuditStore, ChainTip, SeqRange, StoredEntry, TimeRange } from './store.ts';

const MAX_ID = '9223372036854775807';
const SCHEMA_NAME = /^[A-Za-z_][A-Za-z0-9_]{0,62}$/;

export interface PostgresStoreOptions {
  /** A `postgres://` connection string (without the `schema` parameter). */
  readonly connectionString: string;
  /** Schema holding the audit tables (default `public`); created by `init()` when missing. */
  readonly schema?: string;
  /** Pool size (default 4: one writer loop plus readers). */
  readonly poolMax?: number;
  /** Connection timeout, ms (default 5000): a down database must fail fast so the writer can spool. */
  readonly connectTimeoutMs?: number;
  /** Per-statement timeout, ms (default 30000). */
  readonly statementTimeoutMs?: number;
  /** Skip DDL in `init()` (verify, query): only check the schema version. */
  readonly readOnly?: boolean;
}

/** The GRANT statements documented above, for `schema`, as one SQL text. */
export function postgresGrantSql(schema: string, writerRole = 'portcullis_writer', prunerRole = 'portcullis_pruner'): string {
  const s = quoteSchema(schema);
  return [
    `GRANT USAGE ON SCHEMA ${s} TO ${writerRole}, ${prunerRole};`,
    `GRANT SELECT, INSERT ON ALL TABLES IN SCHEMA ${s} TO ${writerRole};`,
    `GRANT USAGE ON ALL SEQUENCES IN SCHEMA ${s} TO ${writerRole}, ${prunerRole};`,
    `REVOKE EXECUTE ON FUNCTION ${s}.audit_prune(text, bigint) FROM PUBLIC;`,
    `GRANT EXECUTE ON FUNCTION ${s}.audit_prune(text, bigint) TO ${prunerRole};`,
    `GRANT SELECT ON ALL TABLES IN SCHEMA ${s} TO ${prunerRole};`,
    `GRANT INSERT ON ${s}.audit_prunes TO ${prunerRole};`,
  ].join('\n');
}

function quoteSchema(schema: string): string {
  if (!SCHEMA_NAME.test(schema)) throw new AuditError('ERR_AUDIT_STORE_URL_INVALID', `invalid PostgreSQL schema name ${JSON.stringify(schema)}`);
  return `"${schema}"`;
}

function schemaSql(s: string): string {
  const tables = ['audit_chains', 'audit_records', 'audit_checkpoints', 'audit_prunes'];
  return `
CREATE SCHEMA IF NOT EXISTS ${s};
CREATE TABLE IF NOT EXISTS ${s}.audit_meta (key text PRIMARY KEY, value text NOT NULL);
CREATE TABLE IF NOT EXISTS ${s}.audit_chains (
  n bigserial PRIMARY KEY,
  chain_id text NOT NULL,
  started_at text NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS audit_chains_chain_id ON ${s}.audit_chains (chain_id);
CREATE TABLE IF NOT EXISTS ${s}.audit_records (
  id bigserial PRIMARY KEY,
  chain_id text NOT NULL,
  seq bigint NOT NULL,
  ts bigint NOT NULL,
  prev_hash text NOT NULL,
  hash text NOT NULL,
  record text NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS audit_records_chain_seq ON ${s}.audit_records (chain_id, seq);
CREATE INDEX IF NOT EXISTS audit_records_ts ON ${s}.audit_records (ts, id);
CREATE TABLE IF NOT EXISTS ${s}.audit_checkpoints (
  id bigserial PRIMARY KEY,
  chain_id text NOT NULL,
  seq bigint NOT NULL,
  head_hash text NOT NULL,
  time text NOT NULL,
  requests_seen bigint NOT NULL,
  records_lost bigint NOT NULL,
  is_final boolean NOT NULL,
  kid text NOT NULL,
  sig text NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS audit_checkpoints_chain_seq ON ${s}.audit_checkpoints (chain_id, seq);
CREATE TABLE IF NOT EXISTS ${s}.audit_prunes (
  id bigserial PRIMARY KEY,
  chain_id text NOT NULL,
  through_seq bigint NOT NULL,
  last_hash text NOT NULL,
  time text NOT NULL,
  kid text NOT NULL,
  sig text NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS audit_prunes_chain_seq ON ${s}.audit_prunes (chain_id, through_seq);

CREATE OR REPLACE FUNCTION ${s}.audit_refuse() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
  IF TG_OP = 'DELETE' AND TG_TABLE_NAME IN ('audit_records', 'audit_checkpoints')
     AND current_setting('portcullis.audit_prune', true) = 'on' THEN
    RETURN OLD;
  END IF;
  RAISE EXCEPTION 'portcullis audit tables are append-only: % on % refused', TG_OP, TG_TABLE_NAME
    USING ERRCODE = 'insufficient_privilege';
END
$fn$;
${tables
  .map(
    (t) => `
CREATE OR REPLACE TRIGGER ${t}_append_only BEFORE UPDATE OR DELETE ON ${s}.${t}
  FOR EACH ROW EXECUTE FUNCTION ${s}.audit_refuse();
CREATE OR REPLACE TRIGGER ${t}_no_truncate BEFORE TRUNCATE ON ${s}.${t}
  FOR EACH STATEMENT EXECUTE FUNCTION ${s}.audit_refuse();`,
  )
  .join('\n')}

CREATE OR REPLACE FUNCTION ${s}.audit_prune(p_chain_id text, p_through_seq bigint) RETURNS bigint[]
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $fn$
DECLARE
  v_hash text;
  v_records bigint;
  v_checkpoints bigint;
BEGIN
  SELECT last_hash INTO v_hash FROM ${s}.audit_prunes WHERE chain_id = p_chain_id AND through_seq = p_through_seq;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'no prune statement for chain % through seq %', p_chain_id, p_through_seq;
  END IF;
  IF NOT EXISTS (SELECT 1 FROM ${s}.audit_checkpoints WHERE chain_id = p_chain_id AND seq = p_through_seq AND head_hash = v_hash) THEN
    RAISE EXCEPTION 'no checkpoint of chain % at seq % matches the prune statement', p_chain_id, p_through_seq;
  END IF;
  PERFORM set_config('portcullis.audit_prune', 'on', true);
  DELETE FROM ${s}.audit_records WHERE chain_id = p_chain_id AND seq <= p_through_seq;
  GET DIAGNOSTICS v_records = ROW_COUNT;
  DELETE FROM ${s}.audit_checkpoints WHERE chain_id = p_chain_id AND seq < p_through_seq;
  GET DIAGNOSTICS v_checkpoints = ROW_COUNT;
  PERFORM set_config('portcullis.audit_prune', 'off', true);
  RETURN ARRAY[v_records, v_checkpoints];
END
$fn$;
`;
}

interface EntryRow {
  id: string;
  chain_id: string;
  seq: string;
  ts: string;
  prev_hash: string;
  hash: string;
  record: string;
}

interface CheckpointRow {
  id: string;
  chain_id: string;
  seq: string;
  head_hash: string;
  time: string;
  requests_seen: string;
  records_lost: string;
  is_final: boolean;
  kid: string;
  sig: string;
}

const toEntry = (r: EntryRow): StoredEntry => ({
  id: Number(r.id),
  chainId: r.chain_id,
  seq: Number(r.seq),
  ts: Number(r.ts),
  prevHash: r.prev_hash,
  hash: r.hash,
  record: r.record,
});

const toCheckpoint = (r: CheckpointRow): Checkpoint => ({
  chainId: r.chain_id,
  seq: Number(r.seq),
  headHash: r.head_hash,
  time: r.time,
  requestsSeen: Number(r.requests_seen),
  recordsLost: Number(r.records_lost),
  final: r.is_final,
  kid: r.kid,
  sig: r.sig,
});

/** The connection string without its password, for messages. */
function describe(connectionString: string, schema: string): string {
  try {
    const url = new URL(connectionString);
    if (url.password !== '') url.password = '***';
    return `${url.toString()}${url.search === '' ? '?' : '&'}schema=${schema}`;
  } catch {
    return 'postgres://(unparsable)';
  }
}

/**
 * A PostgreSQL audit store; call `init()` before use. Nothing connects until the first statement.
 *
 * @throws AuditError `ERR_AUDIT_STORE_URL_INVALID` for a bad schema name.
 */
export function createPostgresStore(options: PostgresStoreOptions): AuditStore {
  const schema = options.schema ?? 'public';
  const s = quoteSchema(schema);
  const location = describe(options.connectionString, schema);
  const config: PoolConfig = {
    connectionString: options.connectionString,
    max: options.poolMax ?? 4,
    connectionTimeoutMillis: options.connectTimeoutMs ?? 5000,
    statement_timeout: options.statementTimeoutMs ?? 30000,
    idleTimeoutMillis: 10000,
    application_name: 'portcullis-audit',
  };
  const pool = new pg.Pool(config);
  // An idle client losing its connection must not crash the process: the next statement fails instead,
  // and the writer spools until the database is back.
  pool.on('error', () => {});

  const fail = (what: string, cause: unknown): AuditError =>
    cause instanceof AuditError ? cause : new AuditError('ERR_AUDIT_STORE_UNAVAILABLE', `${location}: ${what}: ${(cause as Error).message}`, { cause });

  async function query<R extends object>(what: string, sql: string, params: unknown[] = []): Promise<R[]> {
    try {
      return (await pool.query<R>(sql, params)).rows;
    } catch (cause) {
      throw fail(what, cause);
    }
  }

  async function transaction<T>(what: string, fn: (client: PoolClient) => Promise<T>): Promise<T> {
    let client: PoolClient;
    try {
      client = await pool.connect();
    } catch (cause) {
      throw fail(what, cause);
    }
    let broken = false;
    try {
      await client.query('BEGIN');
      const result = await fn(client);
      await client.query('COMMIT');
      return result;
    } catch (cause) {
      try {
        await client.query('ROLLBACK');
      } catch {
        broken = true;
      }
      throw fail(what, cause);
    } finally {
      // A client whose connection failed mid-transaction is destroyed, not returned to the pool.
      client.release(broken ? true : undefined);
    }
  }

  return {
    kind: 'postgres',
    location,

    async init() {
      if (options.readOnly) {
        const rows = await query<{ value: string }>('init', `SELECT value FROM ${s}.audit_meta WHERE key = 'schema_version'`);
        checkVersion(rows[0]?.value);
        return;
      }
      await transaction('init', async (client) => {
        // Two instances starting at once would race on CREATE ... IF NOT EXISTS (a unique violation in the
        // catalog); the advisory lock serialises the migration per schema.
        await client.query('SELECT pg_advisory_xact_lock(hashtext($1))', [`portcullis.audit.init:${schema}`]);
        await client.query(schemaSql(s));
        await client.query(`INSERT INTO ${s}.audit_meta (key, value) VALUES ('schema_version', $1) ON CONFLICT (key) DO NOTHING`, [SCHEMA_VERSION]);
        const rows = await client.query<{ value: string }>(`SELECT value FROM ${s}.audit_meta WHERE key = 'schema_version'`);
        checkVersion(rows.rows[0]?.value);
      });
    },

    async append(batch: AppendBatch, opts: AppendOptions = {}): Promise<AppendResult> {
      const idempotent = opts.idempotent ?? false;
      return transaction('append', async (client) => {
        let inserted = 0;
        let duplicates = 0;
        const chains = batch.chains ?? [];
        if (chains.length > 0) {
          await client.query(
            `INSERT INTO ${s}.audit_chains (chain_id, started_at) SELECT * FROM unnest($1::text[], $2::text[]) ON CONFLICT (chain_id) DO NOTHING`,
            [chains.map((c) => c.chainId), chains.map((c) => c.startedAt)],
          );
        }
        const onConflict = idempotent ? 'ON CONFLICT (chain_id, seq) DO NOTHING' : '';
        const entries = batch.entries;
        if (entries.length > 0) {
          // One statement per batch, not one round trip per record. The batch goes as one JSON parameter:
          // as text[] arrays, pg escaped every quote of every record in JavaScript (about 50k instructions per
          // record on the event loop, under callgrind); JSON.stringify does it natively. The JSON round trip
          // gives back the same text for any string a text column can hold (no U+0000, no lone surrogate).
          const res = await client.query<{ seq: string }>(
            `INSERT INTO ${s}.audit_records (chain_id, seq, ts, prev_hash, hash, record)
             SELECT "chainId", seq, ts, "prevHash", hash, record
             FROM json_to_recordset($1::json) AS e("chainId" text, seq int8, ts int8, "prevHash" text, hash text, record text)
             ${onConflict} RETURNING seq`,
            [JSON.stringify(entries)],
          );
          inserted += res.rows.length;
          if (res.rows.length < entries.length) {
            const got = new Set(res.rows.map((r) => Number(r.seq)));
            for (const e of entries) {
              if (got.has(e.seq)) continue;
              const existing = await client.query<{ hash: string }>(
                `SELECT hash FROM ${s}.audit_records WHERE chain_id = $1 AND seq = $2 ORDER BY id LIMIT 1`,
                [e.chainId, e.seq],
              );
              if (existing.rows[0]?.hash !== e.hash) throw conflict(e.chainId, e.seq, 'record');
              duplicates++;
            }
          }
        }
        const cps = batch.checkpoints;
        if (cps.length > 0) {
          const res = await client.query<{ seq: string }>(
            `INSERT INTO ${s}.audit_checkpoints (chain_id, seq, head_hash, time, requests_seen, records_lost, is_final, kid, sig)
             SELECT * FROM unnest($1::text[], $2::int8[], $3::text[], $4::text[], $5::int8[], $6::int8[], $7::bool[], $8::text[], $9::text[])
             ${onConflict} RETURNING seq`,
            [
              cps.map((c) => c.chainId),
              cps.map((c) => c.seq),
              cps.map((c) => c.headHash),
              cps.map((c) => c.time),
              cps.map((c) => c.requestsSeen),
              cps.map((c) => c.recordsLost),
              cps.map((c) => c.final),
              cps.map((c) => c.kid),
              cps.map((c) => c.sig),
            ],
          );
          inserted += res.rows.length;
          if (res.rows.length < cps.length) {
            const got = new Set(res.rows.map((r) => Number(r.seq)));
            for (const c of cps) {
              if (got.has(c.seq)) continue;
              const existing = await client.query<{ sig: string }>(
                `SELECT sig FROM ${s}.audit_checkpoints WHERE chain_id = $1 AND seq = $2 ORDER BY id LIMIT 1`,
                [c.chainId, c.seq],
              );
              if (existing.rows[0]?.sig !== c.sig) throw conflict(c.chainId, c.seq, 'checkpoint');
              duplicates++;
            }
          }
        }
        return { inserted, duplicates };
      });
    },

    async *chainIds() {
      let after = '';
      for (;;) {
        // A loose index scan: one probe per table per chain rather than a DISTINCT over every record.
        const rows = await query<{ c: string | null }>(
          'list chains',
          `SELECT LEAST(
             (SELECT min(chain_id) FROM ${s}.audit_records WHERE chain_id > $1),
             (SELECT min(chain_id) FROM ${s}.audit_checkpoints WHERE chain_id > $1),
             (SELECT min(chain_id) FROM ${s}.audit_chains WHERE chain_id > $1),
             (SELECT min(chain_id) FROM ${s}.audit_prunes WHERE chain_id > $1)) AS c`,
          [after],
        );
        const c = rows[0]?.c;
        if (c === null || c === undefined) return;
        after = c;
        yield c;
      }
    },

    async *entries(chainId: string, range: SeqRange = {}) {
      let lastSeq = (range.fromSeq ?? 1) - 1;
      let lastId = MAX_ID;
      const toSeq = range.toSeq ?? Number.MAX_SAFE_INTEGER;
      for (;;) {
        const rows = await query<EntryRow>(
          'read records',
          `SELECT id, chain_id, seq, ts, prev_hash, hash, record FROM ${s}.audit_records
           WHERE chain_id = $1 AND (seq, id) > ($2::int8, $3::int8) AND seq <= $4 ORDER BY seq, id LIMIT $5`,
          [chainId, lastSeq, lastId, toSeq, STORE_PAGE_SIZE],
        );
        for (const r of rows) yield toEntry(r);
        if (rows.length < STORE_PAGE_SIZE) return;
        const last = rows[rows.length - 1]!;
        lastSeq = Number(last.seq);
        lastId = last.id;
      }
    },

    async *checkpoints(chainId: string, range: SeqRange = {}) {
      let lastSeq = (range.fromSeq ?? 1) - 1;
      let lastId = MAX_ID;
      const toSeq = range.toSeq ?? Number.MAX_SAFE_INTEGER;
      for (;;) {
        const rows = await query<CheckpointRow>(
          'read checkpoints',
          `SELECT id, chain_id, seq, head_hash, time, requests_seen, records_lost, is_final, kid, sig FROM ${s}.audit_checkpoints
           WHERE chain_id = $1 AND (seq, id) > ($2::int8, $3::int8) AND seq <= $4 ORDER BY seq, id LIMIT $5`,
          [chainId, lastSeq, lastId, toSeq, STORE_PAGE_SIZE],
        );
        for (const r of rows) yield toCheckpoint(r);
        if (rows.length < STORE_PAGE_SIZE) return;
        const last = rows[rows.length - 1]!;
        lastSeq = Number(last.seq);
        lastId = last.id;
      }
    },

    async prunes(chainId) {
      const rows = await query<{ chain_id: string; through_seq: string; last_hash: string; time: string; kid: string; sig: string }>(
        'read prunes',
        `SELECT chain_id, through_seq, last_hash, time, kid, sig FROM ${s}.audit_prunes WHERE chain_id = $1 ORDER BY through_seq, id`,
        [chainId],
      );
      return rows.map((r) => ({ chainId: r.chain_id, throughSeq: Number(r.through_seq), lastHash: r.last_hash, time: r.time, kid: r.kid, sig: r.sig }));
    },

    async entryAt(chainId, seq) {
      const rows = await query<EntryRow>(
        'read record',
        `SELECT id, chain_id, seq, ts, prev_hash, hash, record FROM ${s}.audit_records WHERE chain_id = $1 AND seq = $2 ORDER BY id LIMIT 1`,
        [chainId, seq],
      );
      return rows[0] === undefined ? undefined : toEntry(rows[0]);
    },

    async hasChain(chainId) {
      const rows = await query<{ x: number }>(
        'look up chain',
        `SELECT 1 AS x WHERE EXISTS (SELECT 1 FROM ${s}.audit_chains WHERE chain_id = $1)
           OR EXISTS (SELECT 1 FROM ${s}.audit_records WHERE chain_id = $1)
           OR EXISTS (SELECT 1 FROM ${s}.audit_checkpoints WHERE chain_id = $1)
           OR EXISTS (SELECT 1 FROM ${s}.audit_prunes WHERE chain_id = $1)`,
        [chainId],
      );
      return rows.length > 0;
    },

    async latestChain(): Promise<ChainTip | undefined> {
      const rows = await query<{ chain_id: string; seq: string | null; hash: string | null }>(
        'read latest chain',
        `SELECT c.chain_id, r.seq, r.hash FROM (SELECT chain_id FROM ${s}.audit_chains ORDER BY n DESC LIMIT 1) c
         LEFT JOIN LATERAL (SELECT seq, hash FROM ${s}.audit_records WHERE chain_id = c.chain_id ORDER BY seq DESC, id LIMIT 1) r ON true`,
      );
      const row = rows[0];
      if (row === undefined) return undefined;
      return { chainId: row.chain_id, seq: row.seq === null ? 0 : Number(row.seq), hash: row.hash ?? GENESIS_HASH };
    },

    async *scan(range: TimeRange & { chainId?: string }) {
      let lastTs = (range.fromTs ?? -Number.MAX_SAFE_INTEGER) - 1;
      let lastId = MAX_ID;
      const toTs = range.toTs ?? Number.MAX_SAFE_INTEGER;
      for (;;) {
        const rows = await query<EntryRow>(
          'scan records',
          `SELECT id, chain_id, seq, ts, prev_hash, hash, record FROM ${s}.audit_records
           WHERE (ts, id) > ($1::int8, $2::int8) AND ts < $3 AND ($5::text IS NULL OR chain_id = $5)
           ORDER BY ts, id LIMIT $4`,
          [lastTs, lastId, toTs, STORE_PAGE_SIZE, range.chainId ?? null],
        );
        for (const r of rows) yield toEntry(r);
        if (rows.length < STORE_PAGE_SIZE) return;
        const last = rows[rows.length - 1]!;
        lastTs = Number(last.ts);
        lastId = last.id;
      }
    },

    async prune(p: PruneStatement) {
      return transaction('prune', async (client) => {
        await client.query(`INSERT INTO ${s}.audit_prunes (chain_id, through_seq, last_hash, time, kid, sig) VALUES ($1, $2, $3, $4, $5, $6)`, [
          p.chainId,
          p.throughSeq,
          p.lastHash,
          p.time,
          p.kid,
          p.sig,
        ]);
        const res = await client.query<{ counts: string[] }>(`SELECT ${s}.audit_prune($1, $2) AS counts`, [p.chainId, p.throughSeq]);
        const counts = res.rows[0]?.counts ?? ['0', '0'];
        return { records: Number(counts[0]), checkpoints: Number(counts[1]) };
      });
    },

    async close() {
      await pool.end();
    },
  };
}
