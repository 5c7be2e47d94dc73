/** `portcullis serve -c FILE`: run the proxy until SIGTERM / SIGINT; SIGHUP reloads the config. */
import type { Command } from 'commander';
import { createApp } from '../app.ts';
import type { App } from '../app.ts';
import { compileConfigFile } from '../config/compile.ts';
import { watchConfigFile } from '../config/watch.ts';
import { isClusterWorker, runPrimary, runWorker } from '../cluster.ts';
import type { StartupReloads } from '../cluster.ts';
import { loadOrExit } from './check.ts';

export function registerServe(program: Command): void {
  program
    .command('serve')
    .description('Run the proxy (SIGTERM/SIGINT drain and exit 0, SIGHUP reloads the config)')
    .requiredOption('-c, --config <file>', 'config file (YAML)')
    .option('--no-watch', 'do not reload when the config file changes (SIGHUP still reloads)')
    .option('--workers <n>', 'worker processes sharing the port (node:cluster); 1 = no cluster', '1')
    .action(async (opts: { config: string; watch: boolean; workers: string }) => {
      const workers = Number(opts.workers);
      if (!Number.isInteger(workers) || workers < 1 || workers > 256) {
        process.stderr.write('portcullis: --workers must be an integer from 1 to 256\n');
        process.exit(2);
      }
      const startup = holdReloadsWhileStarting();
      const config = await loadOrExit(opts.config);
      if (workers > 1 || isClusterWorker()) {
        const options = { configFile: opts.config, workers, watch: opts.watch, reload: reloadConfig, onSignals: handleSignals, startup };
        return isClusterWorker() ? runWorker(config, options) : runPrimary(config, options);
      }
      const app = await createApp(config);
      await app.start();
      handleSignals(app, opts.config);
      if (opts.watch) watchConfigFile(opts.config, () => void reloadConfig(app, opts.config, 'file change'));
      if (startup.release()) void reloadConfig(app, opts.config, 'SIGHUP while starting');
    });
}

/**
 * Holds a SIGHUP that arrives while the proxy starts, instead of dying of it (the default action): loading
 * the config and fetching an issuer's keys can take seconds with a slow IdP, and `systemctl reload` or a
 * config-management run may signal meanwhile. The config read at start may predate the change the signal
 * announces, so the caller reloads once when a SIGHUP was held.
 */
function holdReloadsWhileStarting(): StartupReloads {
  let asked = false;
  const hold = (): void => {
    asked = true;
  };
  process.on('SIGHUP', hold);
  return {
    release() {
      process.off('SIGHUP', hold);
      return asked;
    },
  };
}

/** Graceful shutdown on SIGTERM/SIGINT; config reload on SIGHUP (an invalid file keeps the old config). */
export function handleSignals(app: App, configFile: string | undefined): void {
  // One drain per process: a second signal must not exit before it ends (app.stop() resolves at once when
  // already draining). A cluster worker also keeps its listeners, so a repeat is ignored rather than taking the
  // default action (death): the process group's signal (systemd's default KillMode=control-group, a
  // terminal's Ctrl-C) and the primary's forwarded SIGTERM both reach it. Forcing an exit is the primary's
  // business (node:cluster ends a worker whose primary is gone); a single process still dies on a repeat.
  let stopping = false;
  const stop = (signal: string): void => {
    if (stopping) return;
    stopping = true;
    app.logger.info({ signal }, 'shutting down: draining in-flight requests');
    app.stop().then(
      () => process.exit(0),
      (error: unknown) => {
        app.logger.error({ err: error }, 'shutdown failed');
        process.exit(1);
      },
    );
  };
  const on = isClusterWorker() ? process.on.bind(process) : process.once.bind(process);
  on('SIGTERM', () => stop('SIGTERM'));
  on('SIGINT', () => stop('SIGINT'));
  if (configFile === undefined) return;
  process.on('SIGHUP', () => void reloadConfig(app, configFile, 'SIGHUP'));
}

/**
 * Re-loads, validates, compiles and swaps the config atomically. An invalid file is reported (log + metric
 * `portcullis_config_reloads_total{outcome="invalid"}`) and the running config keeps serving. Reloads are
 * serialised so that two quick edits cannot finish out of order.
 */
let reloading: Promise<void> = Promise.resolve();
export function reloadConfig(app: App, configFile: string, trigger: string): Promise<void> {
  reloading = reloading.then(async () => {
    try {
      const config = await compileConfigFile(configFile);
      await app.reload(config);
      app.metrics.configReloads.inc({ outcome: 'ok' });
      app.logger.info({ config: configFile, trigger }, 'config reloaded');
    } catch (error) {
      app.metrics.configReloads.inc({ outcome: 'invalid' });
      app.logger.error({ config: configFile, trigger, problems: (error as Error).message.split('\n') }, 'config reload refused; the previous config keeps serving');
    }
  });
  return reloading;
}
