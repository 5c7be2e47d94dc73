/** Runs the real CLI in a child process (the pinned Node), returning exit code and output. */
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';

export const CLI = fileURLToPath(new URL('../../bin/portcullis.js', import.meta.url));

export interface CliResult {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
  readonly stdout: string;
  readonly stderr: string;
}

export function runCli(args: readonly string[], options: { env?: NodeJS.ProcessEnv; cwd?: string } = {}): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [CLI, ...args], {
      env: { ...process.env, ...options.env },
      cwd: options.cwd,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.once('error', reject);
    child.once('close', (code, signal) => resolve({ code, signal, stdout, stderr }));
  });
}

/** Collects a child's output and resolves `waitFor` when a text appears (no sleeps, no stream teardown). */
export function watchOutput(stream: NodeJS.ReadableStream): { text(): string; waitFor(fragment: string, count?: number): Promise<void> } {
  let text = '';
  const waiters: Array<{ fragment: string; count: number; resolve: () => void }> = [];
  const seen = (fragment: string, count: number) => text.split(fragment).length - 1 >= count;
  let ended = false;
  stream.on('data', (chunk: Buffer) => {
    text += chunk.toString();
    for (const w of [...waiters]) {
      if (seen(w.fragment, w.count)) {
        waiters.splice(waiters.indexOf(w), 1);
        w.resolve();
      }
    }
  });
  stream.on('end', () => {
    ended = true;
  });
  return {
    text: () => text,
    /** Resolves once `fragment` has appeared `count` times (default 1). */
    waitFor(fragment, count = 1) {
      if (seen(fragment, count)) return Promise.resolve();
      if (ended) return Promise.reject(new Error(`output ended without "${fragment}":\n${text}`));
      return new Promise((resolve, reject) => {
        const onEnd = () => reject(new Error(`output ended without "${fragment}":\n${text}`));
        // Dropped once resolved: a test waiting for many lines must not pile up 'end' listeners.
        waiters.push({
          fragment,
          count,
          resolve: () => {
            stream.off('end', onEnd);
            resolve();
          },
        });
        stream.once('end', onEnd);
      });
    },
  };
}
