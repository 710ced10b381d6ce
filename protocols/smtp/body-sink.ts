// The body of one message on its way into the store: the DATA or BDAT content is checked and
// unstuffed in bulk by a DataScanner, and what it passes is packed into chunks of
// ipc.chunkBytes, each sent with body.append while the connection is paused. Memory held is
// about one chunk plus one network read, whatever the message size. The upload is opened
// only when a first chunk is full, carrying it, and the last partial chunk travels with the
// commit; a message that fits one chunk (most mail) crosses to the store once, in
// delivery.commitWhole.
// The first failure (too big, bare CR/LF, overlong line, loop, store error) aborts the upload
// at once; the rest of the message is read and dropped so the reply can come at its end
// (RFC 1870 §6.2).
import type { CallReq, CallRes } from "../../ipc/store-api.ts";
import type { StoreClient } from "../../ipc/store-client.ts";
import type { Logger } from "../../log/mod.ts";
import { BufferPool } from "../wire/buffer-pool.ts";
import { DataScanner, type ScanMode, type ScanOutput } from "./data-scanner.ts";
import type { Reply } from "./reply.ts";
import { replyForStoreError } from "./store-replies.ts";

export interface BodyLimits {
  maxMessageBytes: number;
  chunkBytes: number;
  maxHops: number;
  dataLineBytes: number;
  /** Keep a copy of the first chunk (the header section) for checks at the end (`head`). */
  keepHead?: boolean;
}

export type CommitRequest = Omit<CallReq<"delivery.commit">, "uploadId">;

/**
 * Chunk buffers of this worker, reused once the store call that carried one has settled (the
 * store copies what it is sent). One pool, for the current ipc.chunkBytes.
 */
let chunks = new BufferPool(0, 16);

function takeChunk(size: number): Uint8Array {
  if (chunks.size !== size) chunks = new BufferPool(size, 16);
  return chunks.take();
}

export class BodySink implements ScanOutput {
  #uploadId: number | null = null;
  #sizeHint: number | null = null;
  /** The whole message, when it ended before any chunk was full (see commit). */
  #whole: Uint8Array | null = null;
  /** The last, partial chunk of an upload: it travels with the commit. */
  #tail: Uint8Array | null = null;
  #ready: Uint8Array[] = [];
  #current: Uint8Array;
  #used = 0;
  #aborted = false;
  #committing = false;
  #scanner: DataScanner | null = null;
  #mode: ScanMode | null = null;
  /** The first chunk, copied before it went to the store (limits.keepHead). */
  #head: Uint8Array | null = null;
  failure: Reply | null = null;

  constructor(
    private readonly store: StoreClient,
    private readonly limits: BodyLimits,
    private readonly log: Logger,
  ) {
    this.#current = takeChunk(limits.chunkBytes);
  }

  /** Client message bytes (after unstuffing), without the Received: header we add. */
  get size(): number {
    return this.#scanner?.size ?? 0;
  }

  /**
   * Queues `prefix` (our Received: header) as the first bytes. The upload itself is reserved
   * now only when the announced size (RFC 1870 SIZE) says the message will not fit one chunk;
   * otherwise when the first chunk fills up, or never (commit sends the message whole).
   */
  async begin(sizeHint: number | null, prefix: Uint8Array): Promise<Reply | null> {
    this.#sizeHint = sizeHint;
    if (sizeHint !== null && sizeHint + prefix.length > this.limits.chunkBytes) {
      const refused = await this.#open();
      if (refused) return refused;
    }
    this.write(prefix, 0, prefix.length);
    return null;
  }

  /** Reserves the upload, carrying its first chunk when there is one (one crossing less). */
  async #open(chunk?: Uint8Array): Promise<Reply | null> {
    try {
      const { uploadId } = await this.store.call("body.begin", {
        ...(this.#sizeHint === null ? {} : { sizeHint: this.#sizeHint }),
        ...(chunk ? { chunk } : {}),
      });
      this.#uploadId = uploadId;
      if (this.#aborted) {
        // Aborted (the client hung up) while the upload was being opened: release it now,
        // nobody else will.
        this.#aborted = false;
        await this.abort();
      }
      return null;
    } catch (err) {
      this.log.warn("smtp.body_begin_failed", { error: err as Error });
      return replyForStoreError(err);
    }
  }

  /**
   * DATA content as it arrives, dot-stuffed (RFC 5321 §4.5.2): the index in `bytes` just past
   * the final CRLF "." CRLF, or -1 while the message goes on. Checked and stored in bulk.
   */
  writeData(bytes: Uint8Array): number {
    return this.#scan("data").scan(bytes);
  }

  /** BDAT content (RFC 3030): raw, no stuffing, no end marker; may straddle BDAT chunks. */
  writeBdat(bytes: Uint8Array): void {
    this.#scan("bdat").scan(bytes);
  }

  /** After the BDAT LAST chunk: a last line without CRLF gets one, as DATA would have it. */
  endBdat(): void {
    this.#scan("bdat").end();
  }

  #scan(mode: ScanMode): DataScanner {
    if (this.#mode !== mode) {
      if (this.#mode !== null) throw new Error(`${mode} content in a ${this.#mode} upload`);
      this.#mode = mode;
      this.#scanner = new DataScanner(mode, {
        maxLineBytes: this.limits.dataLineBytes,
        maxMessageBytes: this.limits.maxMessageBytes,
        maxHops: this.limits.maxHops,
      }, this);
    }
    return this.#scanner!;
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
    if (this.#ready.length > 0 && !this.failure && this.#uploadId === null) {
      const first = this.#ready.shift()!;
      if (this.limits.keepHead) this.#head = first.slice();
      const refused = await this.#open(first);
      chunks.give(first);
      if (refused) return this.fail(refused);
    }
    while (this.#ready.length > 0 && !this.failure && !this.#aborted) {
      const chunk = this.#ready.shift()!;
      try {
        await this.store.call("body.append", { uploadId: this.#uploadId!, chunk });
      } catch (err) {
        this.log.warn("smtp.body_append_failed", { error: err as Error });
        this.fail(replyForStoreError(err));
      }
      chunks.give(chunk);
    }
  }

  /**
   * Sends the full chunks; the last, partial one goes with the commit (or the whole message,
   * when it fits one chunk). Check `failure` afterwards.
   */
  async finish(): Promise<void> {
    if (this.failure) return;
    if (this.#uploadId === null && this.#ready.length === 0) {
      this.#whole = this.#current.subarray(0, this.#used);
      this.#used = 0;
      return;
    }
    await this.flush();
    if (this.#used > 0) this.#tail = this.#current.subarray(0, this.#used);
    this.#used = 0;
  }

  /** The start of the message (our Received: header first), after `finish`, with keepHead;
   * `whole` when that is all of it. */
  head(): { bytes: Uint8Array; whole: boolean } | null {
    if (this.#head) return { bytes: this.#head, whole: false };
    return this.#whole ? { bytes: this.#whole, whole: true } : null;
  }

  /** Commits to every recipient in one fsynced transaction; call after `finish`. */
  async commit(req: CommitRequest): Promise<CallRes<"delivery.commit">> {
    if (this.failure) throw new Error("commit of a failed upload");
    this.#committing = true;
    try {
      let res: CallRes<"delivery.commit">;
      if (this.#whole !== null) {
        const body = this.#whole;
        this.#whole = null;
        try {
          res = await this.store.call("delivery.commitWhole", { ...req, body });
        } finally {
          chunks.give(body);
        }
      } else {
        if (this.#uploadId === null) throw new Error("commit before finish");
        const chunk = this.#tail;
        this.#tail = null;
        try {
          res = await this.store.call("delivery.commit", {
            ...req,
            uploadId: this.#uploadId,
            ...(chunk ? { chunk } : {}),
          });
        } finally {
          if (chunk) chunks.give(chunk);
        }
      }
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
    if (this.#aborted || this.#committing) return;
    this.#aborted = true;
    if (this.#uploadId === null) return; // nothing reserved in the store yet
    try {
      await this.store.call("body.abort", { uploadId: this.#uploadId });
    } catch (err) {
      // The store reclaims uncommitted pages at start-up and when this peer goes away.
      this.log.warn("smtp.body_abort_failed", { error: err as Error });
    }
  }

  /** Copies bytes[start, end) into the chunks (ScanOutput; also our Received: header). */
  write(bytes: Uint8Array, start: number, end: number): void {
    if (this.failure) return;
    const size = this.limits.chunkBytes;
    while (start < end) {
      const n = Math.min(size - this.#used, end - start);
      this.#current.set(bytes.subarray(start, start + n), this.#used);
      this.#used += n;
      start += n;
      if (this.#used === size) {
        this.#ready.push(this.#current);
        this.#current = takeChunk(size);
        this.#used = 0;
      }
    }
  }
}
