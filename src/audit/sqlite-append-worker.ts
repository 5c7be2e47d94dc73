/**
 * The worker thread behind sqlite-appender.ts: its own connection to the audit database, running the store's
 * unchanged `append` for each request from the main thread.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { isAuditError } from './errors.ts';
import type { AuditErrorCode } from './errors.ts';
import type { AppendReply, AppendRequest, WorkerConfig } from './sqlite-appender.ts';
import { createSqliteStore } from './store-sqlite.ts';

const { path, busyTimeoutMs } = (workerData as WorkerConfig).sqliteAppender;
const port = parentPort!;
const store = createSqliteStore(path, { busyTimeoutMs });
// synchronous=FULL is a per-connection setting; the schema already exists, so init only checks it.
const ready = store.init();
port.on('message', (request: AppendRequest) => {
  ready
    .then(() => store.append(request.batch, request.opts))
    .then(
      (result) => port.postMessage({ id: request.id, result } satisfies AppendReply),
      (error: unknown) => {
        const code: AuditErrorCode = isAuditError(error) ? error.code : 'ERR_AUDIT_STORE_UNAVAILABLE';
        port.postMessage({ id: request.id, error: { code, message: (error as Error).message } } satisfies AppendReply);
      },
    );
});
