// The compact form gives exactly what the JSON form would, sends names once per binding
// direction, withdraws names of blocks never sent, and refuses what it cannot read.
import { describe, expect, test } from "bun:test";
import { SharedHeap } from "./heap.ts";
import { decodeInline, decodeLeased, decodeValue, encodeValue } from "./codec.ts";
import { INLINE, Ring, ringBytes } from "./ring.ts";
import { COMPACT_TAG, ReceivedNames, SentNames } from "./compact.ts";
import { StoreError } from "./store-api.ts";

const heap = new SharedHeap(SharedHeap.create(1 << 20), 2);

function isCompact(handle: number): boolean {
  return (heap.u32[heap.offsetOf(handle) >> 2]! & COMPACT_TAG) !== 0;
}

/** Encodes and decodes through one binding direction; frees the block. */
function roundTrip(value: unknown, sent = new SentNames(), received = new ReceivedNames()) {
  const enc = encodeValue(heap, 3, value, sent);
  const compact = enc.handle !== 0 && isCompact(enc.handle);
  const back = decodeValue(heap, enc.handle, enc.length, received);
  if (enc.handle !== 0) heap.free(enc.handle, 3);
  return { back, compact, length: enc.length };
}

describe("compact codec", () => {
  test("a lone surrogate comes back as JSON keeps it (the JSON form carries it)", () => {
    const sent = new SentNames();
    const received = new ReceivedNames();
    const v = { address: "a\ud800b", name: "ok" };
    const { back, compact } = roundTrip(v, sent, received);
    expect(compact).toBe(false);
    expect(back).toEqual(JSON.parse(JSON.stringify(v)));
    expect((back as { address: string }).address).toBe("a\ud800b");
    // The names the failed compact attempt defined were withdrawn: the tables stay in step.
    expect(roundTrip({ name: "again" }, sent, received).back).toEqual({ name: "again" });
  });

  test("small values take the compact form and come back as JSON would give them", () => {
    const body = new Uint8Array([1, 2, 3, 250]);
    const values: unknown[] = [
      ["body.append", { uploadId: 7, chunk: body }],
      ["account.get", { address: "ünï@example.com" }],
      { size: 65536, ratio: 0.25, neg: -5, big: 2 ** 40, zero: -0, none: null },
      { nan: NaN, inf: -Infinity, skipped: undefined, flag: true, off: false },
      [1, undefined, "x", [2, [3]], { a: { b: "c" } }],
      "a lone string",
      42,
      body,
      { __proto__: null, plain: 1 },
    ];
    for (const v of values) {
      const { back, compact } = roundTrip(v);
      expect(compact).toBe(true);
      if (v instanceof Uint8Array) expect(back).toEqual(v);
      else {
        // JSON's view of the value, with each Uint8Array compared separately
        const bytesOut = (x: unknown) =>
          JSON.stringify(x, (_k, y) => y instanceof Uint8Array ? [...y] : y);
        expect(bytesOut(back)).toBe(bytesOut(v));
      }
    }
    expect(heap.usedBytes).toBe(0);
  });

  test("names travel once per direction, then by number", () => {
    const sent = new SentNames();
    const received = new ReceivedNames();
    const first = roundTrip(["account.get", { address: "a@example.com" }], sent, received);
    const again = roundTrip(["account.get", { address: "a@example.com" }], sent, received);
    expect(again.back).toEqual(first.back);
    expect(again.length).toBeLessThan(first.length);
    expect(received.names).toEqual(["account.get", "address"]);
    // A reader that missed the definitions refuses, rather than guessing a name.
    const enc = encodeValue(heap, 3, ["account.get", { address: "b" }], sent);
    expect(() => decodeValue(heap, enc.handle, enc.length, new ReceivedNames())).toThrow(
      StoreError,
    );
    heap.free(enc.handle, 3);
  });

  test("a block never sent withdraws the names it defined", () => {
    const sent = new SentNames();
    const hold: number[] = [];
    for (let h = heap.alloc(4096, 1); h !== 0; h = heap.alloc(4096, 1)) hold.push(h);
    for (let h = heap.alloc(128, 1); h !== 0; h = heap.alloc(128, 1)) hold.push(h);
    expect(() => encodeValue(heap, 3, ["mailbox.list", { userId: 1 }], sent)).toThrow(StoreError);
    expect(sent.ids.size).toBe(0);
    for (const h of hold) heap.free(h);
    const received = new ReceivedNames();
    const { back } = roundTrip(["mailbox.list", { userId: 1 }], sent, received);
    expect(back).toEqual(["mailbox.list", { userId: 1 }]);
    expect(heap.usedBytes).toBe(0);
  });

  test("__proto__ stays an own property; shapes it does not cover take the JSON form", () => {
    const tricky = JSON.parse('{"__proto__": {"polluted": 1}, "ok": 2}');
    const { back, compact } = roundTrip(tricky);
    expect(compact).toBe(true);
    expect(Object.getPrototypeOf(back)).toBe(Object.prototype);
    expect(Object.hasOwn(back as object, "__proto__")).toBe(true);
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
    const date = new Date(0);
    const fallbacks: unknown[] = [
      { when: date },
      { deep: [[[[[1]]]]] },
      { long: "x".repeat(1000) },
      Array.from({ length: 2000 }, (_, i) => i),
    ];
    for (const v of fallbacks) {
      const { back, compact } = roundTrip(v);
      expect(compact).toBe(false);
      expect(back).toEqual(JSON.parse(JSON.stringify(v)));
    }
    // The JSON form places bytes by path, however deep, and never through a prototype.
    const body = new Uint8Array([5, 6, 7]);
    const deep = JSON.parse('{"__proto__": {"x": 0}, "d": [[[[[0]]]]], "when": 0}');
    deep.__proto__ = { x: body };
    deep.d[0][0][0][0][0] = body;
    deep.when = date;
    const out = roundTrip(deep);
    expect(out.compact).toBe(false);
    const got = out.back as { d: Uint8Array[][][][][]; when: string };
    expect(got.d[0]![0]![0]![0]![0]).toEqual(body);
    expect(got.when).toBe(date.toJSON());
    expect((Object.getOwnPropertyDescriptor(got, "__proto__")!.value as { x: unknown }).x)
      .toEqual(body);
    expect(Object.getPrototypeOf(got)).toBe(Object.prototype);
    expect(() => encodeValue(heap, 3, { n: 1n })).toThrow(StoreError); // as JSON: invalid
    expect(heap.usedBytes).toBe(0);
  });

  test("leased attachments are views into the block", () => {
    const body = new Uint8Array(1000).fill(9);
    const enc = encodeValue(heap, 3, ["body.append", { uploadId: 1, chunk: body }]);
    const { value, leased } = decodeLeased(heap, enc.handle, enc.length);
    expect(leased).toBe(true);
    const chunk = (value as [string, { chunk: Uint8Array }])[1].chunk;
    expect(chunk.buffer).toBeInstanceOf(SharedArrayBuffer);
    expect(chunk).toEqual(body);
    heap.free(enc.handle, 3);
  });

  test("a damaged block is an internal error, not a crash", () => {
    const enc = encodeValue(heap, 3, { a: [1, 2, 3], s: "text" });
    const w = heap.offsetOf(enc.handle) >> 2;
    heap.u32[w] = COMPACT_TAG | 1000; // claims more words than the block holds
    expect(() => decodeValue(heap, enc.handle, enc.length)).toThrow(StoreError);
    heap.u32[w] = COMPACT_TAG | 2; // a record of 2 fields cut short
    expect(() => decodeValue(heap, enc.handle, enc.length)).toThrow(StoreError);
    heap.free(enc.handle, 3);
    expect(heap.usedBytes).toBe(0);
  });

  test("fuzz: random values round-trip as JSON would; random damage is a clean error", () => {
    let seed = 0x2545f491;
    const rand = (n: number) => {
      seed ^= seed << 13;
      seed ^= seed >>> 17;
      seed ^= seed << 5;
      return (seed >>> 0) % n;
    };
    const pieces = ["a", "é", "€", "𝄞", "@", " ", "\n", "z"];
    const str = () => Array.from({ length: rand(12) }, () => pieces[rand(pieces.length)]).join("");
    const keys = ["id", "address", "flags", "uid", "name", "x"];
    const value = (depth: number): unknown => {
      switch (rand(depth > 2 ? 5 : 8)) {
        case 0:
          return rand(2 ** 31) - 2 ** 30;
        case 1:
          return rand(1000) / 7;
        case 2:
          return str();
        case 3:
          return [null, true, false, undefined][rand(4)];
        case 4:
          return new Uint8Array(rand(40)).map(() => rand(256));
        case 5:
          return Array.from({ length: rand(5) }, () => value(depth + 1));
        default: {
          const rec: Record<string, unknown> = {};
          for (let i = rand(5); i > 0; i--) rec[keys[rand(keys.length)]!] = value(depth + 1);
          return rec;
        }
      }
    };
    const asJson = (x: unknown) =>
      JSON.stringify(x, (_k, y) => y instanceof Uint8Array ? [...y] : y);
    const ring = new Ring(new SharedArrayBuffer(ringBytes(4)), 0, 4);
    const sent = new SentNames();
    const received = new ReceivedNames();
    const forms = { inline: 0, compact: 0, json: 0 };
    for (let i = 0; i < 3000; i++) {
      // deeper than the compact form goes now and then: the JSON form is fuzzed too
      const v = ["method.x", i % 5 === 0 ? [[[[value(0)]]]] : value(0)];
      // through the heap, or inside a ring slot when it fits: both read back the same
      const enc = encodeValue(heap, 3, v, sent, i % 2 === 0 ? ring : undefined);
      let at = -1;
      if (enc.handle === INLINE) {
        ring.push(1, i, INLINE, enc.length);
        ring.drain((_k, _id, _h, _l, payloadAt) => at = payloadAt);
      }
      if (enc.handle === INLINE) forms.inline++;
      else if (isCompact(enc.handle)) forms.compact++;
      else forms.json++;
      const mem = enc.handle === INLINE ? ring : heap;
      const base = enc.handle === INLINE ? at : heap.offsetOf(enc.handle);
      const read = () =>
        enc.handle === INLINE
          ? decodeInline(ring, at, enc.length, received)
          : decodeValue(heap, enc.handle, enc.length, received);
      expect(asJson(read())).toBe(asJson(v));
      // Damage one word and read again: a value or a StoreError, never anything else. (A
      // damaged block may define names out of step; a fresh table keeps the next round sane.)
      const w = (base >> 2) + rand(Math.max(1, enc.length >> 2));
      mem.u32[w] = rand(2) === 0 ? mem.u32[w]! ^ (1 << rand(32)) : rand(2 ** 32);
      try {
        if (enc.handle === INLINE) decodeInline(ring, at, enc.length, new ReceivedNames());
        else decodeValue(heap, enc.handle, enc.length, new ReceivedNames());
      } catch (err) {
        expect(err).toBeInstanceOf(StoreError);
      }
      if (enc.handle > 0) heap.free(enc.handle, 3);
    }
    expect(heap.usedBytes).toBe(0);
    expect(Math.min(forms.inline, forms.compact, forms.json)).toBeGreaterThan(300);
  });
});
