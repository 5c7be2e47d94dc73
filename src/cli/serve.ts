/** `portcullis serve -c FILE`: run the proxy until SIGTERM / SIGINT; SIGHUP reloads the config. */
import type { Command } from 'commander';
import { createApp } from '../app.ts';
import type { App } from '../app.ts';
import { compileConfigFile } from '../config/compile.ts';
import { loadOrExit } from './check.ts';

export function registerServe(program: Command): void {
  program
    .command('serve')
    .description('Run the proxy (SIGTERM/SIGINT drain and exit 0, SIGHUP reloads the config)')
    .requiredOption('-c, --config <file>', 'config file (YAML)')
    .action(async (opts: { config: string }) => {
      const config = await loadOrExit(opts.config);
      const app = await createApp(config);
      await app.start();
      handleSignals(app, opts.config);
    });
}

/** Graceful shutdown on SIGTERM/SIGINT; config reload on SIGHUP (an invalid file keeps the old config). */
export function handleSignals(app: App, configFile: string | undefined): void {
  const stop = (signal: string): void => {
    app.logger.info({ signal }, 'shutting down: draining in-flight requests');
    app.stop().then(
      () => process.exit(0),
      (error: unknown) => {
        app.logger.error({ err: error }, 'shutdown failed');
        process.exit(1);
      },
    );
  };
  process.once('SIGTERM', () => stop('SIGTERM'));
  process.once('SIGINT', () => stop('SIGINT'));
  if (configFile === undefined) return;
  process.on('SIGHUP', () => {
    compileConfigFile(configFile)
      .then((config) => app.reload(config))
      .then(
        () => {
          app.metrics.configReloads.inc({ outcome: 'ok' });
          app.logger.info({ config: configFile }, 'config reloaded');
        },
        (error: Error) => {
          app.metrics.configReloads.inc({ outcome: 'invalid' });
          app.logger.error({ config: configFile, problems: error.message.split('\n') }, 'config reload refused; the previous config keeps serving');
        },
      );
  });
}
