// Group commit: deliveries that arrive while the disk is busy share one fdatasync of the page
// file and one SQLite transaction (one WAL fsync), each inside its own savepoint so one failing
// delivery never takes the others down. Nothing resolves before its transaction is durable.
// Both fsyncs run on the thread pool, never blocking the store thread.
// A batch in which no job wrote pages (inline bodies, queue updates) skips the page-file
// fdatasync: its bytes are all in the WAL, so the commit's own fsync is the only one needed.
import type { Core } from "./core.ts";

interface Job {
  work: () => unknown;
  /** Undo in-memory effects if the job did not commit (return reserved pages). */
  cleanup: () => void;
  /** The job's rows point at page-file pages it wrote: they must be on disk first. */
  wrotePages: boolean;
  resolve: (v: unknown) => void;
  reject: (e: unknown) => void;
}

export class Committer {
  private pending: Job[] = [];
  private timer: ReturnType<typeof setTimeout> | ReturnType<typeof setImmediate> | null = null;
  private flushing = false;
  private idleWaiters: (() => void)[] = [];
  /** Figures for store.stats and the bench: transactions vs jobs. */
  flushes = 0;
  jobs = 0;
  /** Page-file fdatasyncs done before a commit (batches of inline-only jobs do none). */
  pageSyncs = 0;

  constructor(private core: Core) {}

  /**
   * Run `work` in the next group commit. `wrotePages`: whether it commits page-file pages
   * (conservatively true: a caller that does not say gets the fdatasync).
   */
  submit<T>(work: () => T, cleanup: () => void, wrotePages = true): Promise<T> {
    if (this.core.fatal) {
      cleanup();
      return Promise.reject(this.core.fatalError());
    }
    return new Promise<T>((resolve, reject) => {
      this.pending.push({
        work,
        cleanup,
        wrotePages,
        resolve: resolve as (v: unknown) => void,
        reject,
      });
      this.schedule();
    });
  }

  private schedule(): void {
    if (this.flushing || this.timer) return;
    const ms = this.core.opts.durability === "group" ? this.core.opts.groupCommitMs : 0;
    const run = () => {
      this.timer = null;
      void this.flush();
    };
    // Bun's setTimeout(0) waits ~1 ms (a floor under every commit's latency); setImmediate
    // still lets the jobs that arrive in this turn (one ring drain) join the batch.
    this.timer = ms > 0 ? setTimeout(run, ms) : setImmediate(run);
  }

  private async flush(): Promise<void> {
    this.flushing = true;
    try {
      while (this.pending.length > 0) {
        const batch = this.core.opts.durability === "always"
          ? [this.pending.shift()!]
          : this.pending.splice(0);
        await this.runBatch(batch);
      }
    } finally {
      this.flushing = false;
      for (const w of this.idleWaiters.splice(0)) w();
    }
  }

  private async runBatch(batch: Job[]): Promise<void> {
    // The body pages must be on disk before the rows that point at them.
    if (this.core.opts.durability !== "off" && batch.some((j) => j.wrotePages)) {
      try {
        this.pageSyncs++;
        await this.core.file.datasync();
      } catch (err) {
        // On Linux a failed fsync may have dropped dirty pages of uploads still in flight: a
        // later fsync that "succeeds" would not bring them back. Nothing more is acknowledged
        // from this page file until the store restarts and recovers from committed state.
        this.core.fail(err as Error);
        for (const j of [...batch, ...this.pending.splice(0)]) {
          j.cleanup();
          j.reject(this.core.fatalError());
        }
        return;
      }
    }
    const outcomes: ({ ok: true; value: unknown } | { ok: false; error: unknown })[] = [];
    // The COMMIT writes the WAL without fsync (synchronous=NORMAL keeps SQLite consistent);
    // the fsync follows on the thread pool, so the store thread serves other calls (RCPT
    // lookups, uploads) meanwhile instead of blocking in it. Nothing resolves before it.
    const durable = this.core.opts.durability !== "off";
    let hooks: (() => void)[] = [];
    if (durable) this.core.db.exec("PRAGMA synchronous = NORMAL");
    try {
      ({ hooks } = this.core.tx.runHoldingHooks(() => {
        for (const j of batch) {
          try {
            outcomes.push({ ok: true, value: this.core.tx.savepoint(j.work) });
          } catch (error) {
            outcomes.push({ ok: false, error });
          }
        }
      }));
    } catch (error) {
      // COMMIT itself failed (disk full, I/O error): nothing in the batch is stored.
      for (const j of batch) {
        j.cleanup();
        j.reject(error);
      }
      return;
    } finally {
      if (durable) this.core.db.exec("PRAGMA synchronous = FULL");
    }
    if (durable) {
      try {
        await this.core.wal.sync();
      } catch (err) {
        // Committed but maybe not durable: nobody is told it is stored. The rows are in the
        // database, so nothing in memory is undone; the store restarts from what is on disk.
        this.core.fail(err as Error);
        for (const j of batch) j.reject(this.core.fatalError());
        for (const j of this.pending.splice(0)) {
          j.cleanup();
          j.reject(this.core.fatalError());
        }
        return; // and the batch's after-commit hooks never run: memory must not get ahead
      }
    }
    // Durable now: only from here may memory follow (freed pages reusable, events published).
    for (const h of hooks) {
      try {
        h();
      } catch (err) {
        this.core.log.error("store.after_commit_failed", { error: err as Error });
      }
    }
    this.flushes++;
    this.jobs += batch.length;
    batch.forEach((j, i) => {
      const o = outcomes[i]!;
      if (o.ok) j.resolve(o.value);
      else {
        j.cleanup();
        j.reject(o.error);
      }
    });
  }

  /** Resolves once every submitted job has settled (close, backup). */
  idle(): Promise<void> {
    if (!this.flushing && !this.timer && this.pending.length === 0) return Promise.resolve();
    return new Promise((r) => this.idleWaiters.push(r));
  }
}
