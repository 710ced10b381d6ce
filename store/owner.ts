// Who owns the store directory: the one process that allocates pages (the server, or the CLI
// when no server runs). Recorded as a pid file; a dead owner (crash, SIGKILL) is replaced.
// Others open the database "shared": SQL-only work, no page allocation, no reclaim.
import * as fs from "node:fs";
import { join } from "node:path";
import { liveStampPid, ownStamp, parseStamp } from "../pidfile/mod.ts";

export function ownerFile(dir: string): string {
  return join(dir, "owner.pid");
}

/** The live owner's pid, or null (also when the recorded pid now names another process). */
export function currentOwner(dir: string): number | null {
  return liveStampPid(ownerFile(dir));
}

/** Become the owner if nobody alive is; returns whether we did. */
export function tryOwn(dir: string): boolean {
  const path = ownerFile(dir);
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      const fd = fs.openSync(path, "wx", 0o600); // O_EXCL: two starters cannot both win
      fs.writeSync(fd, ownStamp());
      fs.closeSync(fd);
      return true;
    } catch (err) {
      if ((err as { code?: string }).code !== "EEXIST") throw err;
      const owner = currentOwner(dir);
      // Our own pid: a store worker of this process died without closing (the supervisor
      // runs one store at a time), so its successor takes over.
      if (owner !== null && owner !== process.pid) return false;
      try {
        fs.unlinkSync(path); // stale: its process is gone
      } catch { /* another starter removed it first */ }
    }
  }
  return false;
}

export function disown(dir: string): void {
  try {
    if (parseStamp(fs.readFileSync(ownerFile(dir), "utf8"))?.pid === process.pid) {
      fs.unlinkSync(ownerFile(dir));
    }
  } catch { /* already gone */ }
}
