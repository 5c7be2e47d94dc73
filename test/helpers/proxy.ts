/**
 * Starts a real Portcullis (proxy + admin listeners on 127.0.0.1 port 0) from YAML text, with the access log
 * captured in memory so tests can assert what was (and was not) logged.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { createApp } from '../../src/app.ts';
import type { App } from '../../src/app.ts';
import { compileConfigFile } from '../../src/config/compile.ts';
import { createLogger } from '../../src/logger.ts';
import { createMetrics } from '../../src/metrics.ts';

export interface RunningProxy {
  readonly url: string;
  readonly adminUrl: string;
  readonly app: App;
  readonly dir: string;
  /** Every JSON log line written so far, parsed. */
  readonly logs: Record<string, unknown>[];
  /** The raw log text, for leak checks. */
  logText(): string;
  /** Resolves when a log line matching `predicate` has been written (already or later). */
  waitForLog(predicate: (line: Record<string, unknown>) => boolean): Promise<Record<string, unknown>>;
  close(): Promise<void>;
}

export async function startProxy(yaml: string, options: { env?: NodeJS.ProcessEnv; files?: Record<string, string> } = {}): Promise<RunningProxy> {
  const dir = mkdtempSync(join(tmpdir(), 'portcullis-test-'));
  for (const [name, content] of Object.entries(options.files ?? {})) writeFileSync(join(dir, name), content);
  const file = join(dir, 'portcullis.yaml');
  writeFileSync(file, withTestListeners(yaml));
  const env = { ...process.env, ...options.env };
  const config = await compileConfigFile(file, env);
  const logs: Record<string, unknown>[] = [];
  const waiters: { predicate: (line: Record<string, unknown>) => boolean; resolve: (line: Record<string, unknown>) => void }[] = [];
  let text = '';
  const sink = new Writable({
    write(chunk: Buffer, _encoding, callback) {
      const s = chunk.toString();
      text += s;
      for (const line of s.split('\n')) {
        if (!line.trim()) continue;
        const parsed = JSON.parse(line) as Record<string, unknown>;
        logs.push(parsed);
        for (const w of [...waiters]) {
          if (w.predicate(parsed)) {
            waiters.splice(waiters.indexOf(w), 1);
            w.resolve(parsed);
          }
        }
      }
      callback();
    },
  });
  const app = await createApp(config, { env, logger: createLogger('info', sink), metrics: createMetrics({ defaultMetrics: false }) });
  const { proxy, admin } = await app.start();
  return {
    url: `http://127.0.0.1:${proxy.port}`,
    adminUrl: admin ? `http://127.0.0.1:${admin.port}` : '',
    app,
    dir,
    logs,
    logText: () => text,
    waitForLog(predicate) {
      const found = logs.find(predicate);
      if (found !== undefined) return Promise.resolve(found);
      return new Promise((resolve) => waiters.push({ predicate, resolve }));
    },
    async close() {
      await app.stop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** Tests never bind fixed ports: default both listeners to port 0 unless the YAML sets them. */
function withTestListeners(yaml: string): string {
  let out = yaml;
  if (!/^listen:/m.test(out)) out = `listen: 127.0.0.1:0\n${out}`;
  if (!/^admin:/m.test(out)) out = `admin: 127.0.0.1:0\n${out}`;
  return out;
}

/** The access-log lines (msg "request"). */
export function accessLogs(proxy: RunningProxy): Record<string, unknown>[] {
  return proxy.logs.filter((l) => l.msg === 'request');
}
