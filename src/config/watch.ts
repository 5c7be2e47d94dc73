/**
 * Watches a config file for changes. The directory is watched, not the file: editors and config-management
 * tools replace files by rename, which ends a watch on the old inode. Bursts of events are coalesced.
 */
import { watch } from 'node:fs';
import { basename, dirname, resolve } from 'node:path';

export function watchConfigFile(file: string, onChange: () => void, settleMs = 100): () => void {
  const path = resolve(file);
  const name = basename(path);
  let timer: NodeJS.Timeout | undefined;
  const watcher = watch(dirname(path), (_event, changed) => {
    if (changed !== null && changed !== name) return;
    clearTimeout(timer);
    timer = setTimeout(onChange, settleMs);
  });
  watcher.unref();
  return () => {
    clearTimeout(timer);
    watcher.close();
  };
}
