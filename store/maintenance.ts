// Backup, restore and compaction of a whole store. A backup is a consistent online snapshot:
// SQLite via VACUUM INTO, then the page file up to the snapshot's end, under a freeze lease
// so no page the snapshot references is reused while it is copied. Inline bodies travel inside
// the SQLite copy; compaction leaves them alone.
import { Database } from "bun:sqlite";
import * as fs from "node:fs";
import { join } from "node:path";
import { StoreError } from "../ipc/store-api.ts";
import { type Core, DB_FILE, PAGE_FILE } from "./core.ts";
import type { Extent } from "./extents.ts";
import { currentOwner } from "./owner.ts";
import { getMeta, setMeta } from "./space.ts";

export const MANIFEST = "backup.json";

export interface BackupManifest {
  format: "posthorn-store-backup";
  version: 1;
  createdAt: string;
  pages: number;
  pageBytes: number;
  bodies: number;
  messages: number;
}

function fsyncPath(path: string): void {
  const fd = fs.openSync(path, "r");
  try {
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
}

export async function backup(core: Core, dir: string): Promise<BackupManifest> {
  fs.mkdirSync(dir, { recursive: true });
  if (fs.readdirSync(dir).length > 0) {
    throw new StoreError("exists", `backup directory ${dir} is not empty`);
  }
  return await core.space.withFreeze(async () => {
    const dbCopy = join(dir, DB_FILE);
    core.db.query("VACUUM INTO ?").run(dbCopy);
    await new Promise((r) => setTimeout(r, 0)); // the server keeps committing meanwhile
    const snap = new Database(dbCopy, { readonly: true, strict: true });
    let pages: number, bodies: number, messages: number;
    try {
      pages = Number(
        (snap.query("SELECT value FROM meta WHERE key = 'pages'").get() as { value: number })
          .value,
      );
      bodies = (snap.query("SELECT count(*) AS n FROM bodies").get() as { n: number }).n;
      messages = (snap.query("SELECT count(*) AS n FROM messages").get() as { n: number }).n;
    } finally {
      snap.close();
    }
    const bytes = pages * core.pageBytes;
    const out = fs.openSync(join(dir, PAGE_FILE), "w", 0o600);
    try {
      const have = Math.min(bytes, core.file.sizeBytes());
      const step = 1 << 20;
      for (let pos = 0; pos < have; pos += step) {
        const chunk = core.file.readAbs(pos, Math.min(step, have - pos));
        fs.writeSync(out, chunk, 0, chunk.length, pos);
        await new Promise((r) => setTimeout(r, 0)); // keep serving between chunks
      }
      fs.ftruncateSync(out, bytes);
      fs.fsyncSync(out);
    } finally {
      fs.closeSync(out);
    }
    fsyncPath(dbCopy);
    const manifest: BackupManifest = {
      format: "posthorn-store-backup",
      version: 1,
      createdAt: new Date().toISOString(),
      pages,
      pageBytes: core.pageBytes,
      bodies,
      messages,
    };
    fs.writeFileSync(join(dir, MANIFEST), JSON.stringify(manifest, null, 2) + "\n");
    fsyncPath(join(dir, MANIFEST));
    core.log.info("store.backup", { dir, pages, bodies, messages });
    return manifest;
  });
}

/** Replace the store in `storeDir` with the backup in `backupDir` (no process may own it). */
export function restore(backupDir: string, storeDir: string): BackupManifest {
  const manifest = JSON.parse(fs.readFileSync(join(backupDir, MANIFEST), "utf8")) as BackupManifest;
  if (manifest.format !== "posthorn-store-backup") {
    throw new StoreError("invalid", `${backupDir} is not a Posthorn store backup`);
  }
  const owner = currentOwner(storeDir);
  if (owner !== null) throw new StoreError("in_use", `store is in use by process ${owner}`);
  fs.mkdirSync(storeDir, { recursive: true });
  for (const f of [DB_FILE, `${DB_FILE}-wal`, `${DB_FILE}-shm`, PAGE_FILE]) {
    fs.rmSync(join(storeDir, f), { force: true });
  }
  // Copy to temporary names first, so an interrupted restore leaves no half store in place.
  for (const f of [PAGE_FILE, DB_FILE]) {
    fs.copyFileSync(join(backupDir, f), join(storeDir, f + ".restoring"));
    fsyncPath(join(storeDir, f + ".restoring"));
  }
  markRestored(join(storeDir, DB_FILE + ".restoring"));
  fs.renameSync(join(storeDir, PAGE_FILE + ".restoring"), join(storeDir, PAGE_FILE));
  fs.renameSync(join(storeDir, DB_FILE + ".restoring"), join(storeDir, DB_FILE));
  fsyncPath(storeDir);
  return manifest;
}

/**
 * Move bodies from the end of the page file into free runs nearer the start, then cut the
 * file. Synchronous: the store serves nothing else meanwhile (refused while bodies are being
 * received or read, whose pages could move).
 */
export function compact(core: Core, uploadsInFlight: number): { before: number; after: number } {
  if (!core.owner) {
    throw new StoreError(
      "in_use",
      "compact needs the store's owner (stop the server or use its admin API)",
    );
  }
  if (uploadsInFlight > 0 || core.space.busy()) {
    throw new StoreError("busy", "messages are being received or read; try again");
  }
  const pb = core.pageBytes;
  const before = core.space.committedPages();
  // Inline bodies hold no pages: nothing to move.
  const bodies = core.db.query("SELECT id, size, extents FROM bodies WHERE inline IS NULL")
    .all() as {
      id: number;
      size: number;
      extents: string;
    }[];
  let usedPages = 0;
  for (const b of bodies) usedPages += Math.ceil(b.size / pb);
  const goal = usedPages;
  const moves: { id: number; old: Extent[]; fresh: Extent[] }[] = [];
  for (const b of bodies) {
    const old = JSON.parse(b.extents) as Extent[];
    if (!old.some(([s, c]) => s + c > goal)) continue;
    const fresh = core.space.free.takeFront(Math.ceil(b.size / pb));
    // Copy in page-file order; the new pages are free, the old stay intact until COMMIT.
    let offset = 0;
    for (const [pos, len] of core.file.ranges(old, b.size, 1 << 20)) {
      core.file.writeAt(fresh, offset, core.file.readAbs(pos, len));
      offset += len;
    }
    moves.push({ id: b.id, old, fresh });
  }
  core.file.datasyncNow();
  core.tx.run(() => {
    for (const m of moves) {
      core.space.commitUsed(m.fresh);
      core.db.query("UPDATE bodies SET extents = ? WHERE id = ?").run(
        JSON.stringify(m.fresh),
        m.id,
      );
      core.space.release(null, m.old);
    }
  });
  // Released pages reached the free list at COMMIT; cut after the last used page.
  let after = 0;
  for (const r of core.db.query("SELECT extents FROM bodies").all() as { extents: string }[]) {
    for (const [s, c] of JSON.parse(r.extents) as Extent[]) after = Math.max(after, s + c);
  }
  core.tx.run(() => core.space.shrinkTo(after));
  core.space.truncateTo(after);
  core.log.info("store.compact", { before, after, moved: moves.length });
  return { before, after };
}

/**
 * Ids and UIDs handed out after the backup was taken will be handed out again. Clients that saw
 * them must not mistake new mail for old: the POP3 UIDL epoch moves on, and every folder gets
 * a new UIDVALIDITY (RFC 3501 §2.3.1.1), so IMAP clients resynchronise.
 */
function markRestored(dbFile: string): void {
  const db = new Database(dbFile);
  try {
    db.transaction(() => {
      setMeta(db, "uidl_epoch", Number(getMeta(db, "uidl_epoch") ?? 0) + 1);
      db.run("UPDATE folders SET uid_validity = max(uid_validity + 1, unixepoch())");
    })();
    db.run("PRAGMA wal_checkpoint(TRUNCATE)");
  } finally {
    db.close();
  }
  fsyncPath(dbFile);
}
