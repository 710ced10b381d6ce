// The store's shared state: the database, the page file, the allocator and the options. Every
// other module of store/ is a set of functions over a `Core`; nothing outside store/ sees it.
import type { Database } from "bun:sqlite";
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import type { Publisher } from "../ipc/store-client.ts";
import type { StoreTopics } from "../ipc/store-api.ts";
import type { Logger } from "../log/mod.ts";
import type { Metabase } from "../metabase/schema.ts";
import { StoreError } from "../ipc/store-api.ts";
import { type Durability, openDatabase, Tx, WalFile } from "./db.ts";
import { DEFAULT_INDEX_BACKLOG, FullTextIndexer } from "./fts.ts";
import { currentOwner, disown, tryOwn } from "./owner.ts";
import { PageFile } from "./pagefile.ts";
import { getMeta, setMeta, Space } from "./space.ts";

export interface DomainConfig {
  name: string;
  catchAll: string | null;
}

export interface StoreOptions {
  dir: string;
  durability: Durability;
  groupCommitMs: number;
  pageBytes: number;
  quotaBytes: number | null;
  quotaMessages: number | null;
  domains: DomainConfig[];
  /**
   * metabase server.postmaster: where postmaster@<local domain> goes when no user or alias
   * holds it (store/resolve.ts). Read per call, so `reconfigure` applies it live.
   */
  postmaster?: string | null;
  auth: Metabase["auth"];
  log: Logger;
  /** Bytes per streamed chunk (metabase ipc.chunkBytes). */
  chunkBytes?: number;
  /** Uploads in flight at once (metabase store.maxUploads). */
  maxUploads?: number;
  /** Bytes of each message kept for the full-text index and header parsing. */
  indexBytes?: number;
  /** Largest message an import takes (metabase store.maxImportMessageBytes). */
  maxImportMessageBytes?: number;
  /** Bodies waiting for the full-text index before indexing runs during deliveries
   * (metabase store.indexBacklog). */
  indexBacklog?: number;
  /** Largest `localPrefix` accepted (metabase store.maxPrefixBytes). */
  maxPrefixBytes?: number;
  /**
   * Bodies up to this many bytes live in their bodies row, not in the page file (metabase
   * store.inlineBytes; 0: never). Unset: 8 KiB, the metabase default.
   */
  inlineBytes?: number;
  /**
   * "exclusive" (the server): own the directory or fail with in_use; "auto" (the CLI): own it
   * if free, else open shared (accounts and reads only, no page allocation).
   */
  mode?: "exclusive" | "auto";
  /** Called once when the disk fails under the store (the store worker restarts itself). */
  onFatal?: (err: Error) => void;
  /** argon2id cost for new hashes; Bun's default (64 MiB, t=2) unless set (tests go cheaper). */
  argon2?: { memoryCost: number; timeCost: number };
}

export const DB_FILE = "posthorn.db";
export const PAGE_FILE = "posthorn.stm";
/** The metabase's default store.inlineBytes. */
export const DEFAULT_INLINE_BYTES = 8 * 1024;

export class Core {
  readonly db: Database;
  readonly tx: Tx;
  readonly wal: WalFile;
  readonly file: PageFile;
  readonly space: Space;
  readonly log: Logger;
  readonly owner: boolean;
  readonly pageBytes: number;
  chunkBytes: number;
  maxUploads: number;
  indexBytes: number;
  indexBacklog: number;
  maxImportMessageBytes: number;
  maxPrefixBytes: number;
  inlineBytes: number;
  readonly indexer: FullTextIndexer;
  /** Bumped by each restore from backup (see uniqueIdOf). */
  readonly uidlEpoch: number;
  domains = new Map<string, DomainConfig>();
  private publisher: Publisher | null = null;
  closed = false;

  constructor(public opts: StoreOptions) {
    mkdirSync(opts.dir, { recursive: true });
    this.log = opts.log;
    this.owner = tryOwn(opts.dir);
    if (!this.owner && (opts.mode ?? "exclusive") === "exclusive") {
      throw Object.assign(
        new Error(`store ${opts.dir} is in use by process ${currentOwner(opts.dir)}`),
        { code: "in_use" },
      );
    }
    try {
      this.db = openDatabase(join(opts.dir, DB_FILE), opts.durability);
      this.tx = new Tx(this.db);
      this.wal = new WalFile(join(opts.dir, DB_FILE) + "-wal");
      // The page size is fixed when the store is created; a later metabase change cannot
      // reinterpret existing page numbers.
      const stored = getMeta(this.db, "page_bytes");
      this.pageBytes = stored === null ? opts.pageBytes : Number(stored);
      if (stored === null) {
        this.tx.run(() => {
          setMeta(this.db, "page_bytes", opts.pageBytes);
          setMeta(this.db, "pages", 0);
          setMeta(this.db, "store_id", crypto.randomUUID());
        });
      } else if (this.pageBytes !== opts.pageBytes) {
        this.log.warn("store.page_bytes_fixed", {
          stored: this.pageBytes,
          configured: opts.pageBytes,
        });
      }
      this.uidlEpoch = Number(getMeta(this.db, "uidl_epoch") ?? 0);
      this.file = new PageFile(join(opts.dir, PAGE_FILE), this.pageBytes);
      this.space = new Space(this.db, this.tx, this.file, this.owner);
    } catch (err) {
      if (this.owner) disown(opts.dir);
      throw err;
    }
    this.chunkBytes = opts.chunkBytes ?? 64 * 1024;
    this.maxUploads = opts.maxUploads ?? 1000;
    this.indexBytes = opts.indexBytes ?? 16 * 1024;
    this.indexBacklog = opts.indexBacklog ?? DEFAULT_INDEX_BACKLOG;
    this.maxImportMessageBytes = opts.maxImportMessageBytes ?? 100 * 1024 * 1024;
    this.maxPrefixBytes = opts.maxPrefixBytes ?? 16 * 1024;
    this.inlineBytes = opts.inlineBytes ?? DEFAULT_INLINE_BYTES;
    this.setDomains(opts.domains);
    this.indexer = new FullTextIndexer(this);
  }

  /**
   * A metabase reload: everything read per call (quotas, auth limits, durability, limits,
   * domains) applies at once. The directory, the page size and the ownership mode cannot
   * change under a running store.
   */
  reconfigure(next: StoreOptions): void {
    const { dir, pageBytes, mode, onFatal, log } = this.opts;
    if (next.durability !== this.opts.durability) {
      this.db.exec(`PRAGMA synchronous = ${next.durability === "off" ? "OFF" : "FULL"}`);
    }
    this.opts = { ...next, dir, pageBytes, mode, onFatal, log };
    this.chunkBytes = next.chunkBytes ?? this.chunkBytes;
    this.maxUploads = next.maxUploads ?? this.maxUploads;
    this.indexBytes = next.indexBytes ?? this.indexBytes;
    this.indexBacklog = next.indexBacklog ?? this.indexBacklog;
    this.maxImportMessageBytes = next.maxImportMessageBytes ?? this.maxImportMessageBytes;
    this.maxPrefixBytes = next.maxPrefixBytes ?? this.maxPrefixBytes;
    // Live: uploads begun from now on use the new threshold; stored bodies keep their place.
    this.inlineBytes = next.inlineBytes ?? this.inlineBytes;
    this.setDomains(next.domains);
  }

  setDomains(domains: DomainConfig[]): void {
    this.domains = new Map(domains.map((d) => [d.name.toLowerCase(), d]));
  }

  setPublisher(p: Publisher): void {
    this.publisher = p;
  }

  publish<T extends keyof StoreTopics>(topic: T, event: StoreTopics[T]): void {
    try {
      this.publisher?.(topic, event);
    } catch (err) {
      this.log.warn("store.publish_failed", { err });
    }
  }

  /** A disk failure after which nothing may be acknowledged (see Committer). */
  fatal: Error | null = null;

  fail(err: Error): void {
    if (this.fatal) return;
    this.fatal = err;
    this.log.error("store.disk_failed", {
      error: err,
      hint: "refusing writes until the store restarts",
    });
    this.opts.onFatal?.(err);
  }

  fatalError(): StoreError {
    return new StoreError(
      "unavailable",
      `the store's disk failed (${this.fatal?.message}); it must restart`,
    );
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.indexer.stop();
    this.file.close();
    try {
      this.db.exec("PRAGMA wal_checkpoint(TRUNCATE)");
    } catch { /* another process holds a read snapshot: the WAL stays, still consistent */ }
    this.db.close();
    this.wal.close();
    if (this.owner) disown(this.opts.dir);
  }
}
