// The codec: a request, result, error or event becomes one heap block. Structure travels as
// JSON; every Uint8Array inside it is cut out and laid after the JSON as raw bytes, so bulk
// data (bodies, literals, articles) is copied once into the heap and never into a string.
//
// Block layout: u32 jsonBytes, u32 count, count × u32 byteLength, JSON (UTF-8), then each
// attachment at an 8-byte boundary. With no attachment the JSON is the value itself; with
// some it is `[shape, paths]`: the value with each Uint8Array replaced by 0, and for each
// attachment the keys leading to it. Paths, not marker objects, because a marker key would
// have to be one no caller uses (a control character, which sends JSON.stringify down its slow
// escaping path: 0.5 µs of a 64 KiB call) and decoding would have to walk the whole value to
// find them. null, undefined and booleans need no block at all (see LENGTH_*), and a small compact value
// may travel inside its ring slot (./ring.ts).
import { StoreError } from "./store-api.ts";
import type { SharedHeap } from "./heap.ts";
import { INLINE, INLINE_BYTES } from "./ring.ts";
import {
  type BlockMemory,
  COMPACT_TAG,
  compactBytes,
  compactDecode,
  compactEncode,
  compactWrite,
  type ReceivedNames,
  type SentNames,
  setOwn,
  withdrawNames,
} from "./compact.ts";

/** A value that fits in a ring slot's length word (handle 0). */
const LENGTH_NULL = 0;
const LENGTH_UNDEFINED = 1;
const LENGTH_TRUE = 2;
const LENGTH_FALSE = 3;

const MAX_DEPTH = 64;

/** Where a small value may travel inline: a ring (./ring.ts), or a sender that decides, when
 * the encode is done, whether its next push may take the ring's next slot (./outbox.ts). */
export interface InlineSlots extends BlockMemory {
  /** Byte offset of the payload area of the slot the next push will fill, or -1: none. */
  claim(): number;
}

export interface Encoded {
  handle: number;
  length: number;
}

function align8(n: number): number {
  return (n + 7) & ~7;
}

/**
 * Copies `value` into a new heap block owned by `owner`; throws StoreError("busy") if full.
 * Small values take the compact form (./compact.ts), which with `names` (this binding
 * direction's table) sends methods and keys by number; the rest take the JSON form. With
 * `slots`, a compact form that fits is written into the slot `slots.claim()` gives instead
 * (handle INLINE), which the caller must push at once. The slot is claimed only after encoding,
 * so a getter inside `value` that sends something itself cannot take it from under us.
 */
export function encodeValue(
  heap: SharedHeap,
  owner: number,
  value: unknown,
  names?: SentNames,
  slots?: InlineSlots,
): Encoded {
  if (value === null) return { handle: 0, length: LENGTH_NULL };
  if (value === undefined) return { handle: 0, length: LENGTH_UNDEFINED };
  if (value === true) return { handle: 0, length: LENGTH_TRUE };
  if (value === false) return { handle: 0, length: LENGTH_FALSE };
  const compact = compactEncode(value, names);
  if (compact !== null) {
    const total = compactBytes(compact);
    if (slots !== undefined && total <= INLINE_BYTES) {
      const at = slots.claim();
      if (at >= 0) {
        compactWrite(slots, at, compact);
        return { handle: INLINE, length: total };
      }
    }
    const handle = total > heap.maxBlockBytes ? 0 : heap.alloc(total, owner);
    if (handle === 0) {
      withdrawNames(compact);
      if (total > heap.maxBlockBytes) throw tooLarge(total, heap);
      throw new StoreError("busy", "IPC heap full: try again later");
    }
    compactWrite(heap, heap.offsetOf(handle), compact);
    return { handle, length: total };
  }
  return encodeJson(heap, owner, value);
}

function tooLarge(total: number, heap: SharedHeap): StoreError {
  return new StoreError(
    "invalid",
    `message of ${total} bytes exceeds the IPC heap's largest block (${heap.maxBlockBytes}); stream it in chunks`,
  );
}

function encodeJson(heap: SharedHeap, owner: number, value: unknown): Encoded {
  const cut: Cut = { bytes: [], paths: [], path: [] };
  const shaped = cutAttachments(value, cut, 0);
  const attachments = cut.bytes;
  let json: string;
  try {
    json = JSON.stringify(attachments.length === 0 ? shaped : [shaped, cut.paths]);
  } catch (err) {
    throw new StoreError("invalid", `value cannot be sent to the store: ${String(err)}`);
  }
  if (json === undefined) json = "null"; // a function or symbol: JSON drops it, so do we
  const jsonBytes = Buffer.byteLength(json, "utf8");
  const headerBytes = 8 + 4 * attachments.length;
  let total = align8(headerBytes + jsonBytes);
  for (const a of attachments) total += align8(a.byteLength);
  if (total > heap.maxBlockBytes) throw tooLarge(total, heap);
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
export function decodeValue(
  heap: SharedHeap,
  handle: number,
  length: number,
  names?: ReceivedNames,
): unknown {
  return decode(heap, handle, length, false, names).value;
}

/** Reads a value written into a ring slot (`at`: the payload's byte offset in `mem`). Its
 * attachments are always private copies: the slot is reused once the drain ends. */
export function decodeInline(
  mem: BlockMemory,
  at: number,
  length: number,
  names?: ReceivedNames,
): unknown {
  if (length < 8 || length > INLINE_BYTES || (mem.u32[at >> 2]! & COMPACT_TAG) === 0) {
    throw new StoreError("internal", "bad IPC slot");
  }
  return compactDecode(mem, at, length, false, names).value;
}

export function decodeLeased(
  heap: SharedHeap,
  handle: number,
  length: number,
  names?: ReceivedNames,
): { value: unknown; leased: boolean } {
  return decode(heap, handle, length, true, names);
}

function decode(
  heap: SharedHeap,
  handle: number,
  length: number,
  lease: boolean,
  names: ReceivedNames | undefined,
): { value: unknown; leased: boolean } {
  if (handle === 0) {
    switch (length) {
      case LENGTH_NULL:
        return { value: null, leased: false };
      case LENGTH_UNDEFINED:
        return { value: undefined, leased: false };
      case LENGTH_TRUE:
        return { value: true, leased: false };
      case LENGTH_FALSE:
        return { value: false, leased: false };
    }
    throw new StoreError("internal", `bad inline value ${length}`);
  }
  const cap = heap.capacity(handle);
  if (length < 8 || length > cap) throw new StoreError("internal", "bad IPC block");
  const base = heap.offsetOf(handle);
  const w = base >> 2;
  const u32 = heap.u32;
  if ((u32[w]! & COMPACT_TAG) !== 0) return compactDecode(heap, base, length, lease, names);
  const jsonBytes = u32[w]!;
  const count = u32[w + 1]!;
  const headerBytes = 8 + 4 * count;
  if (headerBytes + jsonBytes > length) throw new StoreError("internal", "bad IPC block");
  let parsed: unknown;
  try {
    parsed = JSON.parse(
      heap.buf.toString("utf8", base + headerBytes, base + headerBytes + jsonBytes),
    );
  } catch {
    throw new StoreError("internal", "bad IPC block");
  }
  if (count === 0) return { value: parsed, leased: false };
  if (!Array.isArray(parsed) || parsed.length !== 2 || !Array.isArray(parsed[1])) {
    throw new StoreError("internal", "bad IPC block");
  }
  const paths = parsed[1] as unknown[];
  if (paths.length !== count) throw new StoreError("internal", "bad IPC block");
  let value: unknown = parsed[0];
  let at = base + align8(headerBytes + jsonBytes);
  for (let i = 0; i < count; i++) {
    const n = u32[w + 2 + i]!;
    if (at + n > base + length) throw new StoreError("internal", "bad IPC block");
    // slice: a private, non-shared copy; subarray: a view of the block itself
    const bytes = lease ? heap.bytes.subarray(at, at + n) : heap.bytes.slice(at, at + n);
    at += align8(n);
    const path = paths[i];
    if (!Array.isArray(path)) throw new StoreError("internal", "bad IPC attachment path");
    if (path.length === 0) value = bytes;
    else placeAttachment(value, path, bytes);
  }
  return { value, leased: lease };
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

/** What `cutAttachments` found: each Uint8Array and the keys leading to it. */
interface Cut {
  bytes: Uint8Array[];
  paths: (string | number)[][];
  /** The keys from the root to the value being visited. */
  path: (string | number)[];
}

/** A copy of `value` with each Uint8Array replaced by 0; `value` itself if it holds none. */
function cutAttachments(value: unknown, cut: Cut, depth: number): unknown {
  if (typeof value !== "object" || value === null) return value;
  if (depth > MAX_DEPTH) throw new StoreError("invalid", "value nested too deeply for the store");
  if (value instanceof Uint8Array) {
    cut.bytes.push(value);
    cut.paths.push(cut.path.slice());
    return 0;
  }
  if (Array.isArray(value)) {
    let copy: unknown[] | null = null;
    for (let i = 0; i < value.length; i++) {
      const v = value[i];
      let c = v;
      if (typeof v === "object" && v !== null) {
        cut.path.push(i);
        c = cutAttachments(v, cut, depth + 1);
        cut.path.pop();
      }
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
    let c = v;
    if (typeof v === "object" && v !== null) {
      cut.path.push(k);
      c = cutAttachments(v, cut, depth + 1);
      cut.path.pop();
    }
    if (c !== v && copy === null) {
      copy = {};
      for (let j = 0; j < i; j++) {
        setOwn(copy, keys[j]!, (value as Record<string, unknown>)[keys[j]!]);
      }
    }
    if (copy !== null) setOwn(copy, k, c);
  }
  return copy ?? value;
}

/** Puts an attachment back where its path says, through own properties only (a key such as
 * "__proto__" must name a property, never reach or replace a prototype). */
function placeAttachment(root: unknown, path: unknown[], bytes: Uint8Array): void {
  let node = root;
  for (let i = 0; i < path.length - 1; i++) {
    const k = path[i];
    if (typeof node !== "object" || node === null || !ownKey(node, k)) {
      throw new StoreError("internal", "bad IPC attachment path");
    }
    node = (node as Record<string, unknown>)[k as string];
  }
  const last = path[path.length - 1];
  if (typeof node !== "object" || node === null || !ownKey(node, last)) {
    throw new StoreError("internal", "bad IPC attachment path");
  }
  setOwn(node as Record<string, unknown>, last as string, bytes);
}

function ownKey(node: object, k: unknown): boolean {
  return (typeof k === "string" || typeof k === "number") && Object.hasOwn(node, k);
}
