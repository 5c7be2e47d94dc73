/**
 * PostgreSQL for integration tests: a fresh schema per test (`pc_test_<random>`, dropped CASCADE after), so
 * tests run concurrently against one database without seeing each other.
 *
 * Reachability is checked once per process. When the server is down the helper tries to start the local
 * cluster once (`pg_ctlcluster ... start`, which waits until the server accepts connections). If it is still
 * unreachable: under CI (`CI=true`) the test fails loudly — a CI run must not pass by skipping — otherwise the
 * test is skipped at run time with the reason.
 */
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readdirSync } from 'node:fs';
import type { TestContext } from 'node:test';
import pg from 'pg';

/** The server the tests use (trust auth). */
export const PG_URL = process.env.PORTCULLIS_TEST_PG_URL ?? 'postgres://postgres@127.0.0.1:5432/test';
export const PG_UNREACHABLE = 'PostgreSQL not reachable at 127.0.0.1:5432';

let reachable: Promise<boolean> | undefined;

async function canConnect(): Promise<boolean> {
  const client = new pg.Client({ connectionString: PG_URL, connectionTimeoutMillis: 3000 });
  client.on('error', () => {});
  try {
    await client.connect();
    await client.query('SELECT 1');
    return true;
  } catch {
    return false;
  } finally {
    await client.end().catch(() => {});
  }
}

function startCluster(): void {
  try {
    const version = readdirSync('/etc/postgresql')[0];
    if (version === undefined) return;
    execFileSync('pg_ctlcluster', ['--skip-systemctl-redirect', version, 'main', 'start'], { stdio: 'ignore', timeout: 60_000 });
  } catch {
    // Not installed here, or already starting: the second connection attempt decides.
  }
}

/** True when PostgreSQL answers; tries to start the local cluster once per process. */
export function postgresReachable(): Promise<boolean> {
  reachable ??= (async () => {
    if (await canConnect()) return true;
    startCluster();
    return canConnect();
  })();
  return reachable;
}

/** A schema of its own for one test. */
export interface TestSchema {
  readonly schema: string;
  /** Store URL for `openAuditStore` (`postgres://...?schema=<schema>`). */
  readonly url: string;
  /** A raw superuser connection with `search_path` set to the schema (for tampering). */
  readonly client: pg.Client;
  drop(): Promise<void>;
}

/**
 * Creates `pc_test_<random>` and a raw client on it; registers the drop with `t.after`. Returns undefined after
 * calling `t.skip(reason)` when PostgreSQL is unreachable outside CI; throws under CI.
 */
export async function createTestSchema(t: TestContext): Promise<TestSchema | undefined> {
  if (!(await postgresReachable())) {
    if (process.env.CI === 'true') throw new Error(`${PG_UNREACHABLE} (CI=true: PostgreSQL tests must run)`);
    t.skip(PG_UNREACHABLE);
    return undefined;
  }
  const schema = `pc_test_${randomBytes(6).toString('hex')}`;
  const client = new pg.Client({ connectionString: PG_URL });
  client.on('error', () => {});
  await client.connect();
  await client.query(`CREATE SCHEMA ${schema}`);
  await client.query(`SET search_path TO ${schema}`);
  const url = new URL(PG_URL);
  url.searchParams.set('schema', schema);
  let dropped = false;
  const drop = async (): Promise<void> => {
    if (dropped) return;
    dropped = true;
    try {
      await client.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`);
    } finally {
      await client.end().catch(() => {});
    }
  };
  t.after(drop);
  return { schema, url: url.toString(), client, drop };
}
