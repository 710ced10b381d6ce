import { describe, expect, test } from "bun:test";
import { SharedHeap } from "./heap.ts";
import { decodeBytes, decodeValue, encodeBytes, encodeValue } from "./codec.ts";
import { errorFromWire, errorToWire } from "./errors.ts";
import { StoreError } from "./store-api.ts";

describe("codec", () => {
  const heap = new SharedHeap(SharedHeap.create(1 << 20), 2);

  test("round-trips structure with bytes cut out into the block", () => {
    const body = new Uint8Array(10_000).map((_, i) => i & 0xff);
    const prefix = new TextEncoder().encode("Return-Path: <a@b>\r\n");
    const value = {
      method: "delivery.commit",
      recipients: [{ address: "ü@example.com" }, { address: "b@example.com", folder: "x" }],
      localPrefix: prefix,
      nested: [[body], { n: 1.5, t: true, z: null }],
    };
    const enc = encodeValue(heap, 3, value);
    expect(heap.owner(enc.handle)).toBe(3);
    const back = decodeValue(heap, enc.handle, enc.length) as typeof value;
    expect(back.recipients).toEqual(value.recipients);
    expect(back.localPrefix).toEqual(prefix);
    expect(back.localPrefix.buffer).not.toBeInstanceOf(SharedArrayBuffer); // a private copy
    expect((back.nested[0] as Uint8Array[])[0]).toEqual(body);
    expect(back.nested[1]).toEqual({ n: 1.5, t: true, z: null });
    // the caller's value was not modified by the cutting
    expect(value.localPrefix).toBe(prefix);
    // the JSON holds no body bytes: the block is barely larger than the bytes themselves
    expect(enc.length).toBeLessThan(10_000 + prefix.length + 300);
    heap.free(enc.handle, 3);
  });

  test("small results need no block", () => {
    for (const v of [null, undefined, true, false]) {
      const enc = encodeValue(heap, 3, v);
      expect(enc.handle).toBe(0);
      expect(decodeValue(heap, enc.handle, enc.length)).toBe(v);
    }
    expect(heap.usedBytes).toBe(0);
  });

  test("raw chunks", () => {
    const chunk = new Uint8Array([9, 8, 7, 6]);
    const h = encodeBytes(heap, 3, chunk);
    expect(decodeBytes(heap, h, 4)).toEqual(chunk);
    heap.free(h, 3);
  });

  test("full heap is busy, oversized is invalid", () => {
    const hold: number[] = [];
    for (let h = heap.alloc(4096, 1); h !== 0; h = heap.alloc(4096, 1)) hold.push(h);
    expect(() => encodeValue(heap, 3, { a: 1 })).toThrow(StoreError);
    try {
      encodeValue(heap, 3, { a: 1 });
    } catch (e) {
      expect((e as StoreError).code).toBe("busy");
      expect((e as StoreError).temporary).toBe(true);
    }
    // errors still get through a full heap, code intact
    const err = errorToWire(heap, 3, new StoreError("quota", "over quota"));
    expect(err.handle).toBe(0);
    expect(errorFromWire(heap, err.handle, err.length).code).toBe("quota");
    for (const h of hold) heap.free(h);
    try {
      encodeValue(heap, 3, { big: new Uint8Array(2 << 20) });
      throw new Error("not reached");
    } catch (e) {
      expect((e as StoreError).code).toBe("invalid");
    }
    expect(heap.usedBytes).toBe(0);
  });

  test("errors keep code and message; foreign errors become internal", () => {
    const a = errorToWire(heap, 3, new StoreError("in_use", "maildrop locked"));
    const ea = errorFromWire(heap, a.handle, a.length);
    expect([ea.code, ea.message]).toEqual(["in_use", "maildrop locked"]);
    heap.free(a.handle);
    const b = errorToWire(heap, 3, new TypeError("oops"));
    const eb = errorFromWire(heap, b.handle, b.length);
    expect([eb.code, eb.message]).toEqual(["internal", "oops"]);
    heap.free(b.handle);
  });

  test("unserialisable values are a clear error", () => {
    const cyclic: Record<string, unknown> = {};
    cyclic.self = cyclic;
    expect(() => encodeValue(heap, 3, cyclic)).toThrow(StoreError);
    expect(heap.usedBytes).toBe(0);
  });
});
