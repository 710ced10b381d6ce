// Page-range arithmetic for the page file: an extent is a run of consecutive pages, and
// `ExtentSet` is a sorted, coalesced set of them (the in-memory free list).

/** `[firstPage, pageCount]`: a run of consecutive pages. */
export type Extent = [start: number, count: number];

/** Total pages in a list of extents. */
export function pageCount(extents: readonly Extent[]): number {
  let n = 0;
  for (const [, c] of extents) n += c;
  return n;
}

/** Merge neighbouring extents of a list kept in allocation order (a body's page list). */
export function appendExtent(list: Extent[], e: Extent): void {
  const last = list[list.length - 1];
  if (last && last[0] + last[1] === e[0]) last[1] += e[1];
  else list.push([e[0], e[1]]);
}

/** A sorted set of disjoint, non-adjacent extents. */
export class ExtentSet {
  private starts: number[] = [];
  private counts: number[] = [];

  get size(): number {
    return this.starts.length;
  }

  pages(): number {
    let n = 0;
    for (const c of this.counts) n += c;
    return n;
  }

  toArray(): Extent[] {
    return this.starts.map((s, i) => [s, this.counts[i]!]);
  }

  /** Index of the last extent starting at or before `page`, or -1. */
  private floor(page: number): number {
    let lo = 0, hi = this.starts.length - 1, ans = -1;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      if (this.starts[mid]! <= page) {
        ans = mid;
        lo = mid + 1;
      } else hi = mid - 1;
    }
    return ans;
  }

  /** Whether any page of `e` is in the set. */
  overlaps(e: Extent): boolean {
    const i = this.floor(e[0] + e[1] - 1);
    return i >= 0 && this.starts[i]! + this.counts[i]! > e[0];
  }

  /** Add pages; throws if any of them is already present (a double free). */
  add(e: Extent): void {
    if (e[1] <= 0) return;
    if (this.overlaps(e)) throw new Error(`pages ${e[0]}+${e[1]} are already free`);
    const i = this.floor(e[0]);
    const joinsLeft = i >= 0 && this.starts[i]! + this.counts[i]! === e[0];
    const j = i + 1;
    const joinsRight = j < this.starts.length && this.starts[j] === e[0] + e[1];
    if (joinsLeft && joinsRight) {
      this.counts[i]! += e[1] + this.counts[j]!;
      this.starts.splice(j, 1);
      this.counts.splice(j, 1);
    } else if (joinsLeft) this.counts[i]! += e[1];
    else if (joinsRight) {
      this.starts[j] = e[0];
      this.counts[j]! += e[1];
    } else {
      this.starts.splice(j, 0, e[0]);
      this.counts.splice(j, 0, e[1]);
    }
  }

  /** Remove pages that must all be present (they are being allocated). */
  remove(e: Extent): void {
    const i = this.floor(e[0]);
    const s = i >= 0 ? this.starts[i]! : -1;
    const c = i >= 0 ? this.counts[i]! : 0;
    if (i < 0 || s + c < e[0] + e[1]) throw new Error(`pages ${e[0]}+${e[1]} are not free`);
    const before = e[0] - s;
    const after = s + c - (e[0] + e[1]);
    if (before > 0 && after > 0) {
      this.counts[i] = before;
      this.starts.splice(i + 1, 0, e[0] + e[1]);
      this.counts.splice(i + 1, 0, after);
    } else if (before > 0) this.counts[i] = before;
    else if (after > 0) {
      this.starts[i] = e[0] + e[1];
      this.counts[i] = after;
    } else {
      this.starts.splice(i, 1);
      this.counts.splice(i, 1);
    }
  }

  /**
   * Take up to `n` pages: the lowest run long enough if there is one (few extents per body),
   * otherwise pieces from the front of the file. Returns fewer than `n` when the set runs dry.
   */
  take(n: number): Extent[] {
    const out: Extent[] = [];
    for (let i = 0; i < this.starts.length; i++) {
      if (this.counts[i]! >= n) {
        const e: Extent = [this.starts[i]!, n];
        this.remove(e);
        return [e];
      }
    }
    let want = n;
    while (want > 0 && this.starts.length > 0) {
      const e: Extent = [this.starts[0]!, Math.min(want, this.counts[0]!)];
      this.remove(e);
      out.push(e);
      want -= e[1];
    }
    return out;
  }

  /** Take `n` pages from the lowest free runs, in order (compaction fills holes first). */
  takeFront(n: number): Extent[] {
    const out: Extent[] = [];
    let want = n;
    while (want > 0 && this.starts.length > 0) {
      const e: Extent = [this.starts[0]!, Math.min(want, this.counts[0]!)];
      this.remove(e);
      out.push(e);
      want -= e[1];
    }
    if (want > 0) throw new Error(`only ${n - want} of ${n} pages free`);
    return out;
  }

  /** Drop every page at or beyond `end` (the file is being truncated). */
  truncate(end: number): void {
    while (this.starts.length > 0) {
      const k = this.starts.length - 1;
      const s = this.starts[k]!, c = this.counts[k]!;
      if (s >= end) {
        this.starts.pop();
        this.counts.pop();
      } else {
        if (s + c > end) this.counts[k] = end - s;
        break;
      }
    }
  }

  clear(): void {
    this.starts = [];
    this.counts = [];
  }
}
