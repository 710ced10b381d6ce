// Errors across the rings: a StoreError keeps its code and message; anything else a handler
// throws becomes "internal". When even the error cannot get a heap block (heap full), its code
// travels alone in the ring slot, so a failure is always reported, never lost.
import { StoreError, type StoreErrorCode } from "./store-api.ts";
import type { SharedHeap } from "./heap.ts";
import { decodeValue, type Encoded, encodeValue } from "./codec.ts";

const CODES: StoreErrorCode[] = [
  "busy",
  "unavailable",
  "not_found",
  "exists",
  "invalid",
  "in_use",
  "quota",
  "denied",
  "internal",
];

export function toStoreError(err: unknown): StoreError {
  if (err instanceof StoreError) return err;
  let message: string;
  try {
    message = err instanceof Error ? err.message : String(err);
  } catch {
    // e.g. an object without a prototype: String() throws, and the caller would get no answer
    message = "store error";
  }
  return new StoreError("internal", message);
}

export function errorToWire(heap: SharedHeap, owner: number, err: unknown): Encoded {
  const e = toStoreError(err);
  try {
    return encodeValue(heap, owner, { code: e.code, message: e.message });
  } catch {
    return { handle: 0, length: Math.max(0, CODES.indexOf(e.code)) };
  }
}

export function errorFromWire(heap: SharedHeap, handle: number, length: number): StoreError {
  if (handle === 0) {
    const code = CODES[length] ?? "internal";
    return new StoreError(code, `store error (${code})`);
  }
  try {
    const v = decodeValue(heap, handle, length) as { code?: unknown; message?: unknown };
    const code = CODES.includes(v.code as StoreErrorCode) ? v.code as StoreErrorCode : "internal";
    return new StoreError(code, typeof v.message === "string" ? v.message : "store error");
  } catch (err) {
    return toStoreError(err);
  }
}
