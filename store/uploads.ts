// Bodies being received: pages are reserved as the bytes stream in and written at once, so a
// 50 MB message never sits in memory; only the first `indexBytes` are kept for header parsing
// and the full-text index. An upload is in memory only: a crash forgets it, and its pages,
// never committed, are free again at start-up.
import { StoreError } from "../ipc/store-api.ts";
import type { Core } from "./core.ts";
import { appendExtent, type Extent, pageCount } from "./extents.ts";

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
  constructor(
    readonly id: number,
    readonly peer: string,
    readonly sizeHint: number,
    headMax: number,
  ) {
    this.head = new Uint8Array(Math.min(headMax, Math.max(sizeHint, 4096)));
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
    this.map.set(id, new Upload(id, peer, hint, this.core.indexBytes));
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
    const pb = this.core.pageBytes;
    const needPages = Math.ceil((u.size + chunk.length) / pb);
    if (needPages > u.reserved) {
      const hintPages = Math.ceil(u.sizeHint / pb);
      const n = Math.max(needPages - u.reserved, hintPages - u.reserved, MIN_RESERVE_PAGES);
      for (const e of this.core.space.reserve(n)) appendExtent(u.extents, e);
      u.reserved += n;
    }
    try {
      this.core.file.writeAt(u.extents, u.size, chunk);
    } catch (err) {
      this.abort(id, peer);
      throw new StoreError("internal", `writing the page file failed: ${(err as Error).message}`);
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

  reservedPages(): number {
    let n = 0;
    for (const u of this.map.values()) n += pageCount(u.extents);
    return n;
  }
}
