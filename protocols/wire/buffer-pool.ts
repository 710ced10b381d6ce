// Owns: reuse of large fixed-size byte buffers within one thread. A fresh 64-128 KiB buffer
// costs page faults and GC work per message; a buffer given back once nothing refers to it
// any more (its bytes written to the kernel, or copied by the store) serves the next one.
export class BufferPool {
  readonly #free: Uint8Array[] = [];

  constructor(readonly size: number, readonly max: number) {}

  take(): Uint8Array {
    return this.#free.pop() ?? new Uint8Array(this.size);
  }

  /** Give back a buffer of this pool, or a view from its start; anything else is ignored. */
  give(view: Uint8Array): void {
    if (view.byteOffset !== 0 || view.buffer.byteLength !== this.size) return;
    if (view.buffer instanceof SharedArrayBuffer || this.#free.length >= this.max) return;
    this.#free.push(view.length === this.size ? view : new Uint8Array(view.buffer));
  }
}
