// The codec: a request, result, error or event becomes one heap block. Structure travels as
// JSON; every Uint8Array inside it is cut out and laid after the JSON as raw bytes, so bulk
// data (bodies, literals, articles) is copied once into the heap and never into a string.
//
// Block layout: u32 jsonBytes, u32 count, count × u32 byteLength, JSON (UTF-8), then each
// attachment at an 8-byte boundary. Small results need no block at all (see INLINE_*).
import { StoreError } from "./store-api.ts";
import type { SharedHeap } from "./heap.ts";

/** A value that fits in a ring slot's length word (handle 0). */
const INLINE_NULL = 0;
const INLINE_UNDEFINED = 1;
const INLINE_TRUE = 2;
const INLINE_FALSE = 3;

/** The key marking an attachment placeholder in the JSON: `{"\u0000b": index}`. */
const PLACEHOLDER = "\u0000b";
const MAX_DEPTH = 64;

export interface Encoded {
  handle: number;
  length: number;
}

function align8(n: number): number {
  return (n + 7) & ~7;
}

/** Copies `value` into a new heap block owned by `owner`; throws StoreError("busy") if full. */
export function encodeValue(heap: SharedHeap, owner: number, value: unknown): Encoded {
  if (value === null) return { handle: 0, length: INLINE_NULL };
  if (value === undefined) return { handle: 0, length: INLINE_UNDEFINED };
  if (value === true) return { handle: 0, length: INLINE_TRUE };
  if (value === false) return { handle: 0, length: INLINE_FALSE };
  const attachments: Uint8Array[] = [];
  const shaped = cutAttachments(value, attachments, 0);
  let json: string;
  try {
    json = JSON.stringify(shaped);
  } catch (err) {
    throw new StoreError("invalid", `value cannot be sent to the store: ${String(err)}`);
  }
  if (json === undefined) json = "null"; // a function or symbol: JSON drops it, so do we
  const jsonBytes = Buffer.byteLength(json, "utf8");
  const headerBytes = 8 + 4 * attachments.length;
  let total = align8(headerBytes + jsonBytes);
  for (const a of attachments) total += align8(a.byteLength);
  if (total > heap.maxBlockBytes) {
    throw new StoreError(
      "invalid",
      `message of ${total} bytes exceeds the IPC heap's largest block (${heap.maxBlockBytes}); stream it in chunks`,
    );
  }
  const handle = heap.alloc(total, owner);
  if (handle === 0) throw new StoreError("busy", "IPC heap full: try again later");
  const base = heap.offsetOf(handle);
  const w = base >> 2;
  const u32 = heap.u32;
  u32[w] = jsonBytes;
  u32[w + 1] = attachments.length;
  for (let i = 0; i < attachments.length; i++) u32[w + 2 + i] = attachments[i]!.byteLength;
  heap.buf.write(json, base + headerBytes, jsonBytes, "utf8");
  let at = base + align8(headerBytes + jsonBytes);
  for (const a of attachments) {
    heap.bytes.set(a, at);
    at += align8(a.byteLength);
  }
  return { handle, length: total };
}

/**
 * Reads a value encoded by `encodeValue`. Attachments are private copies, or with `lease`,
 * views into the block (zero-copy: valid only until the block is freed); `leased` says
 * whether any view was handed out.
 */
export function decodeValue(heap: SharedHeap, handle: number, length: number): unknown {
  return decode(heap, handle, length, false).value;
}

export function decodeLeased(
  heap: SharedHeap,
  handle: number,
  length: number,
): { value: unknown; leased: boolean } {
  return decode(heap, handle, length, true);
}

function decode(
  heap: SharedHeap,
  handle: number,
  length: number,
  lease: boolean,
): { value: unknown; leased: boolean } {
  if (handle === 0) {
    switch (length) {
      case INLINE_NULL:
        return { value: null, leased: false };
      case INLINE_UNDEFINED:
        return { value: undefined, leased: false };
      case INLINE_TRUE:
        return { value: true, leased: false };
      case INLINE_FALSE:
        return { value: false, leased: false };
    }
    throw new StoreError("internal", `bad inline value ${length}`);
  }
  const cap = heap.capacity(handle);
  if (length < 8 || length > cap) throw new StoreError("internal", "bad IPC block");
  const base = heap.offsetOf(handle);
  const w = base >> 2;
  const u32 = heap.u32;
  const jsonBytes = u32[w]!;
  const count = u32[w + 1]!;
  const headerBytes = 8 + 4 * count;
  if (headerBytes + jsonBytes > length) throw new StoreError("internal", "bad IPC block");
  const value = JSON.parse(
    heap.buf.toString("utf8", base + headerBytes, base + headerBytes + jsonBytes),
  );
  if (count === 0) return { value, leased: false };
  const attachments: Uint8Array[] = [];
  let at = base + align8(headerBytes + jsonBytes);
  for (let i = 0; i < count; i++) {
    const n = u32[w + 2 + i]!;
    if (at + n > base + length) throw new StoreError("internal", "bad IPC block");
    // slice: a private, non-shared copy; subarray: a view of the block itself
    attachments.push(lease ? heap.bytes.subarray(at, at + n) : heap.bytes.slice(at, at + n));
    at += align8(n);
  }
  return { value: restoreAttachments(value, attachments), leased: lease };
}

/** Copies raw bytes into a block (a stream chunk): no header, the ring slot says the length. */
export function encodeBytes(heap: SharedHeap, owner: number, chunk: Uint8Array): number {
  const handle = heap.alloc(Math.max(1, chunk.byteLength), owner);
  if (handle === 0) return 0;
  heap.bytes.set(chunk, heap.offsetOf(handle));
  return handle;
}

export function decodeBytes(heap: SharedHeap, handle: number, length: number): Uint8Array {
  if (length > heap.capacity(handle)) throw new StoreError("internal", "bad IPC chunk");
  const base = heap.offsetOf(handle);
  return heap.bytes.slice(base, base + length);
}

/** A copy of `value` with each Uint8Array replaced by a placeholder; `value` itself if none. */
function cutAttachments(value: unknown, out: Uint8Array[], depth: number): unknown {
  if (typeof value !== "object" || value === null) return value;
  if (depth > MAX_DEPTH) throw new StoreError("invalid", "value nested too deeply for the store");
  if (value instanceof Uint8Array) {
    out.push(value);
    return { [PLACEHOLDER]: out.length - 1 };
  }
  if (Array.isArray(value)) {
    let copy: unknown[] | null = null;
    for (let i = 0; i < value.length; i++) {
      const v = value[i];
      const c = cutAttachments(v, out, depth + 1);
      if (c !== v && copy === null) copy = value.slice(0, i);
      if (copy !== null) copy.push(c);
    }
    return copy ?? value;
  }
  let copy: Record<string, unknown> | null = null;
  const keys = Object.keys(value);
  for (let i = 0; i < keys.length; i++) {
    const k = keys[i]!;
    const v = (value as Record<string, unknown>)[k];
    const c = cutAttachments(v, out, depth + 1);
    if (c !== v && copy === null) {
      copy = {};
      for (let j = 0; j < i; j++) copy[keys[j]!] = (value as Record<string, unknown>)[keys[j]!];
    }
    if (copy !== null) copy[k] = c;
  }
  return copy ?? value;
}

function restoreAttachments(value: unknown, attachments: Uint8Array[]): unknown {
  if (typeof value !== "object" || value === null) return value;
  if (Array.isArray(value)) {
    for (let i = 0; i < value.length; i++) value[i] = restoreAttachments(value[i], attachments);
    return value;
  }
  const rec = value as Record<string, unknown>;
  const index = rec[PLACEHOLDER];
  if (typeof index === "number" && Object.keys(rec).length === 1) {
    const a = attachments[index];
    if (!a) throw new StoreError("internal", "bad IPC attachment index");
    return a;
  }
  for (const k of Object.keys(rec)) rec[k] = restoreAttachments(rec[k], attachments);
  return value;
}
