/**
 * Opens an audit store from the URL form used in config and on the command line:
 *
 *   sqlite:./data/audit.db          a file (relative to the working directory); also sqlite:///abs/path
 *   sqlite::memory:                 an in-memory store (tests)
 *   postgres://user@host:5432/db?schema=audit    (or postgresql://); `schema` defaults to public
 */
import { AuditError } from './errors.ts';
import type { AuditStore } from './store.ts';
import { createPostgresStore } from './store-postgres.ts';
import { createSqliteStore } from './store-sqlite.ts';

export interface OpenAuditStoreOptions {
  /**
   * For readers (verify, query, export): never create or migrate anything, only check the schema version. A
   * SQLite path that does not exist then fails instead of silently becoming an empty (and "valid") store.
   */
  readonly readOnly?: boolean;
  /** Run `init()` (default true). */
  readonly init?: boolean;
  /** SQLite: commit appends on a worker thread (the proxy; see sqlite-appender.ts). */
  readonly appendOffThread?: boolean;
  /** PostgreSQL pool size. */
  readonly poolMax?: number;
  /** PostgreSQL connect timeout, ms. */
  readonly connectTimeoutMs?: number;
}

/** The parsed form of a store URL. */
export type AuditStoreUrl =
  | { readonly kind: 'sqlite'; readonly path: string }
  | { readonly kind: 'postgres'; readonly connectionString: string; readonly schema: string };

/**
 * Parses a store URL without opening anything (config validation at load).
 *
 * @throws AuditError `ERR_AUDIT_STORE_URL_INVALID`
 */
export function parseAuditStoreUrl(url: string): AuditStoreUrl {
  if (url.startsWith('sqlite:')) {
    let path = url.slice('sqlite:'.length);
    if (path.startsWith('//')) path = path.slice(2);
    if (path === '') throw new AuditError('ERR_AUDIT_STORE_URL_INVALID', 'sqlite: store URL needs a path, e.g. sqlite:./data/audit.db');
    return { kind: 'sqlite', path };
  }
  if (url.startsWith('postgres://') || url.startsWith('postgresql://')) {
    let parsed: URL;
    try {
      parsed = new URL(url);
    } catch (cause) {
      throw new AuditError('ERR_AUDIT_STORE_URL_INVALID', 'the postgres store URL is malformed', { cause });
    }
    const schema = parsed.searchParams.get('schema') ?? 'public';
    // pg would pass an unknown `schema` parameter on to the server as a startup option; keep it ours.
    parsed.searchParams.delete('schema');
    return { kind: 'postgres', connectionString: parsed.toString(), schema };
  }
  throw new AuditError('ERR_AUDIT_STORE_URL_INVALID', 'audit store URL must start with sqlite: or postgres://');
}

/**
 * Opens the store named by `url` and (by default) runs `init()`.
 *
 * @example const store = await openAuditStore('sqlite:./data/audit.db');
 * @throws AuditError `ERR_AUDIT_STORE_URL_INVALID`, `ERR_AUDIT_STORE_UNAVAILABLE`, `ERR_AUDIT_SCHEMA_VERSION`
 */
export async function openAuditStore(url: string, options: OpenAuditStoreOptions = {}): Promise<AuditStore> {
  const parsed = parseAuditStoreUrl(url);
  const readOnly = options.readOnly ?? false;
  const store =
    parsed.kind === 'sqlite'
      ? createSqliteStore(parsed.path, { readOnly, appendOffThread: options.appendOffThread ?? false })
      : createPostgresStore({
          connectionString: parsed.connectionString,
          schema: parsed.schema,
          readOnly,
          ...(options.poolMax === undefined ? {} : { poolMax: options.poolMax }),
          ...(options.connectTimeoutMs === undefined ? {} : { connectTimeoutMs: options.connectTimeoutMs }),
        });
  if (options.init ?? true) {
    try {
      await store.init();
    } catch (error) {
      await store.close().catch(() => {});
      throw error;
    }
  }
  return store;
}
