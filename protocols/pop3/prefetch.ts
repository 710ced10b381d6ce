// Reading ahead for pipelined RETR (RFC 2449 §6.6 PIPELINING): while one reply is being
// written, the messages of the RETR commands queued behind it are already being read from the
// store, so a session waits for the store once per batch rather than once per message. Small
// messages come several at a time in one `message.readMany` call (one store transaction, one
// ring round trip); larger ones, or all of them if that call fails, through their own
// `message.read` stream. A prefetched message is held whole in memory; the session bounds the
// bytes held this way (limits.connectionBufferBytes), so only messages that fit are read ahead.
//
// A readMany answer is leased (ipc/store-client.ts callLeased): over the ring transport its
// messages are views into one shared heap block, copied once, straight into the reply. The
// block is released when every message in it has been sent or dropped; messages still waiting
// one event-loop turn after they arrived (the session is blocked on a slow peer) are copied out
// first, so the shared heap, which every worker needs, is never held hostage by a slow client.
import { type MessageId, READ_MANY_MAX_IDS, StoreError } from "../../ipc/store-api.ts";
import { callLeased, type StoreClient } from "../../ipc/store-client.ts";

export class PrefetchedRead {
  readonly messageId: MessageId;
  /** The size the maildrop listed: what the session reserved for this read. */
  readonly size: number;
  /** The message as received so far, in order. */
  readonly chunks: Uint8Array[] = [];
  bytes = 0;
  /** The read ended: `error` is null for a complete message. */
  settled = false;
  error: unknown = null;
  #iterator: AsyncIterator<Uint8Array> | null = null;
  #cancelled = false;
  /** `chunks` are views into a leased block: drop this hold once they are not needed. */
  #lent: (() => void) | null = null;
  #waiters: (() => void)[] = [];

  private constructor(messageId: MessageId, size: number) {
    this.messageId = messageId;
    this.size = size;
  }

  /** One message through its own store stream. */
  static stream(store: StoreClient, userId: number, messageId: MessageId, size: number) {
    const read = new PrefetchedRead(messageId, size);
    read.#stream(store, userId);
    return read;
  }

  /** Small messages (each at most ipc.chunkBytes) in as few `message.readMany` calls as allowed. */
  static batch(
    store: StoreClient,
    userId: number,
    wanted: { messageId: MessageId; size: number }[],
  ): PrefetchedRead[] {
    const reads = wanted.map((m) => new PrefetchedRead(m.messageId, m.size));
    for (let i = 0; i < reads.length; i += READ_MANY_MAX_IDS) {
      const group = reads.slice(i, i + READ_MANY_MAX_IDS);
      const answered = ({ value: answers, release }: Awaited<ReturnType<typeof readMany>>) => {
        // The block goes back when its last holder lets go; this function holds it meanwhile.
        let holders = 1;
        const drop = () => {
          if (--holders === 0) release();
        };
        try {
          group.forEach((read, k) => {
            const a = answers[k];
            if (a && "bytes" in a) {
              if (read.#fill(a.bytes, drop)) holders++;
            } else if (a?.code === "invalid") {
              // Too big after all (ipc.chunkBytes changed under us): its own stream will do.
              read.#stream(store, userId);
            } else read.#fail(a ? new StoreError(a.code, a.message) : new Error("no answer"));
          });
        } finally {
          drop();
        }
        // Normally every message is sent in the microtasks that follow; any left then is
        // waiting behind a slow peer and gets its own copy.
        if (holders > 0) setImmediate(() => group.forEach((read) => read.#unlend()));
      };
      // The call failing as a whole (heap busy, a store without it): read each on its own.
      const fallback = () => group.forEach((read) => read.#stream(store, userId));
      readMany(store, userId, group.map((r) => r.messageId)).then(answered, fallback);
    }
    return reads;
  }

  /** Resolves once the whole message (or an error) is in. */
  whenSettled(): Promise<void> {
    if (this.settled) return Promise.resolve();
    return new Promise((resolve) => this.#waiters.push(resolve));
  }

  /** The message has been copied into its reply: its bytes are no longer needed. */
  release(): void {
    this.chunks.length = 0;
    this.#endLease();
  }

  /** Nobody will read this message: stop its store stream and drop what arrived. */
  cancel(): void {
    if (this.#cancelled) return;
    this.#cancelled = true;
    this.release();
    if (!this.settled) this.#stop();
    this.#settle(); // whoever waits moves on (and finds the session closed)
  }

  #endLease(): void {
    const drop = this.#lent;
    this.#lent = null;
    drop?.();
  }

  /** Still holding a leased block: take private copies and let the block go. */
  #unlend(): void {
    if (!this.#lent) return;
    for (let i = 0; i < this.chunks.length; i++) this.chunks[i] = this.chunks[i]!.slice();
    this.#endLease();
  }

  #stream(store: StoreClient, userId: number): void {
    if (this.#cancelled || this.settled) return;
    try {
      const messageId = this.messageId;
      this.#iterator = store.stream("message.read", { userId, messageId })[Symbol.asyncIterator]();
    } catch (e) {
      // The store connection is gone: RETR reports it in its turn, like any read failure.
      return this.#fail(e);
    }
    void this.#run();
  }

  async #run(): Promise<void> {
    try {
      for (;;) {
        const r = await this.#iterator!.next();
        if (r.done || this.#cancelled) break;
        this.#take(r.value);
      }
      this.#settle();
    } catch (e) {
      this.#stop();
      this.#fail(e);
    }
  }

  #take(chunk: Uint8Array): void {
    this.chunks.push(chunk);
    this.bytes += chunk.length;
    // The listed size is what was reserved: a store sending more must not grow memory.
    if (this.bytes > this.size) throw new Error("message is longer than its listed size");
  }

  /** The whole message at once; with `lent`, a view the caller's lease holds. Returns
   * whether this read kept the view (and so must call `lent` when done with it). */
  #fill(bytes: Uint8Array, lent: () => void): boolean {
    if (this.#cancelled || this.settled) return false;
    try {
      this.#take(bytes);
    } catch (e) {
      this.chunks.length = 0;
      this.#fail(e);
      return false;
    }
    this.#lent = lent;
    this.#settle();
    return true;
  }

  #fail(e: unknown): void {
    if (this.settled) return;
    this.error = e;
    this.#settle();
  }

  #settle(): void {
    if (this.settled) return;
    this.settled = true;
    for (const w of this.#waiters.splice(0)) w();
  }

  #stop(): void {
    this.#iterator?.return?.()?.catch(() => {});
  }
}

/** Never throws: a store that cannot even take the call rejects (async), like any failure. */
function readMany(store: StoreClient, userId: number, messageIds: MessageId[]) {
  return callLeased(store, "message.readMany", { userId, messageIds });
}
