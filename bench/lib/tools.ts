/**
 * The external tools the bench drives (wrk, nginx, haproxy, taskset): found on PATH or in /usr/sbin, and
 * installed with apt-get when missing and the harness runs as root with apt available. Whatever is still
 * missing is reported by name and its rows are skipped, never a crash.
 */
import { existsSync } from 'node:fs';
import { hasCommand, runSync } from './procs.ts';

export interface Tools {
  readonly wrk: string | undefined;
  readonly nginx: string | undefined;
  readonly haproxy: string | undefined;
  readonly taskset: boolean;
  /** Only looked for in instruction-count mode. */
  readonly valgrind: string | undefined;
  /** What could not be found or installed, one line each. */
  readonly problems: string[];
}

function locate(name: string): string | undefined {
  if (hasCommand(name)) return runSync('sh', ['-c', `command -v ${name}`]).out.trim();
  for (const dir of ['/usr/sbin', '/usr/local/sbin', '/usr/local/bin', '/usr/bin']) {
    if (existsSync(`${dir}/${name}`)) return `${dir}/${name}`;
  }
  return undefined;
}

/** Finds the tools; with `install`, apt-get installs the missing ones first (root + apt only). */
export function ensureTools(install: boolean, log: (line: string) => void, withValgrind = false): Tools {
  const wanted: Array<[string, string[]]> = [
    ['wrk', ['wrk']],
    ['nginx', ['nginx-light', 'nginx']],
    ['haproxy', ['haproxy']],
    ['taskset', ['util-linux']],
  ];
  if (withValgrind) wanted.push(['valgrind', ['valgrind']]);
  const missing = wanted.filter(([name]) => locate(name) === undefined);
  const problems: string[] = [];
  if (missing.length > 0 && install) {
    const isRoot = process.getuid?.() === 0;
    if (!isRoot || !hasCommand('apt-get')) {
      problems.push(`cannot install ${missing.map(([n]) => n).join(', ')}: ${isRoot ? 'no apt-get' : 'not root'}`);
    } else {
      for (const [name, packages] of missing) {
        let done = false;
        for (const pkg of packages) {
          log(`installing ${pkg} (apt-get) for ${name} ...`);
          let result = runSync('apt-get', ['install', '-y', '-qq', pkg]);
          if (result.status !== 0) {
            runSync('apt-get', ['update', '-qq']);
            result = runSync('apt-get', ['install', '-y', '-qq', pkg]);
          }
          if (result.status === 0 && locate(name) !== undefined) {
            done = true;
            break;
          }
        }
        if (!done) problems.push(`apt-get could not install ${name} (tried ${packages.join(', ')})`);
      }
    }
  }
  const tools: Tools = {
    wrk: locate('wrk'),
    nginx: locate('nginx'),
    haproxy: locate('haproxy'),
    taskset: locate('taskset') !== undefined,
    valgrind: withValgrind ? locate('valgrind') : undefined,
    problems,
  };
  if (tools.wrk === undefined) problems.push('missing: wrk (apt-get install wrk) — nothing can be measured');
  if (tools.nginx === undefined) problems.push('missing: nginx (apt-get install nginx-light) — no backend');
  if (tools.haproxy === undefined) problems.push('missing: haproxy (apt-get install haproxy) — HAProxy rows skipped');
  if (!tools.taskset) problems.push('missing: taskset (util-linux) — processes are not pinned');
  return tools;
}
