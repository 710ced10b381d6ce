// The shared heap: variable-size blocks in one SharedArrayBuffer, addressed by 32-bit handles,
// shared by every worker of the process. A binary buddy allocator keeps fragmentation bounded
// (a freed block merges with its free buddy at once). Every block records its owner (a binding
// and a side), so the queue manager can free every block a dead worker held.
//
// All mutation happens under one short spin lock whose word holds the holder's tag. A worker
// terminated inside the critical section leaves the lock held by its tag; the queue manager then
// rebuilds the free lists from the per-unit state bytes, which are written so that "allocated"
// is always exact: alloc marks a block allocated as its last step, free unmarks it first.

/** Smallest block; a handle names a unit, so the heap can address 128 × 2³² bytes. */
export const UNIT_BYTES = 128;

// Control words (Int32 indices). The lock sits alone on its cache line.
const LOCK = 0;
const USED_UNITS = 16;
const BLOCKS = 17;
const UNITS = 18;
const MAX_ORDER = 19;
const FREE_HEAD = 32; // FREE_HEAD + order, for order 0..31
const CONTROL_BYTES = 256;

// Per-unit state byte (only meaningful at a block's first unit).
const ALLOCATED = 0x80;
const FREE = 0x40;
const ORDER_MASK = 0x1f;

const NONE = -1;

/** Tag of the queue manager (main thread) in the lock word; workers get 2, 3, … */
export const MANAGER_TAG = 1;

/** An owner word: binding id and side. 0 means "no owner". */
export function ownerOf(bindingId: number, side: Side): number {
  return bindingId * 2 + side;
}
export function ownerBinding(owner: number): number {
  return owner >>> 1;
}
export function ownerSide(owner: number): Side {
  return (owner & 1) as Side;
}
export type Side = 0 | 1;
export const SERVER_SIDE: Side = 0;
export const CLIENT_SIDE: Side = 1;

// Buffer layout: [control][owner words, one per unit][state bytes, one per unit][data units].
interface Layout {
  units: number;
  ownerOffset: number;
  stateOffset: number;
  dataOffset: number;
  totalBytes: number;
}

function layoutFor(units: number): Layout {
  const ownerOffset = CONTROL_BYTES;
  const stateOffset = ownerOffset + units * 4;
  const dataOffset = stateOffset + Math.ceil(units / UNIT_BYTES) * UNIT_BYTES;
  return {
    units,
    ownerOffset,
    stateOffset,
    dataOffset,
    totalBytes: dataOffset + units * UNIT_BYTES,
  };
}

/** How long an allocation waits for the lock before giving up with "busy" (ms): long enough
 * for a holder descheduled on an oversubscribed machine, short enough if the holder died. */
const LOCK_PATIENCE_MS = 100;

export class SharedHeap {
  readonly buffer: SharedArrayBuffer;
  /** The data region as bytes: a block's payload is `bytes.subarray(offsetOf(h), …)`. */
  readonly bytes: Uint8Array;
  /** The same region as a Buffer (its UTF-8 read/write is ~3× faster than TextDecoder on
   * shared memory) and as 32-bit words (blocks are UNIT_BYTES-aligned). */
  readonly buf: Buffer;
  readonly u32: Uint32Array;
  readonly units: number;
  /** The largest payload one block can hold. */
  readonly maxBlockBytes: number;
  readonly #words: Int32Array; // the data region as words, for free-list links
  readonly #control: Int32Array;
  readonly #owner: Int32Array;
  readonly #state: Uint8Array;
  readonly #tag: number;
  /** Frees that could not take the lock (its holder died): retried on the next operation. */
  #deferred: { handle: number; owner: number | undefined }[] = [];

  /** Makes the buffer for a heap of (about) `heapBytes` of payload, initialised. */
  static create(heapBytes: number): SharedArrayBuffer {
    const layout = layoutFor(Math.floor(heapBytes / UNIT_BYTES));
    if (layout.units < 1) throw new RangeError(`heap of ${heapBytes} bytes is too small`);
    const buffer = new SharedArrayBuffer(layout.totalBytes);
    const control = new Int32Array(buffer, 0, CONTROL_BYTES / 4);
    control[UNITS] = layout.units;
    control[MAX_ORDER] = Math.floor(Math.log2(layout.units));
    new SharedHeap(buffer, MANAGER_TAG).#rebuild();
    return buffer;
  }

  /** Attaches to a heap made by `create`; `tag` identifies this thread in the lock word. */
  constructor(buffer: SharedArrayBuffer, tag: number) {
    this.buffer = buffer;
    this.#tag = tag;
    this.#control = new Int32Array(buffer, 0, CONTROL_BYTES / 4);
    const layout = layoutFor(this.#control[UNITS]!);
    if (layout.units < 1 || layout.totalBytes !== buffer.byteLength) {
      throw new Error("not a shared heap buffer");
    }
    this.units = layout.units;
    this.bytes = new Uint8Array(buffer, layout.dataOffset, layout.units * UNIT_BYTES);
    this.buf = Buffer.from(buffer, layout.dataOffset, layout.units * UNIT_BYTES);
    this.u32 = new Uint32Array(buffer, layout.dataOffset, (layout.units * UNIT_BYTES) / 4);
    this.#words = new Int32Array(buffer, layout.dataOffset, (layout.units * UNIT_BYTES) / 4);
    this.#owner = new Int32Array(buffer, layout.ownerOffset, layout.units);
    this.#state = new Uint8Array(buffer, layout.stateOffset, layout.units);
    this.maxBlockBytes = UNIT_BYTES * 2 ** Math.floor(Math.log2(layout.units));
  }

  /** Byte offset of a block's payload in `bytes`. */
  offsetOf(handle: number): number {
    return (handle - 1) * UNIT_BYTES;
  }

  /** Capacity of an allocated block in bytes (0 if the handle names no allocated block). */
  capacity(handle: number): number {
    const unit = handle - 1;
    if (unit < 0 || unit >= this.units) return 0;
    const s = Atomics.load(this.#state, unit);
    return s & ALLOCATED ? UNIT_BYTES << (s & ORDER_MASK) : 0;
  }

  owner(handle: number): number {
    const unit = handle - 1;
    return unit >= 0 && unit < this.units ? Atomics.load(this.#owner, unit) : 0;
  }

  get usedBytes(): number {
    return Atomics.load(this.#control, USED_UNITS) * UNIT_BYTES;
  }
  get blocks(): number {
    return Atomics.load(this.#control, BLOCKS);
  }

  /**
   * A block of at least `bytes` bytes owned by `owner`, as a handle (≥ 1); 0 when the heap is
   * full (or its lock is stuck), which callers surface as a temporary "busy".
   */
  alloc(bytes: number, owner: number): number {
    if (bytes > this.maxBlockBytes) return 0;
    const order = orderFor(bytes);
    if (!this.#lock(LOCK_PATIENCE_MS)) return 0;
    try {
      this.#retryDeferred();
      let j = order;
      const maxOrder = this.#control[MAX_ORDER]!;
      while (j <= maxOrder && this.#control[FREE_HEAD + j] === NONE) j++;
      if (j > maxOrder) return 0;
      const unit = this.#control[FREE_HEAD + j]!;
      this.#unlink(unit, j);
      this.#state[unit] = 0;
      while (j > order) {
        j--;
        const buddy = unit + (1 << j);
        this.#push(buddy, j);
      }
      this.#owner[unit] = owner;
      this.#control[USED_UNITS]! += 1 << order;
      this.#control[BLOCKS]!++;
      Atomics.store(this.#state, unit, ALLOCATED | order); // last: the block now exists
      return unit + 1;
    } finally {
      this.#unlock();
    }
  }

  /**
   * Frees a block. With `expectedOwner`, only if the block is still allocated to exactly that
   * owner (a block the manager already freed, possibly reused by another binding, is left
   * alone). Returns whether this call freed it.
   */
  free(handle: number, expectedOwner?: number): boolean {
    if (!this.#lock(LOCK_PATIENCE_MS)) {
      this.#deferred.push({ handle, owner: expectedOwner });
      return false;
    }
    try {
      this.#retryDeferred();
      return this.#freeLocked(handle, expectedOwner);
    } finally {
      this.#unlock();
    }
  }

  /** Frees several blocks of one owner under one lock (a consumer's batch after a drain). */
  freeMany(handles: number[], expectedOwner: number): void {
    if (handles.length === 0) return;
    if (!this.#lock(LOCK_PATIENCE_MS)) {
      for (const handle of handles) this.#deferred.push({ handle, owner: expectedOwner });
      return;
    }
    try {
      this.#retryDeferred();
      for (const h of handles) this.#freeLocked(h, expectedOwner);
    } finally {
      this.#unlock();
    }
  }

  /**
   * Hands a block from one owner to another, lock-free: the consumer of a ring entry takes the
   * block from the producer's side. Fails if the manager freed it meanwhile (binding died).
   */
  transfer(handle: number, from: number, to: number): boolean {
    const unit = handle - 1;
    if (unit < 0 || unit >= this.units) return false;
    return Atomics.compareExchange(this.#owner, unit, from, to) === from;
  }

  /** Frees every allocated block whose owner matches; returns how many (manager only). */
  freeWhere(match: (owner: number) => boolean, patienceMs = 1000): number {
    if (!this.#lock(patienceMs)) return 0;
    let freed = 0;
    try {
      let unit = 0;
      while (unit < this.units) {
        const s = this.#state[unit]!;
        if (s & ALLOCATED) {
          const size = 1 << (s & ORDER_MASK);
          const owner = Atomics.load(this.#owner, unit);
          if (match(owner) && this.#freeLocked(unit + 1, owner)) freed++;
          unit += size;
        } else if (s & FREE) {
          unit += 1 << (s & ORDER_MASK);
        } else {
          unit++;
        }
      }
    } finally {
      this.#unlock();
    }
    return freed;
  }

  /**
   * If the lock is held by `deadTag` (a worker terminated inside the allocator), rebuild the
   * free lists from the allocation marks and release the lock. Returns whether it did.
   */
  recoverFrom(deadTag: number): boolean {
    if (deadTag === 0) return false;
    if (Atomics.compareExchange(this.#control, LOCK, deadTag, this.#tag) !== deadTag) return false;
    try {
      this.#rebuild();
    } finally {
      this.#unlock();
    }
    return true;
  }

  /** Allocated blocks and their owners, for tests and diagnostics. */
  allocations(): { handle: number; bytes: number; owner: number }[] {
    const out: { handle: number; bytes: number; owner: number }[] = [];
    let unit = 0;
    while (unit < this.units) {
      const s = Atomics.load(this.#state, unit);
      if (s & ALLOCATED) {
        out.push({
          handle: unit + 1,
          bytes: UNIT_BYTES << (s & ORDER_MASK),
          owner: Atomics.load(this.#owner, unit),
        });
        unit += 1 << (s & ORDER_MASK);
      } else unit++;
    }
    return out;
  }

  // ------------------------------------------------------------ internals

  #freeLocked(handle: number, expectedOwner: number | undefined): boolean {
    let unit = handle - 1;
    if (unit < 0 || unit >= this.units) return false;
    const s = this.#state[unit]!;
    if (!(s & ALLOCATED)) return false;
    if (expectedOwner !== undefined) {
      if (Atomics.compareExchange(this.#owner, unit, expectedOwner, 0) !== expectedOwner) {
        return false;
      }
    } else Atomics.store(this.#owner, unit, 0);
    let order = s & ORDER_MASK;
    Atomics.store(this.#state, unit, 0); // first: the block no longer exists
    this.#control[USED_UNITS]! -= 1 << order;
    this.#control[BLOCKS]!--;
    const maxOrder = this.#control[MAX_ORDER]!;
    while (order < maxOrder) {
      const buddy = unit ^ (1 << order);
      if (buddy + (1 << order) > this.units) break;
      if (this.#state[buddy] !== (FREE | order)) break;
      this.#unlink(buddy, order);
      this.#state[buddy] = 0;
      unit = Math.min(unit, buddy);
      order++;
    }
    this.#push(unit, order);
    return true;
  }

  #push(unit: number, order: number): void {
    const head = this.#control[FREE_HEAD + order]!;
    const w = (unit * UNIT_BYTES) >> 2;
    this.#words[w] = head; // next
    this.#words[w + 1] = NONE; // prev
    if (head !== NONE) this.#words[((head * UNIT_BYTES) >> 2) + 1] = unit;
    this.#control[FREE_HEAD + order] = unit;
    this.#state[unit] = FREE | order;
  }

  #unlink(unit: number, order: number): void {
    const w = (unit * UNIT_BYTES) >> 2;
    const next = this.#words[w]!;
    const prev = this.#words[w + 1]!;
    if (prev === NONE) this.#control[FREE_HEAD + order] = next;
    else this.#words[(prev * UNIT_BYTES) >> 2] = next;
    if (next !== NONE) this.#words[((next * UNIT_BYTES) >> 2) + 1] = prev;
  }

  /** Free lists and counters from the allocation marks alone; every gap becomes free blocks. */
  #rebuild(): void {
    const maxOrder = this.#control[MAX_ORDER]!;
    for (let o = 0; o < 32; o++) this.#control[FREE_HEAD + o] = NONE;
    let used = 0;
    let blocks = 0;
    let unit = 0;
    while (unit < this.units) {
      const s = this.#state[unit]!;
      if (s & ALLOCATED) {
        const size = 1 << (s & ORDER_MASK);
        used += size;
        blocks++;
        unit += size;
        continue;
      }
      let end = unit;
      while (end < this.units && !(this.#state[end]! & ALLOCATED)) {
        this.#state[end] = 0;
        end++;
      }
      // Fill [unit, end) with the largest aligned buddy blocks that fit: canonical, so no two
      // free buddies are left unmerged.
      while (unit < end) {
        let order = 0;
        while (
          order < maxOrder && unit % (1 << (order + 1)) === 0 && unit + (1 << (order + 1)) <= end
        ) order++;
        this.#push(unit, order);
        unit += 1 << order;
      }
    }
    this.#control[USED_UNITS] = used;
    this.#control[BLOCKS] = blocks;
  }

  #retryDeferred(): void {
    if (this.#deferred.length === 0) return;
    const pending = this.#deferred;
    this.#deferred = [];
    for (const d of pending) this.#freeLocked(d.handle, d.owner);
  }

  #lock(patienceMs: number): boolean {
    const c = this.#control;
    if (Atomics.compareExchange(c, LOCK, 0, this.#tag) === 0) return true;
    for (let i = 0; i < 200; i++) {
      if (Atomics.load(c, LOCK) === 0 && Atomics.compareExchange(c, LOCK, 0, this.#tag) === 0) {
        return true;
      }
    }
    // The holder was probably descheduled (2 cores, many threads): sleep in 50 µs steps rather
    // than burn the core it needs. A holder that died is recovered by the manager.
    const deadline = performance.now() + patienceMs;
    while (performance.now() < deadline) {
      const holder = Atomics.load(c, LOCK);
      if (holder === 0) {
        if (Atomics.compareExchange(c, LOCK, 0, this.#tag) === 0) return true;
        continue;
      }
      Atomics.wait(c, LOCK, holder, 0.05);
    }
    return false;
  }

  #unlock(): void {
    Atomics.store(this.#control, LOCK, 0);
  }
}

/** Buddy order (power of two in units) of a block holding `bytes`. */
function orderFor(bytes: number): number {
  const units = Math.max(1, Math.ceil(bytes / UNIT_BYTES));
  return units <= 1 ? 0 : 32 - Math.clz32(units - 1);
}
