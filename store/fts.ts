// The full-text index (FTS5 table body_fts, rowid = body id), filled behind the deliveries,
// the way Dovecot's lazy fts indexing works: a new body is only recorded in fts_pending, one
// small row in the transaction that commits it anyway, and indexed later: when the store has
// been quiet for a moment, or when a search of its folder needs it, or once the backlog
// reaches store.indexBacklog under load that never pauses (a burst of mail is taken at full
// speed and indexed after; a flood that never ends is indexed as it comes). FTS5 writes a segment per transaction,
// so one body per delivery commit cost ~525 µs per 1 KiB document against ~65 µs in batches
// (measured here, fsync on), and tokenising 64 KiB of text sat on the path every SMTP 250
// waited for. Work runs in slices (INDEX_BATCH bodies, SLICE_BYTES of text) so the store
// thread is never held for long.
import type { Core } from "./core.ts";
import { getBody, readBodyStart } from "./bodies.ts";
import { indexText } from "./index-text.ts";

/** Bodies indexed per transaction (a slice): enough to amortise FTS5's per-commit segment. */
export const INDEX_BATCH = 128;
/** Raw bytes read per body for its index text, as a multiple of store.indexBytes. */
const RAW_WINDOW = 4;
/** Raw bytes read per slice at most (~10 ms of the store thread). */
const SLICE_BYTES = 1 << 20;
/** How long after the last delivery the store counts as quiet. */
const IDLE_MS = 200;
/** store.indexBacklog's default: pending bodies beyond which indexing goes on even while
 * deliveries keep coming. At ~150 µs per 64 KiB message that is ~2.5 s of work that a first
 * search of a flooded folder may have to do (in slices, never holding the store). */
export const DEFAULT_INDEX_BACKLOG = 16384;

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
  #lastQueued = 0;
  /** Figures for store.stats and tests. */
  indexed = 0;

  constructor(private core: Core) {
    this.#waiting = this.pending();
    // The server picks up what a crash or a CLI left queued; a CLI never indexes in the
    // background (it indexes only what a search of its own needs).
    if (this.#waiting > 0) this.#scheduleIdle(IDLE_MS);
  }

  /** Bodies not indexed yet (a query: exact). */
  pending(): number {
    return (this.core.db.query("SELECT count(*) AS n FROM fts_pending").get() as { n: number }).n;
  }

  /** A delivery queued a body: index when quiet, or now if the backlog is too long. */
  noteQueued(): void {
    this.#waiting++;
    this.#lastQueued = performance.now();
    if (this.#waiting >= this.core.indexBacklog) this.#scheduleSoon();
    else this.#scheduleIdle();
  }

  /**
   * Index every pending body of a folder (before a search of it), slice by slice, letting
   * the store serve other calls between slices: a first search after a long backlog (or after
   * the index was rebuilt) must not hold every protocol for its whole duration.
   */
  async indexFolder(folderId: number): Promise<void> {
    // The last slice finds nothing pending and the caller's query follows in the same turn
    // (only microtasks between), so no delivery can slip in unindexed.
    while (this.indexSlice(folderId) > 0) await new Promise((r) => setImmediate(r));
  }

  /**
   * Index one slice of pending bodies (of `folderId` only, if given) in one transaction;
   * returns how many it took.
   */
  indexSlice(folderId: number | null = null): number {
    const core = this.core;
    if (core.closed || core.fatal) return 0;
    const done = core.tx.run(() => {
      const ids = (folderId === null
        ? core.db.query("SELECT body_id FROM fts_pending ORDER BY body_id LIMIT ?")
          .all(INDEX_BATCH)
        : core.db.query(
          `SELECT DISTINCT p.body_id FROM fts_pending p JOIN messages m ON m.body_id = p.body_id
           WHERE m.folder_id = ? ORDER BY p.body_id LIMIT ?`,
        ).all(folderId, INDEX_BATCH)) as { body_id: number }[];
      let bytes = 0;
      let n = 0;
      for (const { body_id: id } of ids) {
        if (bytes >= SLICE_BYTES) {
          break;
        }
        n++;
        core.db.query("DELETE FROM fts_pending WHERE body_id = ?").run(id);
        if (core.indexBytes <= 0) {
          continue; // indexing switched off
        }
        try {
          const body = getBody(core, id);
          if (!body) {
            continue; // gone
          }
          // Text parts usually come first; an attachment before them is skipped, not indexed,
          // so the raw window is larger than the text budget (store.indexBytes).
          const start = readBodyStart(core, body, core.indexBytes * RAW_WINDOW);
          bytes += start.length;
          const t = indexText(start, core.indexBytes);
          core.db.query("INSERT INTO body_fts(rowid, headers, text) VALUES (?, ?, ?)")
            .run(id, t.headers, t.text);
        } catch (err) {
          // One body that cannot be read or indexed must not stall the index for all others.
          core.log.warn("store.fts_body_skipped", { bodyId: id, error: err as Error });
        }
      }
      return n;
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
      this.#run();
    });
  }

  /**
   * Runs once no delivery has been queued for IDLE_MS, and not before `minMs`: one timer that
   * re-arms itself while deliveries keep coming, not a new timer per delivery.
   */
  #scheduleIdle(minMs = 0): void {
    if (this.#stopped || !this.core.owner || this.#idle) return;
    const wait = Math.max(1, minMs, this.#lastQueued + IDLE_MS - performance.now());
    this.#idle = setTimeout(() => {
      this.#idle = null;
      if (performance.now() - this.#lastQueued < IDLE_MS) this.#scheduleIdle();
      else this.#run();
    }, wait);
    this.#idle.unref?.();
  }

  /** One slice; the next at the next turn (commits run in between) while there is more. */
  #run(): void {
    let done = 0;
    try {
      done = this.indexSlice();
    } catch (err) {
      // The index is a convenience, the mail is not at stake: log, and try again when idle.
      this.core.log.warn("store.fts_index_failed", { error: err as Error });
      this.#scheduleIdle(IDLE_MS);
      return;
    }
    if (done === 0) return;
    // Deliveries resumed: wait for the next quiet moment, unless the backlog is too long.
    const busy = performance.now() - this.#lastQueued < IDLE_MS;
    if (busy && this.#waiting < this.core.indexBacklog) this.#scheduleIdle();
    else this.#scheduleSoon();
  }
}
