// The page file (the ".stm"): raw body bytes in fixed-size pages, addressed by page number.
// It knows nothing of bodies or free space; positional I/O only, so readers stream straight
// from the file while writers fill other pages.
import * as fs from "node:fs";
import type { Extent } from "./extents.ts";

export class PageFile {
  private fd: number;
  constructor(readonly path: string, readonly pageBytes: number) {
    this.fd = fs.openSync(path, fs.existsSync(path) ? "r+" : "w+", 0o600);
  }

  sizeBytes(): number {
    return fs.fstatSync(this.fd).size;
  }

  /** Write `data` at byte `offset` of a body laid out over `extents`. */
  writeAt(extents: readonly Extent[], offset: number, data: Uint8Array): void {
    let done = 0;
    let skip = offset;
    for (const [start, count] of extents) {
      const len = count * this.pageBytes;
      if (skip >= len) {
        skip -= len;
        continue;
      }
      const n = Math.min(len - skip, data.length - done);
      let written = 0;
      while (written < n) {
        written += fs.writeSync(
          this.fd,
          data,
          done + written,
          n - written,
          start * this.pageBytes + skip + written,
        );
      }
      done += n;
      skip = 0;
      if (done === data.length) return;
    }
    throw new Error("write beyond the reserved pages");
  }

  /** Read `length` bytes at absolute file position `pos` into a fresh buffer. */
  readAbs(pos: number, length: number): Uint8Array {
    const buf = new Uint8Array(length);
    this.readInto(pos, buf, 0, length);
    return buf;
  }

  /** Read `length` bytes at absolute file position `pos` into `buf` at `at`. */
  readInto(pos: number, buf: Uint8Array, at: number, length: number): void {
    let got = 0;
    while (got < length) {
      const n = fs.readSync(this.fd, buf, at + got, length - got, pos + got);
      if (n === 0) throw new Error(`page file ends at ${pos + got}, wanted ${pos + length}`);
      got += n;
    }
  }

  /**
   * Read bytes `[offset, offset + length)` of a body laid out over `extents` into `buf` at
   * `at`: straight from the pages into the caller's buffer, one pread per extent touched.
   */
  readBody(
    extents: readonly Extent[],
    offset: number,
    buf: Uint8Array,
    at: number,
    length: number,
  ): void {
    let skip = offset;
    let done = 0;
    for (const [start, count] of extents) {
      if (done === length) return;
      const len = count * this.pageBytes;
      if (skip >= len) {
        skip -= len;
        continue;
      }
      const n = Math.min(len - skip, length - done);
      this.readInto(start * this.pageBytes + skip, buf, at + done, n);
      done += n;
      skip = 0;
    }
    if (done < length) throw new Error("body is longer than its pages");
  }

  /**
   * The byte ranges of a body of `size` bytes over `extents`, cut into pieces of at most
   * `chunk` bytes: what a reader fetches one at a time.
   */
  *ranges(extents: readonly Extent[], size: number, chunk: number): Generator<[number, number]> {
    let left = size;
    for (const [start, count] of extents) {
      let pos = start * this.pageBytes;
      let inExtent = Math.min(left, count * this.pageBytes);
      left -= inExtent;
      while (inExtent > 0) {
        const n = Math.min(chunk, inExtent);
        yield [pos, n];
        pos += n;
        inExtent -= n;
      }
      if (left === 0) return;
    }
    if (left > 0) throw new Error("body is longer than its pages");
  }

  /** Flush written pages to the disk (before the metadata that points at them commits). */
  datasync(): Promise<void> {
    return new Promise((resolve, reject) =>
      fs.fdatasync(this.fd, (err) => err ? reject(err) : resolve())
    );
  }

  datasyncNow(): void {
    fs.fdatasyncSync(this.fd);
  }

  truncate(bytes: number): void {
    fs.ftruncateSync(this.fd, bytes);
  }

  close(): void {
    if (this.fd >= 0) fs.closeSync(this.fd);
    this.fd = -1;
  }
}
