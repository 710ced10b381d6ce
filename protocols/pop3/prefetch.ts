// Reading ahead for pipelined RETR (RFC 2449 §6.6 PIPELINING): while one reply is being
// written, the messages of the RETR commands queued behind it are already being read from the
// store, so a session waits for the store once per batch rather than once per message. Small
// messages come several at a time in one `message.readMany` call (one store transaction, one
// ring round trip); larger ones, or all of them if that call fails, through their own
// `message.read` stream. A prefetched message is held whole in memory; the session bounds the
// bytes held this way (limits.connectionBufferBytes), so only messages that fit are read ahead.
import { type MessageId, READ_MANY_MAX_IDS, StoreError } from "../../ipc/store-api.ts";
import type { StoreClient } from "../../ipc/store-client.ts";

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
      const answered = (answers: Awaited<ReturnType<typeof readMany>>) => {
        group.forEach((read, k) => {
          const a = answers[k];
          if (a && "bytes" in a) read.#fill(a.bytes);
          // Too big after all (ipc.chunkBytes changed under us): its own stream will do.
          else if (a?.code === "invalid") read.#stream(store, userId);
          else read.#fail(a ? new StoreError(a.code, a.message) : new Error("no answer"));
        });
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

  /** Nobody will read this message: stop its store stream and drop what arrived. */
  cancel(): void {
    if (this.#cancelled) return;
    this.#cancelled = true;
    this.chunks.length = 0;
    if (!this.settled) this.#stop();
    this.#settle(); // whoever waits moves on (and finds the session closed)
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

  #fill(bytes: Uint8Array): void {
    if (this.#cancelled || this.settled) return;
    try {
      this.#take(bytes);
    } catch (e) {
      return this.#fail(e);
    }
    this.#settle();
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

function readMany(store: StoreClient, userId: number, messageIds: MessageId[]) {
  try {
    return store.call("message.readMany", { userId, messageIds });
  } catch (e) {
    return Promise.reject(e);
  }
}
