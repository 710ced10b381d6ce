// A fixed-size single-producer / single-consumer circular queue in shared memory. Each slot is
// a header of four words (kind, id, handle, length) and room for a small payload: a value that
// fits (most calls and results) travels inside the slot itself, so the common crossing takes
// no heap block at all (no allocator lock, no owner hand-over, no free: every one of those is
// a cache line bouncing between the two cores). Larger values and bulk bytes go in heap blocks
// named by the handle. Head, tail and the producer's "waiting for space" flag each sit on their
// own 64-byte line.

const HEAD = 0; // written by the producer only: entries pushed (mod 2³²)
const TAIL = 16; // written by the consumer only: entries popped (mod 2³²)
const SPACE_WANTED = 32; // the producer found the ring full and wants its doorbell rung
const HEADER_WORDS = 48;
/** A slot: four header words, then the inline payload; four slots to a 1 KiB stretch. */
const SLOT_BYTES = 256;
const SLOT_WORDS = SLOT_BYTES / 4;
const ENTRY_WORDS = 4;

/** The handle word of an entry whose payload is inside its slot. Heap handles are ≥ 1, and 0
 * means "no payload" (the length word says it all). */
export const INLINE = -1;

/** Payload bytes one slot holds (8-byte aligned, as encoded blocks are). */
export const INLINE_BYTES = SLOT_BYTES - ENTRY_WORDS * 4;

export interface RingEntry {
  kind: number;
  id: number;
  handle: number;
  length: number;
}

/** Bytes a ring of `slots` slots needs (slots must be a power of two). */
export function ringBytes(slots: number): number {
  return HEADER_WORDS * 4 + slots * SLOT_BYTES;
}

/** The power of two ≥ n (a ring's index is its counter masked, so counters may wrap). */
export function ringSlotsFor(n: number): number {
  return 2 ** Math.ceil(Math.log2(Math.max(2, n)));
}

export class Ring {
  readonly slots: number;
  /** The ring's memory as words and bytes: inline payloads are read and written through these
   * (the codec's BlockMemory), at the byte offset `claim` or `drain` gives. */
  readonly u32: Uint32Array;
  readonly bytes: Uint8Array;
  readonly buf: Buffer;
  readonly #w: Int32Array;
  readonly #mask: number;

  constructor(buffer: SharedArrayBuffer, byteOffset: number, slots: number) {
    if (slots < 2 || (slots & (slots - 1)) !== 0) throw new RangeError("slots: a power of two");
    this.slots = slots;
    this.#mask = slots - 1;
    const bytes = ringBytes(slots);
    this.#w = new Int32Array(buffer, byteOffset, bytes / 4);
    this.u32 = new Uint32Array(buffer, byteOffset, bytes / 4);
    this.bytes = new Uint8Array(buffer, byteOffset, bytes);
    this.buf = Buffer.from(buffer, byteOffset, bytes);
  }

  /** Entries waiting to be popped. */
  get size(): number {
    return (Atomics.load(this.#w, HEAD) - Atomics.load(this.#w, TAIL)) | 0;
  }

  get free(): number {
    return this.slots - this.size;
  }

  // ------------------------------------------------------------ producer side

  /**
   * The byte offset (in `bytes`) of the next slot's payload area, or -1 if the ring is full.
   * Write an inline payload there, then `push` it with handle INLINE. Nothing is published
   * until the push, and the push must be this producer's next one.
   */
  claim(): number {
    const w = this.#w;
    const head = Atomics.load(w, HEAD);
    if (((head - Atomics.load(w, TAIL)) | 0) >= this.slots) return -1;
    return (HEADER_WORDS + (head & this.#mask) * SLOT_WORDS + ENTRY_WORDS) * 4;
  }

  /** Appends an entry; false when the ring is full (the caller keeps it and retries). */
  push(kind: number, id: number, handle: number, length: number): boolean {
    const w = this.#w;
    const head = Atomics.load(w, HEAD);
    if (((head - Atomics.load(w, TAIL)) | 0) >= this.slots) return false;
    const at = HEADER_WORDS + (head & this.#mask) * SLOT_WORDS;
    w[at] = kind;
    w[at + 1] = id;
    w[at + 2] = handle;
    w[at + 3] = length;
    // The atomic store publishes the plain writes above to a consumer that loads the new head.
    Atomics.store(w, HEAD, (head + 1) | 0);
    return true;
  }

  /** Ask the consumer to ring our doorbell when it frees a slot; re-check fullness after. */
  wantSpace(): void {
    Atomics.store(this.#w, SPACE_WANTED, 1);
  }

  /** Entries pushed but not yet popped, oldest first (the producer's clean-up after death). */
  unconsumed(): RingEntry[] {
    const w = this.#w;
    const out: RingEntry[] = [];
    const head = Atomics.load(w, HEAD);
    for (let t = Atomics.load(w, TAIL); t !== head; t = (t + 1) | 0) {
      const at = HEADER_WORDS + (t & this.#mask) * SLOT_WORDS;
      out.push({ kind: w[at]!, id: w[at + 1]!, handle: w[at + 2]!, length: w[at + 3]! });
    }
    return out;
  }

  // ------------------------------------------------------------ consumer side

  /**
   * Pops every ready entry (up to `max`) into `visit`; returns how many. `payloadAt` is the
   * byte offset of the slot's inline payload, valid only during the visit: the slots are
   * released together once the batch is visited (one tail store per drain, not per entry).
   */
  drain(
    visit: (kind: number, id: number, handle: number, length: number, payloadAt: number) => void,
    max = this.slots,
  ): number {
    const w = this.#w;
    let tail = Atomics.load(w, TAIL);
    const head = Atomics.load(w, HEAD);
    let n = 0;
    try {
      while (tail !== head && n < max) {
        const at = HEADER_WORDS + (tail & this.#mask) * SLOT_WORDS;
        tail = (tail + 1) | 0;
        n++;
        visit(w[at]!, w[at + 1]!, w[at + 2]!, w[at + 3]!, (at + ENTRY_WORDS) * 4);
      }
    } finally {
      Atomics.store(w, TAIL, tail);
    }
    return n;
  }

  /** Consumer: true (once) if the producer is waiting for space. */
  takeSpaceWanted(): boolean {
    return Atomics.load(this.#w, SPACE_WANTED) !== 0 &&
      Atomics.compareExchange(this.#w, SPACE_WANTED, 1, 0) === 1;
  }
}
