// Watching the metabase for edits. The folder is watched, not the file: editors and our own
// atomic writes replace the file by rename, which ends a watch on the old inode.
import { type FSWatcher, watch } from "node:fs";
import { basename, dirname } from "node:path";
import { loadMetabase, type LoadResult } from "./load.ts";

export interface MetabaseWatcher {
  /** Re-read now (SIGHUP does this). */
  poke(): void;
  close(): void;
}

/** Calls `onChange` with each new load result whose text differs from the last one seen. */
export function watchMetabase(
  file: string,
  initialText: string,
  onChange: (r: LoadResult) => void,
): MetabaseWatcher {
  let last = initialText;
  let timer: ReturnType<typeof setTimeout> | null = null;
  const check = (force: boolean) => {
    timer = null;
    const r = loadMetabase(file);
    if (r.text === null) return; // mid-rename or deleted: wait for the next event
    if (!force && r.text === last) return;
    last = r.text;
    onChange(r);
  };
  const schedule = () => {
    if (timer) clearTimeout(timer);
    timer = setTimeout(() => check(false), 150); // editors write in bursts
  };
  let watcher: FSWatcher | null = null;
  try {
    watcher = watch(dirname(file), (_ev, name) => {
      if (!name || name.toString() === basename(file)) schedule();
    });
  } catch { /* no inotify: SIGHUP still works */ }
  // Belt and braces: some filesystems drop events; a cheap poll catches them.
  const poll = setInterval(schedule, 2000);
  poll.unref?.();
  return {
    poke: () => check(true),
    close: () => {
      watcher?.close();
      clearInterval(poll);
      if (timer) clearTimeout(timer);
    },
  };
}
