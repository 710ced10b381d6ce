// The sending side of one ring: entries go straight into the ring while it has room; when it
// is full they wait here in order (backpressure without spinning) and are flushed as the peer
// drains. Both ends of a binding send this way: the client its requests, the server its replies.
import { ringDoorbell } from "./doorbell.ts";
import type { Ring, RingEntry } from "./ring.ts";
import { encodeValue, type InlineSlots } from "./codec.ts";
import type { SharedHeap } from "./heap.ts";
import type { SentNames } from "./compact.ts";

export class RingOutbox {
  #waiting: RingEntry[] = [];
  /** Index of the first entry still waiting (a head index: no O(n) shift per entry). */
  #head = 0;
  /** The ring's next slot, for a value whose push comes straight after its encode. */
  readonly #slots: InlineSlots;

  constructor(
    private readonly ring: Ring,
    private readonly peerBell: Int32Array,
    private readonly heap: SharedHeap,
    /** Owner word of the heap blocks this side allocates. */
    private readonly owner: number,
  ) {
    // Asked when the encode is done, not before: a getter inside the value may have sent
    // something that is waiting here, and the peer may have drained meanwhile. A slot claimed
    // then would go to the waiting entry's push, and ours into the next slot, unwritten.
    this.#slots = {
      u32: ring.u32,
      bytes: ring.bytes,
      buf: ring.buf,
      claim: () => this.length === 0 ? ring.claim() : -1,
    };
  }

  /** Entries waiting for ring space. */
  get length(): number {
    return this.#waiting.length - this.#head;
  }

  /**
   * Encodes `value` and sends it as one entry: inside the next ring slot when the ring has
   * room and the value fits, else in a heap block (throws StoreError "busy" if the heap is
   * full). Only an entry pushed at once may be inline: a waiting one has no slot to live in.
   */
  sendValue(kind: number, id: number, value: unknown, names?: SentNames): void {
    const enc = encodeValue(this.heap, this.owner, value, names, this.#slots);
    this.send(kind, id, enc.handle, enc.length);
  }

  send(kind: number, id: number, handle: number, length: number): void {
    if (this.length === 0 && this.ring.push(kind, id, handle, length)) {
      ringDoorbell(this.peerBell);
      return;
    }
    this.#waiting.push({ kind, id, handle, length });
    this.flush();
  }

  flush(): void {
    let pushed = 0;
    while (this.#head < this.#waiting.length) {
      const e = this.#waiting[this.#head]!;
      if (!this.ring.push(e.kind, e.id, e.handle, e.length)) {
        this.ring.wantSpace();
        // The peer may have drained between our failed push and the flag: try once more.
        if (!this.ring.push(e.kind, e.id, e.handle, e.length)) break;
      }
      this.#head++;
      pushed++;
    }
    if (this.#head === this.#waiting.length) {
      this.#waiting = [];
      this.#head = 0;
    } else if (this.#head > 1024) {
      this.#waiting = this.#waiting.slice(this.#head);
      this.#head = 0;
    }
    if (pushed > 0) ringDoorbell(this.peerBell);
  }

  /**
   * Turns a waiting entry of `kind` and `id` into `to` (a call its caller gave up on becomes
   * RETRACTED); false if it already went into the ring. The entry is still sent, in its
   * place: its block may define names that later entries cite.
   */
  retract(kind: number, id: number, to: number): boolean {
    for (let i = this.#head; i < this.#waiting.length; i++) {
      const e = this.#waiting[i]!;
      if (e.kind === kind && e.id === id) {
        e.kind = to;
        return true;
      }
    }
    return false;
  }

  /** Empties the outbox, handing back each waiting entry (to free its heap block; a waiting
   * entry is never inline). */
  discard(each: (e: RingEntry) => void): void {
    for (let i = this.#head; i < this.#waiting.length; i++) each(this.#waiting[i]!);
    this.#waiting = [];
    this.#head = 0;
  }
}
