/**
 * `portcullis quickstart` (what `npm start` runs): a dev issuer with keys generated on first start, an
 * example backend, and the proxy in front of it, then ready-to-paste curl lines.
 */
import { resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Command } from 'commander';
import { createApp } from '../app.ts';
import { compileConfigFile } from '../config/compile.ts';
import { ConfigError } from '../config/load.ts';
import { loadOrCreateDevKeys } from '../tools/keygen.ts';
import { mintToken } from '../tools/mint.ts';
import { startExampleBackend } from '../../examples/backend.ts';
import { startLokiDemo } from '../../examples/loki-demo.ts';
import { handleSignals } from './serve.ts';

const CONFIG = fileURLToPath(new URL('../../examples/quickstart/portcullis.yaml', import.meta.url));

export function registerQuickstart(program: Command): void {
  program
    .command('quickstart')
    .description('Run a dev issuer, an example backend and the proxy on 127.0.0.1:8080; print curl lines')
    .option('--data <dir>', 'where the dev keys live', 'data/quickstart')
    .action(async (opts: { data: string }) => {
      const dataDir = resolve(opts.data);
      const keys = await loadOrCreateDevKeys(dataDir, 'ES256');
      const backend = await startExampleBackend();
      const loki = await startLokiDemo();
      const env = { ...process.env, PORTCULLIS_QUICKSTART_DATA: dataDir, PORTCULLIS_QUICKSTART_BACKEND: backend.origin, PORTCULLIS_QUICKSTART_LOKI: loki.origin };
      let config;
      try {
        config = await compileConfigFile(CONFIG, env);
      } catch (error) {
        if (error instanceof ConfigError) process.stderr.write(error.message + '\n');
        throw error;
      }
      const app = await createApp(config, { env });
      const { proxy } = await app.start();
      const mint = (sub: string, env: string | string[]) => mintToken({
        keyFile: keys.privateKeyPath,
        kid: keys.kid,
        iss: config.issuers[0]!.issuer,
        aud: 'quickstart-api',
        sub,
        claims: { realm_access: { roles: ['log-reader', 'developer'] }, env },
        ttlMs: 8 * 3600_000,
      });
      const token = await mint('dev-user', 'staging');
      const everywhere = await mint('sre-user', ['staging', 'production']);
      const base = `http://${proxy.address}:${proxy.port}`;
      process.stderr.write(
        [
          '',
          `Portcullis quickstart is running: proxy ${base}, admin http://${config.admin?.host}:${config.admin?.port}, example backend ${backend.origin}`,
          `Config: ${CONFIG}   Dev keys: ${dataDir}`,
          '',
          'With a valid dev token (200, the backend echoes what it received: x-user-id, x-user-roles, no Authorization):',
          `  curl -i -H "Authorization: Bearer ${token}" ${base}/hello`,
          '',
          'Without a token (401 with a WWW-Authenticate challenge):',
          `  curl -i ${base}/hello`,
          '',
          'A public path (auth off):',
          `  curl -i ${base}/public/ping`,
          '',
          'Logs: the same query {app="api"} with a staging token sees only staging lines; the second token sees both:',
          `  curl -s -G ${base}/loki/api/v1/query_range --data-urlencode 'query={app="api"}' -H "Authorization: Bearer ${token}"`,
          `  curl -s -G ${base}/loki/api/v1/query_range --data-urlencode 'query={app="api"}' -H "Authorization: Bearer ${everywhere}"`,
          '',
          'See what the proxy does with a request (the enforced query, each rule) without sending it:',
          `  PORTCULLIS_TOKEN=${token} npx portcullis explain -c ${CONFIG} --url '${base}/loki/api/v1/query_range?query={app="api"}'`,
          '',
          `Metrics: curl http://${config.admin?.host}:${config.admin?.port}/metrics     Stop: Ctrl-C`,
          '',
        ].join('\n'),
      );
      handleSignals(app, undefined);
      process.once('exit', () => {
        backend.server.close();
        loki.server.close();
      });
    });
}
