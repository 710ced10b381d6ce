// The body of one message on its way into the store: content lines are checked, counted
// against the size limit and packed into chunks of ipc.chunkBytes, each sent with body.append
// while the connection is paused. Memory held is about one chunk, whatever the message size.
// The first failure (too big, bare LF, loop, store error) aborts the upload at once; the rest of
// the message is read and dropped so the reply can come at its end (RFC 1870 §6.2).
import type { CallReq, CallRes } from "../../ipc/store-api.ts";
import type { StoreClient } from "../../ipc/store-client.ts";
import type { Logger } from "../../log/mod.ts";
import { ContentCheck } from "./content-check.ts";
import { type Reply, reply } from "./reply.ts";
import { replyForStoreError } from "./store-replies.ts";

export interface BodyLimits {
  maxMessageBytes: number;
  chunkBytes: number;
  maxHops: number;
  dataLineBytes: number;
}

const CRLF = new Uint8Array([0x0d, 0x0a]);

export type CommitRequest = Omit<CallReq<"delivery.commit">, "uploadId">;

export class BodySink {
  #uploadId: number | null = null;
  #ready: Uint8Array[] = [];
  #current: Uint8Array;
  #used = 0;
  #aborted = false;
  #committing = false;
  #check: ContentCheck;
  /** Client message bytes (after unstuffing), without the Received: header we add. */
  size = 0;
  failure: Reply | null = null;

  constructor(
    private readonly store: StoreClient,
    private readonly limits: BodyLimits,
    private readonly log: Logger,
  ) {
    this.#current = new Uint8Array(limits.chunkBytes);
    this.#check = new ContentCheck(limits.maxHops);
  }

  /** Reserves the upload and queues `prefix` (our Received: header) as its first bytes. */
  async begin(sizeHint: number | null, prefix: Uint8Array): Promise<Reply | null> {
    try {
      const { uploadId } = await this.store.call(
        "body.begin",
        sizeHint === null ? {} : { sizeHint },
      );
      this.#uploadId = uploadId;
    } catch (err) {
      this.log.warn("smtp.body_begin_failed", { error: err as Error });
      return replyForStoreError(err);
    }
    this.#push(prefix);
    return null;
  }

  /** One message line without its CRLF (CRLF is added back here). */
  writeLine(line: Uint8Array, bareLf: boolean): void {
    if (this.failure) return;
    this.#check.line(line, bareLf);
    if (this.#check.failure) return this.fail(this.#check.failure);
    this.size += line.length + 2;
    if (this.size > this.limits.maxMessageBytes) {
      // RFC 1870 §6.2 / RFC 5321 §4.5.3.1.10: 552 for a message over the fixed limit.
      return this.fail(
        reply(
          552,
          "5.3.4",
          `Message size exceeds fixed limit of ${this.limits.maxMessageBytes} bytes`,
        ),
      );
    }
    this.#push(line);
    this.#push(CRLF);
  }

  /** A line longer than limits.dataLineBytes (RFC 5321 §4.5.3.1.6: 500 line too long). */
  lineTooLong(): void {
    this.fail(reply(500, "5.5.2", `Message line longer than ${this.limits.dataLineBytes} bytes`));
  }

  /** Records the first failure and releases the upload; later lines are dropped. */
  fail(r: Reply): void {
    if (this.failure) return;
    this.failure = r;
    this.#ready = [];
    this.#used = 0;
    void this.abort();
  }

  /** Chunks are full and should be appended before reading more. */
  get wantsFlush(): boolean {
    return this.#ready.length > 0 && !this.failure;
  }

  /** Appends the full chunks, one at a time (each await is the backpressure). */
  async flush(): Promise<void> {
    while (this.#ready.length > 0 && !this.failure) {
      const chunk = this.#ready.shift()!;
      try {
        await this.store.call("body.append", { uploadId: this.#uploadId!, chunk });
      } catch (err) {
        this.log.warn("smtp.body_append_failed", { error: err as Error });
        this.fail(replyForStoreError(err));
      }
    }
  }

  /** Sends the last, partial chunk; check `failure` afterwards. */
  async finish(): Promise<void> {
    if (this.#used > 0 && !this.failure) {
      this.#ready.push(this.#current.subarray(0, this.#used));
      this.#used = 0;
    }
    await this.flush();
  }

  /** Commits to every recipient in one fsynced transaction; call after `finish`. */
  async commit(req: CommitRequest): Promise<CallRes<"delivery.commit">> {
    if (this.failure || this.#uploadId === null) throw new Error("commit of a failed upload");
    this.#committing = true;
    try {
      const res = await this.store.call("delivery.commit", { ...req, uploadId: this.#uploadId });
      this.#aborted = true; // committed: nothing left to abort
      return res;
    } finally {
      this.#committing = false;
    }
  }

  /**
   * Releases the reserved pages; safe to call more than once and after a failed commit. While
   * a commit is in flight (the client hung up meanwhile) the commit decides: the store either
   * delivers the message or fails the call, and the failure path aborts.
   */
  async abort(): Promise<void> {
    if (this.#aborted || this.#committing || this.#uploadId === null) return;
    this.#aborted = true;
    try {
      await this.store.call("body.abort", { uploadId: this.#uploadId });
    } catch (err) {
      // The store reclaims uncommitted pages at start-up and when this peer goes away.
      this.log.warn("smtp.body_abort_failed", { error: err as Error });
    }
  }

  #push(bytes: Uint8Array): void {
    const size = this.limits.chunkBytes;
    let at = 0;
    while (at < bytes.length) {
      const n = Math.min(size - this.#used, bytes.length - at);
      this.#current.set(bytes.subarray(at, at + n), this.#used);
      this.#used += n;
      at += n;
      if (this.#used === size) {
        this.#ready.push(this.#current);
        this.#current = new Uint8Array(size);
        this.#used = 0;
      }
    }
  }
}
