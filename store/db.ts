// Opening the SQLite database (WAL, busy timeout so the CLI and the server can share it),
// running migrations, and transactions with after-commit hooks: in-memory state (the free
// list, events) changes only once the rows that justify it are committed.
import { Database } from "bun:sqlite";
import { closeSync, fdatasync, fstatSync, openSync, statSync } from "node:fs";
import { MIGRATIONS } from "./migrations.ts";

export type Durability = "always" | "group" | "off";

export function openDatabase(path: string, durability: Durability): Database {
  const db = new Database(path, { create: true, strict: true });
  db.exec("PRAGMA busy_timeout = 10000");
  db.exec("PRAGMA journal_mode = WAL");
  // FULL: each commit fsyncs the WAL, so a committed delivery survives power loss.
  db.exec(`PRAGMA synchronous = ${durability === "off" ? "OFF" : "FULL"}`);
  db.exec("PRAGMA foreign_keys = OFF");
  migrate(db);
  return db;
}

export function schemaVersion(db: Database): number {
  return (db.query("PRAGMA user_version").get() as { user_version: number }).user_version;
}

function migrate(db: Database): void {
  const current = schemaVersion(db);
  if (current > MIGRATIONS.length) {
    throw new Error(
      `store schema version ${current} is newer than this program (${MIGRATIONS.length})`,
    );
  }
  for (let v = current; v < MIGRATIONS.length; v++) {
    db.transaction(() => {
      db.exec(MIGRATIONS[v]!);
      db.exec(`PRAGMA user_version = ${v + 1}`);
    }).immediate();
  }
}

/** Transactions whose side effects on memory run only after COMMIT. */
export class Tx {
  private frames: (() => void)[][] = [];
  constructor(readonly db: Database) {}

  get active(): boolean {
    return this.frames.length > 0;
  }

  /** Run `fn` after the outermost transaction commits (immediately outside one). */
  afterCommit(fn: () => void): void {
    const top = this.frames[this.frames.length - 1];
    if (top) top.push(fn);
    else fn();
  }

  /** A write transaction (BEGIN IMMEDIATE, so a concurrent CLI waits rather than deadlocks). */
  run<T>(fn: () => T): T {
    if (this.active) return this.savepoint(fn);
    const { result, hooks } = this.runHoldingHooks(fn);
    for (const h of hooks) h();
    return result;
  }

  /**
   * A write transaction whose after-commit hooks are handed back instead of run: the group
   * commit runs them only once the commit is durable (its WAL fsync follows the COMMIT), so
   * nothing in memory (a freed page back in the free list, an event) gets ahead of the disk.
   */
  runHoldingHooks<T>(fn: () => T): { result: T; hooks: (() => void)[] } {
    if (this.active) throw new Error("runHoldingHooks inside a transaction");
    this.frames.push([]);
    try {
      const result = this.db.transaction(fn).immediate();
      return { result, hooks: this.frames[0]! };
    } finally {
      this.frames = [];
    }
  }

  /** A nested unit that can fail alone (one recipient in a group commit). */
  savepoint<T>(fn: () => T): T {
    this.frames.push([]);
    this.db.exec("SAVEPOINT unit");
    try {
      const result = fn();
      this.db.exec("RELEASE unit");
      const mine = this.frames.pop()!;
      this.frames[this.frames.length - 1]!.push(...mine);
      return result;
    } catch (err) {
      this.db.exec("ROLLBACK TO unit");
      this.db.exec("RELEASE unit");
      this.frames.pop();
      throw err;
    }
  }
}

/**
 * The database's write-ahead log seen from outside SQLite, so a group commit can make its
 * COMMIT durable off the store thread: the batch commits with synchronous=NORMAL (frames
 * written, no fsync: SQLite stays consistent, only durability waits), then this fdatasyncs the
 * WAL on the thread pool while the store serves other calls, and only then is anyone told.
 * fsync is per inode, so a read-only descriptor of our own does it; reopened if SQLite ever
 * replaces the file.
 */
export class WalFile {
  #fd: number | null = null;
  #ino = -1;

  constructor(readonly path: string) {}

  sync(): Promise<void> {
    let fd: number;
    try {
      fd = this.#descriptor();
    } catch (err) {
      return Promise.reject(err);
    }
    return new Promise((resolve, reject) => fdatasync(fd, (err) => err ? reject(err) : resolve()));
  }

  close(): void {
    if (this.#fd !== null) closeSync(this.#fd);
    this.#fd = null;
  }

  #descriptor(): number {
    const ino = statSync(this.path).ino; // the WAL exists while the database is open in WAL mode
    if (this.#fd !== null && ino === this.#ino) return this.#fd;
    this.close();
    const fd = openSync(this.path, "r");
    this.#fd = fd;
    this.#ino = fstatSync(fd).ino;
    return fd;
  }
}
