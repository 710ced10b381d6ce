// The full-text index (FTS5 table body_fts, rowid = body id), filled behind the deliveries:
// a new body is only recorded in fts_pending, one small row in the transaction that commits it
// anyway, and the FullTextIndexer indexes pending bodies later, many per transaction. FTS5
// writes a new segment per transaction, so one body per delivery commit cost ~525 µs per 1 KiB
// document against ~65 µs in batches of 128 (measured on these machines, fsync on), and it
// sat on the path every SMTP 250 waits for. A search indexes whatever is pending first, so it
// always sees every committed message.
import type { Core } from "./core.ts";
import { getBody, readBodyStart } from "./bodies.ts";
import { indexText } from "./headers.ts";

/** Bodies indexed per transaction: large enough to amortise FTS5's per-commit segment. */
export const INDEX_BATCH = 128;
/** After the last delivery, how long the store must be quiet before a partial batch runs. */
const IDLE_MS = 50;

/** Inside the transaction that stores a new body: index it later. */
export function queueForIndex(core: Core, bodyId: number): void {
  if (core.indexBytes <= 0) return;
  core.db.query("INSERT OR IGNORE INTO fts_pending(body_id) VALUES (?)").run(bodyId);
  core.tx.afterCommit(() => core.indexer.noteQueued());
}

/** Inside the transaction that frees a body: out of the index, or out of the queue for it. */
export function dropFromIndex(core: Core, bodyId: number): void {
  core.db.query("DELETE FROM body_fts WHERE rowid = ?").run(bodyId);
  core.db.query("DELETE FROM fts_pending WHERE body_id = ?").run(bodyId);
}

export class FullTextIndexer {
  /** Bodies waiting, as far as this process knows (a hint for scheduling only). */
  #waiting: number;
  #soon: ReturnType<typeof setImmediate> | null = null;
  #idle: ReturnType<typeof setTimeout> | null = null;
  #stopped = false;
  /** Figures for store.stats and tests. */
  indexed = 0;

  constructor(private core: Core) {
    this.#waiting = this.pending();
    // The server picks up what a crash or a CLI left queued; a CLI never indexes in the
    // background (it indexes only what a search of its own needs).
    if (this.#waiting > 0) this.#scheduleIdle();
  }

  /** Bodies not indexed yet (a query: exact). */
  pending(): number {
    return (this.core.db.query("SELECT count(*) AS n FROM fts_pending").get() as { n: number }).n;
  }

  /** A delivery queued a body: a full batch runs at the next turn, a partial one when idle. */
  noteQueued(): void {
    this.#waiting++;
    if (this.#waiting >= INDEX_BATCH) this.#scheduleSoon();
    else this.#scheduleIdle();
  }

  /** Index everything pending now (before a search), in batches. */
  indexAll(): void {
    while (this.indexBatch(INDEX_BATCH) > 0) { /* until the queue is empty */ }
  }

  /** Index up to `max` pending bodies in one transaction; returns how many it took. */
  indexBatch(max: number): number {
    const core = this.core;
    if (core.closed || core.fatal) return 0;
    const done = core.tx.run(() => {
      const ids = (core.db.query("SELECT body_id FROM fts_pending ORDER BY body_id LIMIT ?")
        .all(max) as { body_id: number }[]).map((r) => r.body_id);
      for (const id of ids) {
        core.db.query("DELETE FROM fts_pending WHERE body_id = ?").run(id);
        const body = getBody(core, id);
        if (!body || core.indexBytes <= 0) continue; // gone, or indexing switched off
        const t = indexText(readBodyStart(core, body, core.indexBytes));
        core.db.query("INSERT INTO body_fts(rowid, headers, text) VALUES (?, ?, ?)")
          .run(id, t.headers, t.text);
      }
      return ids.length;
    });
    this.indexed += done;
    this.#waiting = Math.max(0, this.#waiting - done);
    return done;
  }

  stop(): void {
    this.#stopped = true;
    if (this.#soon) clearImmediate(this.#soon);
    if (this.#idle) clearTimeout(this.#idle);
    this.#soon = this.#idle = null;
  }

  #scheduleSoon(): void {
    if (this.#soon || this.#stopped || !this.core.owner) return;
    this.#soon = setImmediate(() => {
      this.#soon = null;
      this.#run(this.#waiting >= INDEX_BATCH);
    });
  }

  #scheduleIdle(): void {
    if (this.#stopped || !this.core.owner) return;
    if (this.#idle) clearTimeout(this.#idle);
    this.#idle = setTimeout(() => {
      this.#idle = null;
      this.#run(true);
    }, IDLE_MS);
    this.#idle.unref?.();
  }

  /** One batch; then another at the next turn while there is more (commits run in between). */
  #run(more: boolean): void {
    let done = 0;
    try {
      done = this.indexBatch(INDEX_BATCH);
    } catch (err) {
      // The index is a convenience, the mail is not at stake: log, and try again when idle.
      this.core.log.warn("store.fts_index_failed", { error: err as Error });
      this.#scheduleIdle();
      return;
    }
    if (done > 0 && more) this.#scheduleSoon();
  }
}
