/**
 * `serve --workers N`: one process is single-threaded, so N workers (node:cluster) share the proxy port and
 * the kernel-accepted connections are spread across them. The primary runs no proxy listener: it owns the
 * admin listener (metrics aggregated over every worker), forwards reloads (to a starting worker once it is
 * ready), restarts a worker that dies, and on SIGTERM/SIGINT drains every worker before exiting 0.
 */
import cluster from 'node:cluster';
import type { Worker } from 'node:cluster';
import { AggregatorRegistry } from 'prom-client';
import { createApp } from './app.ts';
import type { App } from './app.ts';
import { watchConfigFile } from './config/watch.ts';
import type { CompiledConfig } from './config/types.ts';
import { createMetrics } from './metrics.ts';

/** A SIGHUP held while the process started (serve's holdReloadsWhileStarting). */
export interface StartupReloads {
  /** Ends the hold (call once the real SIGHUP handler is installed); true when a SIGHUP came meanwhile. */
  release(): boolean;
}

export interface ClusterOptions {
  readonly configFile: string;
  readonly workers: number;
  readonly watch: boolean;
  /** Reload hook of the calling command (shared with single-process serve). */
  readonly reload: (app: App, file: string, trigger: string) => Promise<void>;
  readonly onSignals: (app: App, file: string | undefined) => void;
  readonly startup: StartupReloads;
}

/** IPC message a worker sends once it serves and handles signals (prom-client's messages use other types). */
const WORKER_READY = 'portcullis:worker-ready';

export function isClusterWorker(): boolean {
  return cluster.isWorker;
}

export async function runPrimary(config: CompiledConfig, options: ClusterOptions): Promise<void> {
  const aggregator = new AggregatorRegistry();
  const app = await createApp(config, { proxy: false, renderMetrics: () => aggregator.clusterMetrics() });
  await app.start();
  let stopping = false;
  const workers = new Set<Worker>();
  // A worker takes its signal handlers only once it serves: until then a SIGHUP would kill it (the default
  // action). A reload asked meanwhile is held and sent when it reports ready, since it may have read the
  // file before the change.
  const ready = new WeakSet<Worker>();
  const reloadWhenReady = new WeakSet<Worker>();
  const fork = (index: number): void => {
    // The index survives restarts, so a replacement worker finds (and replays) its predecessor's spool.
    const worker = cluster.fork({ PORTCULLIS_WORKER_INDEX: String(index) });
    workers.add(worker);
    worker.on('message', (message: unknown) => {
      if ((message as { type?: unknown } | null)?.type !== WORKER_READY) return;
      ready.add(worker);
      if (reloadWhenReady.delete(worker)) worker.process.kill('SIGHUP');
    });
    worker.once('exit', (code, signal) => {
      workers.delete(worker);
      if (stopping) return;
      app.logger.error({ worker: worker.process.pid, code, signal }, 'worker exited; starting a replacement');
      // A worker that dies at once (bad environment) must not become a fork loop. Nor is one started after
      // a shutdown began in the meantime: stop() waits only for the workers it signalled. The timer keeps
      // the primary alive: with every worker dead and no admin listener it may be its only handle.
      setTimeout(() => {
        if (!stopping) fork(index);
      }, 1000);
    });
  };

  const reloadAll = (trigger: string): void => {
    for (const w of workers) {
      if (ready.has(w)) w.process.kill('SIGHUP');
      else reloadWhenReady.add(w);
    }
    void options.reload(app, options.configFile, trigger);
  };
  process.on('SIGHUP', () => reloadAll('SIGHUP'));
  if (options.watch) watchConfigFile(options.configFile, () => reloadAll('file change'));
  const stop = (signal: NodeJS.Signals): void => {
    if (stopping) return;
    stopping = true;
    app.logger.info({ signal, workers: workers.size }, 'shutting down: draining workers');
    const exits = [...workers].map((w) => new Promise<void>((resolve) => w.once('exit', () => resolve())));
    for (const w of workers) w.process.kill('SIGTERM');
    void Promise.all(exits)
      .then(() => app.stop())
      .then(() => process.exit(0));
  };
  process.once('SIGTERM', () => stop('SIGTERM'));
  process.once('SIGINT', () => stop('SIGINT'));
  // No worker yet: a SIGHUP held during start-up reloads the primary, and the workers read the file anew.
  if (options.startup.release()) reloadAll('SIGHUP while starting');
  // After the handlers: from this line on, a SIGHUP to the primary reaches every worker.
  app.logger.info({ workers: options.workers }, 'starting workers');
  for (let i = 1; i <= options.workers; i++) fork(i);
}

export async function runWorker(config: CompiledConfig, options: ClusterOptions): Promise<void> {
  const metrics = createMetrics();
  // The primary asks each worker for its registry over IPC when /metrics is scraped.
  new AggregatorRegistry();
  AggregatorRegistry.setRegistries([metrics.registry]);
  const app = await createApp(config, { metrics, admin: false });
  await app.start();
  options.onSignals(app, options.configFile);
  // Only a signal sent to the worker itself (a process group's) is held here; the primary holds its own.
  if (options.startup.release()) void options.reload(app, options.configFile, 'SIGHUP while starting');
  process.send?.({ type: WORKER_READY });
}
