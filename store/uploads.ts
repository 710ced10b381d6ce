// Bodies being received: pages are reserved as the bytes stream in and written at once, so a
// 50 MB message never sits in memory; only the first HEAD_BYTES are kept, for the header
// fields the store records (Message-ID). A body that stays within `inlineBytes` is kept in
// memory instead and committed inside its bodies row (no page-file write, no page-file fsync);
// the moment it grows past that, what is buffered spills into reserved pages. So memory per
// upload stays bounded by inlineBytes + HEAD_BYTES. An upload is in memory only: a crash
// forgets it, and its pages, never committed, are free again at start-up. (The full-text
// index reads committed bodies later: see fts.ts.)
import { StoreError } from "../ipc/store-api.ts";
import type { Core } from "./core.ts";
import { appendExtent, type Extent, pageCount } from "./extents.ts";

/** The start of a body kept in memory for header parsing (independent of the FTS budget). */
const HEAD_BYTES = 16 * 1024;
/** Reserve at least this many pages at a time so a streamed body gets few extents. */
const MIN_RESERVE_PAGES = 16;
/** Never reserve more than this ahead on the strength of a size hint. */
const MAX_HINT_BYTES = 64 * 1024 * 1024;

export class Upload {
  extents: Extent[] = [];
  reserved = 0;
  size = 0;
  readonly hasher = new Bun.CryptoHasher("sha256");
  head: Uint8Array;
  headLen = 0;
  /**
   * The body so far while it may still be stored inline (its first `size` bytes); null once
   * it lives in pages. Grows by doubling up to `inlineMax`.
   */
  inline: Uint8Array | null;
  constructor(
    readonly id: number,
    readonly peer: string,
    readonly sizeHint: number,
    headMax: number,
    /** The inline threshold when the upload began (a reload does not move it mid-upload). */
    readonly inlineMax: number,
  ) {
    this.head = new Uint8Array(Math.min(headMax, Math.max(sizeHint, 4096)));
    // A hint over the threshold goes straight to pages: no buffer to copy and spill.
    this.inline = inlineMax > 0 && sizeHint <= inlineMax
      ? new Uint8Array(Math.min(inlineMax, Math.max(sizeHint, 1024)))
      : null;
  }

  /** The whole body when it is stored inline, else null. */
  inlineBytes(): Uint8Array | null {
    return this.inline ? this.inline.subarray(0, this.size) : null;
  }

  /** Whether any page of the file was written for this upload (the committer's fsync). */
  get wrotePages(): boolean {
    return this.extents.length > 0;
  }

  /** The pages holding the `size` bytes written; the rest of the reservation is spare. */
  split(pageBytes: number): { used: Extent[]; spare: Extent[] } {
    let need = Math.ceil(this.size / pageBytes);
    const used: Extent[] = [], spare: Extent[] = [];
    for (const [s, c] of this.extents) {
      const take = Math.min(need, c);
      if (take > 0) used.push([s, take]);
      if (c > take) spare.push([s + take, c - take]);
      need -= take;
    }
    return { used, spare };
  }

  headBytes(): Uint8Array {
    return this.head.subarray(0, this.headLen);
  }
}

export class Uploads {
  private map = new Map<number, Upload>();
  private nextId = 1;
  constructor(private core: Core) {}

  get count(): number {
    return this.map.size;
  }

  begin(peer: string, sizeHint = 0): number {
    if (!this.core.space.allocates) {
      throw new StoreError("unavailable", "this store handle cannot write bodies (server running)");
    }
    if (this.map.size >= this.core.maxUploads) {
      throw new StoreError("busy", "too many messages being received at once");
    }
    const hint = Math.max(0, Math.min(Number(sizeHint) || 0, MAX_HINT_BYTES));
    const id = this.nextId++;
    this.map.set(id, new Upload(id, peer, hint, HEAD_BYTES, this.core.inlineBytes));
    return id;
  }

  private get(id: number, peer: string): Upload {
    const u = this.map.get(id);
    if (!u || u.peer !== peer) throw new StoreError("not_found", `no upload ${id}`);
    return u;
  }

  append(id: number, peer: string, chunk: Uint8Array): number {
    const u = this.get(id, peer);
    if (!(chunk instanceof Uint8Array)) throw new StoreError("invalid", "chunk must be bytes");
    if (chunk.length === 0) return u.size;
    if (u.inline && u.size + chunk.length <= u.inlineMax) {
      if (u.size + chunk.length > u.inline.length) {
        const grown = new Uint8Array(
          Math.min(u.inlineMax, Math.max(u.inline.length * 2, u.size + chunk.length)),
        );
        grown.set(u.inline.subarray(0, u.size));
        u.inline = grown;
      }
      u.inline.set(chunk, u.size);
    } else {
      if (u.inline) {
        // Past the threshold: what was buffered goes to pages first, then on as usual.
        const buffered = u.inline.subarray(0, u.size);
        u.inline = null;
        this.writePages(u, 0, buffered);
      }
      this.writePages(u, u.size, chunk);
    }
    u.hasher.update(chunk);
    if (u.headLen < u.head.length) {
      const n = Math.min(chunk.length, u.head.length - u.headLen);
      u.head.set(chunk.subarray(0, n), u.headLen);
      u.headLen += n;
    }
    u.size += chunk.length;
    return u.size;
  }

  /** Write `data` at body offset `at`, reserving pages as needed; aborts the upload on error. */
  private writePages(u: Upload, at: number, data: Uint8Array): void {
    if (data.length === 0) return;
    const pb = this.core.pageBytes;
    const needPages = Math.ceil((at + data.length) / pb);
    if (needPages > u.reserved) {
      const hintPages = Math.ceil(u.sizeHint / pb);
      const n = Math.max(needPages - u.reserved, hintPages - u.reserved, MIN_RESERVE_PAGES);
      for (const e of this.core.space.reserve(n)) appendExtent(u.extents, e);
      u.reserved += n;
    }
    try {
      this.core.file.writeAt(u.extents, at, data);
    } catch (err) {
      this.abort(u.id, u.peer);
      throw new StoreError("internal", `writing the page file failed: ${(err as Error).message}`);
    }
  }

  /** Release an upload if it is still here (taken by a commit, or aborted: nothing to do). */
  discard(id: number, peer: string): void {
    const u = this.map.get(id);
    if (u && u.peer === peer) this.abort(id, peer);
  }

  abort(id: number, peer: string): void {
    const u = this.get(id, peer);
    this.map.delete(id);
    this.core.space.giveBack(u.extents);
  }

  /** Hand the upload to the committer: no more appends. */
  take(id: number, peer: string): Upload {
    const u = this.get(id, peer);
    this.map.delete(id);
    return u;
  }

  abortPeer(peer: string): number {
    let n = 0;
    for (const u of [...this.map.values()]) {
      if (u.peer === peer) {
        this.abort(u.id, peer);
        n++;
      }
    }
    return n;
  }

  abortAll(): void {
    for (const u of [...this.map.values()]) this.abort(u.id, u.peer);
  }

  /** Memory held by inline buffers: at most inlineBytes per upload (maxUploads in all). */
  inlineBufferBytes(): number {
    let n = 0;
    for (const u of this.map.values()) n += u.inline?.length ?? 0;
    return n;
  }

  reservedPages(): number {
    let n = 0;
    for (const u of this.map.values()) n += pageCount(u.extents);
    return n;
  }
}
