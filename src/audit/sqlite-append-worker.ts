/**
 * The worker thread behind sqlite-appender.ts: its own connection to the audit database, running the store's
 * unchanged `append` and `prune` for each request from the main thread, one at a time.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { isAuditError } from './errors.ts';
import type { AuditErrorCode } from './errors.ts';
import { unpackBatch } from './sqlite-appender.ts';
import type { AppendReply, AppendRequest, WorkerConfig } from './sqlite-appender.ts';
import { createSqliteStore } from './store-sqlite.ts';

const { path, busyTimeoutMs } = (workerData as WorkerConfig).sqliteAppender;
const port = parentPort!;
const store = createSqliteStore(path, { busyTimeoutMs });

// synchronous=FULL is a per-connection setting, so the connection is initialised here too (the schema already
// exists, init only checks it). A failed init fails that request and is tried again with the next one,
// instead of crashing the worker with an unhandled rejection.
let ready: Promise<void> | undefined;
const init = (): Promise<void> =>
  (ready ??= store.init().catch((error: unknown) => {
    ready = undefined;
    throw error;
  }));

// Requests run strictly in arrival order, whatever the caller does.
let queue: Promise<unknown> = Promise.resolve();

port.on('message', (request: AppendRequest) => {
  queue = queue.then(() =>
    init()
      .then((): Promise<AppendReply['result']> => (request.op === 'append' ? store.append(unpackBatch(request.batch), request.opts) : store.prune(request.statement)))
      .then(
        (result) => port.postMessage({ id: request.id, result } satisfies AppendReply),
        (error: unknown) => {
          const code: AuditErrorCode = isAuditError(error) ? error.code : 'ERR_AUDIT_STORE_UNAVAILABLE';
          port.postMessage({ id: request.id, error: { code, message: (error as Error).message } } satisfies AppendReply);
        },
      ),
  );
});
