// Free space in the page file. Two views: the persistent free map (table free_extents plus
// meta 'pages', changed only inside transactions, so it is always the crash-recovery truth)
// and the in-memory free list the allocator takes from. Pages reserved for uploads in flight
// exist only in memory, so a crash returns them to the free map by itself: reclaim at
// start-up is just "load the free map and cut the file at meta 'pages'".
//
// Freed pages are not reused while a reader still streams the body that owned them (pins), nor
// while a backup or verify is copying the file (a freeze lease in the meta table, which a CLI
// process can set for a running server).
import type { Database } from "bun:sqlite";
import type { Tx } from "./db.ts";
import { type Extent, ExtentSet } from "./extents.ts";
import type { PageFile } from "./pagefile.ts";

const FREEZE_LEASE_MS = 30_000;

export function getMeta(db: Database, key: string): string | number | null {
  const row = db.query("SELECT value FROM meta WHERE key = ?").get(key) as
    | { value: string | number }
    | null;
  return row ? row.value : null;
}

export function setMeta(db: Database, key: string, value: string | number): void {
  db.query("INSERT INTO meta(key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = ?")
    .run(key, value, value);
}

export class Space {
  /** Pages the allocator may hand out now. */
  readonly free = new ExtentSet();
  /** First page never handed out (the file's logical end including reservations). */
  hwm = 0;
  private quarantine: { bodyId: number | null; extents: Extent[] }[] = [];
  private pins = new Map<number, number>();

  constructor(
    private db: Database,
    private tx: Tx,
    readonly file: PageFile,
    /** Only the process that owns the store allocates; a shared opener (CLI) never does. */
    readonly allocates: boolean,
  ) {
    this.load();
  }

  /** Pages recorded as part of the file (free or used) in the committed state. */
  committedPages(): number {
    return Number(getMeta(this.db, "pages") ?? 0);
  }

  private load(): void {
    this.free.clear();
    this.quarantine = [];
    const pages = this.committedPages();
    this.hwm = pages;
    if (!this.allocates) return;
    // Reclaim: whatever lies beyond the committed end was reserved by a writer that never
    // committed; cut it off so the file matches the free map exactly.
    this.file.truncate(pages * this.file.pageBytes);
    for (const r of this.db.query("SELECT start, count FROM free_extents ORDER BY start").all()) {
      const { start, count } = r as { start: number; count: number };
      this.free.add([start, count]);
    }
  }

  /** Reload after the database changed under us (compact, restore). */
  reload(): void {
    this.load();
  }

  /** Reserve `n` pages for an upload (in memory only: nothing to undo after a crash). */
  reserve(n: number): Extent[] {
    if (!this.allocates) throw new Error("this store handle is read-mostly: no page allocation");
    if (this.quarantine.length > 0) this.releaseQuarantine();
    const got = this.free.take(n);
    let have = 0;
    for (const e of got) have += e[1];
    if (have < n) {
      got.push([this.hwm, n - have]);
      this.hwm += n - have;
    }
    return got;
  }

  /** Reserved pages not needed after all. */
  giveBack(extents: readonly Extent[]): void {
    for (const e of extents) this.free.add(e);
  }

  /** Inside a transaction: `extents` now belong to a committed body. */
  commitUsed(extents: readonly Extent[]): void {
    const pages = this.committedPages();
    if (this.hwm > pages) {
      // The file grew: record the new end, with every page not yet committed as free.
      this.insertFree(pages, this.hwm - pages);
      setMeta(this.db, "pages", this.hwm);
    }
    for (const e of extents) this.removeFree(e[0], e[1]);
  }

  /** Inside a transaction: a body's pages are free again. */
  release(bodyId: number | null, extents: readonly Extent[]): void {
    for (const e of extents) this.insertFree(e[0], e[1]);
    if (!this.allocates) return;
    const frozen = this.frozen();
    const copy = extents.map((e): Extent => [e[0], e[1]]);
    this.tx.afterCommit(() => {
      if (frozen || (bodyId !== null && this.pins.has(bodyId))) {
        this.quarantine.push({ bodyId, extents: copy });
      } else for (const e of copy) this.free.add(e);
    });
  }

  pin(bodyId: number): void {
    this.pins.set(bodyId, (this.pins.get(bodyId) ?? 0) + 1);
  }

  unpin(bodyId: number): void {
    const n = (this.pins.get(bodyId) ?? 1) - 1;
    if (n > 0) this.pins.set(bodyId, n);
    else {
      this.pins.delete(bodyId);
      if (this.quarantine.length > 0) this.releaseQuarantine();
    }
  }

  private releaseQuarantine(): void {
    if (this.frozen()) return;
    const keep: typeof this.quarantine = [];
    for (const q of this.quarantine) {
      if (q.bodyId !== null && this.pins.has(q.bodyId)) keep.push(q);
      else for (const e of q.extents) this.free.add(e);
    }
    this.quarantine = keep;
  }

  /** A backup or verify (maybe in another process) needs freed pages left untouched. */
  frozen(): boolean {
    return this.db.query(
      "SELECT 1 FROM meta WHERE key >= 'freeze:' AND key < 'freeze;' AND value > ? LIMIT 1",
    ).get(Date.now()) !== null;
  }

  /** Hold a freeze lease while `fn` runs; renewed so a long copy stays covered. */
  async withFreeze<T>(fn: () => Promise<T>): Promise<T> {
    const key = `freeze:${process.pid}:${crypto.randomUUID()}`;
    const renew = () => this.tx.run(() => setMeta(this.db, key, Date.now() + FREEZE_LEASE_MS));
    renew();
    const timer = setInterval(renew, FREEZE_LEASE_MS / 3);
    try {
      return await fn();
    } finally {
      clearInterval(timer);
      this.tx.run(() => {
        this.db.query("DELETE FROM meta WHERE key = ?").run(key);
        this.db.query("DELETE FROM meta WHERE key >= 'freeze:' AND key < 'freeze;' AND value < ?")
          .run(Date.now());
      });
      if (this.allocates) this.releaseQuarantine();
    }
  }

  /** Persistent free map: add a run, merging with its neighbours. */
  private insertFree(start: number, count: number): void {
    if (count <= 0) return;
    const left = this.db.query(
      "SELECT start, count FROM free_extents WHERE start < ? ORDER BY start DESC LIMIT 1",
    ).get(start) as { start: number; count: number } | null;
    const right = this.db.query(
      "SELECT start, count FROM free_extents WHERE start >= ? ORDER BY start LIMIT 1",
    ).get(start) as { start: number; count: number } | null;
    if (left && left.start + left.count > start) {
      throw new Error(`free map: pages ${start}+${count} overlap a free run at ${left.start}`);
    }
    if (right && right.start < start + count) {
      throw new Error(`free map: pages ${start}+${count} overlap a free run at ${right.start}`);
    }
    let s = start, c = count;
    if (left && left.start + left.count === start) {
      s = left.start;
      c += left.count;
      this.db.query("DELETE FROM free_extents WHERE start = ?").run(left.start);
    }
    if (right && right.start === start + count) {
      c += right.count;
      this.db.query("DELETE FROM free_extents WHERE start = ?").run(right.start);
    }
    this.db.query("INSERT INTO free_extents(start, count) VALUES (?, ?)").run(s, c);
  }

  /** Persistent free map: take a run out (it must lie inside one free run). */
  private removeFree(start: number, count: number): void {
    const row = this.db.query(
      "SELECT start, count FROM free_extents WHERE start <= ? ORDER BY start DESC LIMIT 1",
    ).get(start) as { start: number; count: number } | null;
    if (!row || row.start + row.count < start + count) {
      throw new Error(`free map: pages ${start}+${count} are not free`);
    }
    this.db.query("DELETE FROM free_extents WHERE start = ?").run(row.start);
    if (start > row.start) {
      this.db.query("INSERT INTO free_extents(start, count) VALUES (?, ?)").run(
        row.start,
        start - row.start,
      );
    }
    const end = start + count, rowEnd = row.start + row.count;
    if (rowEnd > end) {
      this.db.query("INSERT INTO free_extents(start, count) VALUES (?, ?)").run(end, rowEnd - end);
    }
  }

  /** Readers or quarantined pages exist (compaction must wait). */
  busy(): boolean {
    return this.pins.size > 0 || this.quarantine.length > 0;
  }

  /** After `shrinkTo`: forget pages beyond the new end, in memory and on disk. */
  truncateTo(pages: number): void {
    this.free.truncate(pages);
    this.hwm = pages;
    this.file.truncate(pages * this.file.pageBytes);
  }

  /** Compaction: cut the committed file at `pages` (everything beyond must be free). */
  shrinkTo(pages: number): void {
    const old = this.committedPages();
    if (pages >= old) return;
    const tail = this.db.query(
      "SELECT start, count FROM free_extents WHERE start + count > ? ORDER BY start",
    ).all(pages) as { start: number; count: number }[];
    let covered = 0;
    for (const r of tail) covered += r.start + r.count - Math.max(r.start, pages);
    if (covered !== old - pages) throw new Error("compact: the tail of the file is not free");
    for (const r of tail) {
      this.db.query("DELETE FROM free_extents WHERE start = ?").run(r.start);
      if (r.start < pages) {
        this.db.query("INSERT INTO free_extents(start, count) VALUES (?, ?)").run(
          r.start,
          pages - r.start,
        );
      }
    }
    setMeta(this.db, "pages", pages);
  }
}
