/**
 * The one place dependencies are wired: a compiled config becomes a running proxy with its admin listener.
 * Owns the lifecycle: start, reload (swap runtimes atomically), graceful stop.
 */
import { createServer } from 'node:http';
import type { Server } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { once } from 'node:events';
import { createAdminHandler } from './admin.ts';
import { createLogger } from './logger.ts';
import type { Logger } from './logger.ts';
import { createMetrics } from './metrics.ts';
import type { Metrics } from './metrics.ts';
import { handleRequest, handleUpgrade } from './pipeline.ts';
import type { PipelineDeps } from './pipeline.ts';
import { closeRuntime, createRuntime } from './runtime.ts';
import type { Runtime } from './runtime.ts';
import type { CompiledConfig } from './config/types.ts';
import { createAuditSink } from './audit/sink.ts';
import type { AuditSink } from './audit/sink.ts';

export interface App {
  /** Resolves once both listeners are bound and the issuers' first key fetch has settled. */
  start(): Promise<{ proxy: AddressInfo; admin: AddressInfo | undefined }>;
  /** Builds a runtime from a new config and swaps it in; requests in flight finish on the old one. */
  reload(config: CompiledConfig): Promise<void>;
  /** Stops accepting, lets in-flight requests finish up to the drain timeout, then closes everything. */
  stop(): Promise<void>;
  runtime(): Runtime;
  readonly metrics: Metrics;
  readonly logger: Logger;
}

export interface AppOptions {
  readonly logger?: Logger;
  readonly metrics?: Metrics;
  readonly env?: NodeJS.ProcessEnv;
  /** Bind the proxy listener (false in a cluster primary, which only runs the admin listener). */
  readonly proxy?: boolean;
  /** Bind the admin listener (false in cluster workers: the primary owns it). */
  readonly admin?: boolean;
  readonly renderMetrics?: () => Promise<string>;
}

export async function createApp(config: CompiledConfig, options: AppOptions = {}): Promise<App> {
  const logger = options.logger ?? createLogger(config.log.level);
  const metrics = options.metrics ?? createMetrics();
  let current = await createRuntime(config, { metrics, env: options.env });
  // One audit chain per instance lifetime: the sink outlives reloads (its settings need a restart).
  const audit: AuditSink | undefined =
    config.audit !== undefined && options.proxy !== false
      ? await createAuditSink(config.audit, { metrics, logger, env: options.env ?? process.env })
      : undefined;
  let draining = false;
  let inFlight = 0;
  let idle: (() => void) | undefined;
  const sockets = new Set<Socket>();

  metrics.setIssuerStatusSource(() =>
    current.registry.list().map((issuer) => ({ id: issuer.config.id, ...issuer.keys.status() })),
  );
  const deps: PipelineDeps = { logger, metrics, runtime: () => current, shuttingDown: () => draining, audit };

  const proxy: Server = createServer({
    maxHeaderSize: config.limits.maxHeaderBytes,
    requestTimeout: config.limits.requestTimeoutMs,
    headersTimeout: Math.min(60_000, config.limits.requestTimeoutMs),
    keepAliveTimeout: 65_000,
    // Bodies are streamed, never buffered; Node's own request-size limits stay in force for headers.
  });
  // One listener function for every response ('close' fires once per response): nothing allocated per request.
  const requestClosed = (): void => {
    if (--inFlight === 0 && idle) idle();
  };
  proxy.on('request', (req, res) => {
    inFlight++;
    res.on('close', requestClosed);
    void handleRequest(req, res, deps);
  });
  proxy.on('upgrade', (req, socket, head) => {
    void handleUpgrade(req, socket, head, deps);
  });
  proxy.on('connection', (socket: Socket) => {
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
  });
  proxy.on('clientError', (error: NodeJS.ErrnoException, socket) => {
    // Malformed requests never reach the pipeline; answer them here so the client gets a reason.
    if (!socket.writable) return socket.destroy();
    const status = error.code === 'HPE_HEADER_OVERFLOW' ? 431 : 400;
    const body = JSON.stringify({ error: status === 431 ? 'request_header_fields_too_large' : 'bad_request', code: status === 431 ? 'ERR_REQUEST_HEADER_TOO_LARGE' : 'ERR_REQUEST_INVALID' });
    socket.end(`HTTP/1.1 ${status} ${status === 431 ? 'Request Header Fields Too Large' : 'Bad Request'}\r\ncontent-type: application/json\r\ncontent-length: ${body.length}\r\nconnection: close\r\n\r\n${body}`);
    metrics.requests.inc({ route: '', status: String(status) });
    logger.info({ status, reason: status === 431 ? 'ERR_REQUEST_HEADER_TOO_LARGE' : 'ERR_REQUEST_INVALID', detail: error.code }, 'request');
  });

  const admin: Server | undefined = config.admin && options.admin !== false
    ? createServer(createAdminHandler({ metrics, runtime: () => current, shuttingDown: () => draining, renderMetrics: options.renderMetrics }))
    : undefined;
  const serveProxy = options.proxy !== false;

  return {
    metrics,
    logger,
    runtime: () => current,
    async start() {
      let adminAddress: AddressInfo | undefined;
      if (admin && config.admin && options.admin !== false) {
        // Admin first: the quickstart's dev issuer serves its JWKS there and the registry fetches it.
        admin.listen(config.admin.port, config.admin.host);
        await once(admin, 'listening');
        adminAddress = admin.address() as AddressInfo;
      }
      await current.registry.start();
      let proxyAddress: AddressInfo = { address: config.listen.host, port: config.listen.port, family: 'IPv4' };
      if (serveProxy) {
        proxy.listen(config.listen.port, config.listen.host);
        await once(proxy, 'listening');
        proxyAddress = proxy.address() as AddressInfo;
      }
      logger.info({ listen: `${proxyAddress.address}:${proxyAddress.port}`, admin: adminAddress ? `${adminAddress.address}:${adminAddress.port}` : undefined, routes: current.config.routes.length, issuers: current.config.issuers.length }, 'portcullis listening');
      return { proxy: proxyAddress, admin: adminAddress };
    },
    async reload(next) {
      const previous = current;
      // Listeners are bound once; changing them needs a restart. Say so rather than half-apply it.
      const same = (a?: { host: string; port: number }, b?: { host: string; port: number }) => a?.host === b?.host && a?.port === b?.port;
      if (!same(next.listen, config.listen) || !same(next.admin, config.admin)) {
        throw new Error('listen and admin addresses cannot change on reload; restart the proxy');
      }
      if (JSON.stringify(next.audit) !== JSON.stringify(config.audit)) {
        throw new Error('audit settings cannot change on reload (one chain per instance lifetime); restart the proxy');
      }
      const runtime = await createRuntime(next, { metrics, previous, env: options.env });
      await runtime.registry.start();
      current = runtime;
      // Requests still running hold `previous`; its pools close gracefully (undici waits for them).
      void closeRuntime(previous);
    },
    async stop() {
      if (draining) return;
      draining = true;
      if (serveProxy) {
        proxy.close();
        proxy.closeIdleConnections();
      }
      if (inFlight > 0) {
        const drained = new Promise<void>((resolve) => (idle = resolve));
        let timer: NodeJS.Timeout | undefined;
        const timeout = new Promise<void>((resolve) => (timer = setTimeout(resolve, current.config.limits.drainTimeoutMs)));
        await Promise.race([drained, timeout]);
        clearTimeout(timer);
      }
      for (const socket of sockets) socket.destroy();
      admin?.close();
      admin?.closeAllConnections();
      await closeRuntime(current);
      // After the drain: every answered request is in the queue; close() commits it and signs the end.
      await audit?.close();
      logger.info({ in_flight_abandoned: inFlight }, 'portcullis stopped');
      logger.flush?.();
    },
  };
}
