// A fixed-size single-producer / single-consumer circular queue of handles in shared memory.
// Each slot is four words (kind, id, handle, length): the handle names a heap block, the other
// words say what it is, so a bulk chunk needs no header inside its block. Head, tail and the
// producer's "waiting for space" flag each sit on their own 64-byte line.

const HEAD = 0; // written by the producer only: entries pushed (mod 2³²)
const TAIL = 16; // written by the consumer only: entries popped (mod 2³²)
const SPACE_WANTED = 32; // the producer found the ring full and wants its doorbell rung
const SLOTS = 48;
const SLOT_WORDS = 4;

export interface RingEntry {
  kind: number;
  id: number;
  handle: number;
  length: number;
}

/** Bytes a ring of `slots` slots needs (slots must be a power of two). */
export function ringBytes(slots: number): number {
  return (SLOTS + slots * SLOT_WORDS) * 4;
}

/** The power of two ≥ n (a ring's index is its counter masked, so counters may wrap). */
export function ringSlotsFor(n: number): number {
  return 2 ** Math.ceil(Math.log2(Math.max(2, n)));
}

export class Ring {
  readonly slots: number;
  readonly #w: Int32Array;
  readonly #mask: number;

  constructor(buffer: SharedArrayBuffer, byteOffset: number, slots: number) {
    if (slots < 2 || (slots & (slots - 1)) !== 0) throw new RangeError("slots: a power of two");
    this.slots = slots;
    this.#mask = slots - 1;
    this.#w = new Int32Array(buffer, byteOffset, SLOTS + slots * SLOT_WORDS);
  }

  /** Entries waiting to be popped. */
  get size(): number {
    return (Atomics.load(this.#w, HEAD) - Atomics.load(this.#w, TAIL)) | 0;
  }

  get free(): number {
    return this.slots - this.size;
  }

  // ------------------------------------------------------------ producer side

  /** Appends an entry; false when the ring is full (the caller keeps it and retries). */
  push(kind: number, id: number, handle: number, length: number): boolean {
    const w = this.#w;
    const head = Atomics.load(w, HEAD);
    if (((head - Atomics.load(w, TAIL)) | 0) >= this.slots) return false;
    const at = SLOTS + (head & this.#mask) * SLOT_WORDS;
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
      const at = SLOTS + (t & this.#mask) * SLOT_WORDS;
      out.push({ kind: w[at]!, id: w[at + 1]!, handle: w[at + 2]!, length: w[at + 3]! });
    }
    return out;
  }

  // ------------------------------------------------------------ consumer side

  /**
   * Pops every ready entry (up to `max`) into `visit`; returns how many. Returns whether the
   * producer asked for space through `spaceFreed`, which the caller turns into a doorbell ring.
   */
  drain(
    visit: (kind: number, id: number, handle: number, length: number) => void,
    max = this.slots,
  ): number {
    const w = this.#w;
    let tail = Atomics.load(w, TAIL);
    const head = Atomics.load(w, HEAD);
    let n = 0;
    while (tail !== head && n < max) {
      const at = SLOTS + (tail & this.#mask) * SLOT_WORDS;
      const kind = w[at]!;
      const id = w[at + 1]!;
      const handle = w[at + 2]!;
      const length = w[at + 3]!;
      tail = (tail + 1) | 0;
      // Release the slot before visiting: the visitor may push replies that free a producer.
      Atomics.store(w, TAIL, tail);
      n++;
      visit(kind, id, handle, length);
    }
    return n;
  }

  /** Consumer: true (once) if the producer is waiting for space. */
  takeSpaceWanted(): boolean {
    return Atomics.load(this.#w, SPACE_WANTED) !== 0 &&
      Atomics.compareExchange(this.#w, SPACE_WANTED, 1, 0) === 1;
  }
}
