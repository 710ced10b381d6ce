// The outbox as both ends of a binding use it: values read back in send order, whichever way
// each travelled (inside its ring slot, in a heap block, held back while the ring was full).
import { describe, expect, test } from "bun:test";
import { SharedHeap } from "./heap.ts";
import { decodeInline, decodeValue } from "./codec.ts";
import { INLINE, Ring, ringBytes } from "./ring.ts";
import { ReceivedNames, SentNames } from "./compact.ts";
import { RingOutbox } from "./outbox.ts";
import { StoreError } from "./store-api.ts";

const OWNER = 3;

function pair(slots: number, heapBytes = 1 << 20) {
  const heap = new SharedHeap(SharedHeap.create(heapBytes), 2);
  const ring = new Ring(new SharedArrayBuffer(ringBytes(slots)), 0, slots);
  const outbox = new RingOutbox(ring, new Int32Array(new SharedArrayBuffer(128)), heap, OWNER);
  const received = new ReceivedNames();
  const forms = { inline: 0, heap: 0 };
  /** The consumer: reads every ready entry in ring order, as the peer's drain does. */
  const drain = (max?: number) => {
    const got: [number, unknown][] = [];
    ring.drain((_kind, id, handle, length, at) => {
      const value = handle === INLINE
        ? decodeInline(ring, at, length, received)
        : decodeValue(heap, handle, length, received);
      if (handle > 0) heap.free(handle, OWNER);
      forms[handle === INLINE ? "inline" : "heap"]++;
      got.push([id, value]);
    }, max);
    return got;
  };
  return { heap, ring, outbox, drain, forms };
}

describe("ring outbox", () => {
  test("a getter that sends while the ring is full, then the peer drains: each value keeps its own slot", () => {
    const { ring, outbox, drain, heap } = pair(4);
    const sent = new SentNames();
    const seen: [number, unknown][] = [];
    for (let i = 0; i < 4; i++) outbox.sendValue(1, i, ["m", { n: i }], sent);
    expect(ring.free).toBe(0);
    const req = {
      get x() {
        // Sends on the same binding while the outer value is being encoded; the ring is full,
        // so this one waits in the outbox. Then the peer (another thread) drains meanwhile.
        outbox.sendValue(1, 98, "nested");
        seen.push(...drain());
        return 1;
      },
    };
    outbox.sendValue(1, 99, req, sent);
    outbox.flush();
    seen.push(...drain());
    expect(seen).toEqual([
      [0, ["m", { n: 0 }]],
      [1, ["m", { n: 1 }]],
      [2, ["m", { n: 2 }]],
      [3, ["m", { n: 3 }]],
      [98, "nested"],
      [99, { x: 1 }],
    ]);
    expect(heap.usedBytes).toBe(0);
  });

  test("fuzz: with a small ring, a small heap and a consumer at random, every value arrives in order", () => {
    let seed = 0x1f2e3d4c;
    const rand = (n: number) => {
      seed ^= seed << 13;
      seed ^= seed >>> 17;
      seed ^= seed << 5;
      return (seed >>> 0) % n;
    };
    const { outbox, drain, heap, forms } = pair(8, 64 * 1024);
    const sent = new SentNames();
    // more keys than a binding direction interns: the later ones travel spelled out
    const keys = Array.from({ length: 1500 }, (_, i) => `k${i}`);
    const expected: [number, unknown][] = [];
    const got: [number, unknown][] = [];
    const hog: number[] = [];
    let busy = 0;
    let heldBack = 0;
    for (let i = 0; i < 4000; i++) {
      const rec: Record<string, unknown> = {};
      for (let n = rand(4); n > 0; n--) {
        rec[keys[rand(keys.length)]!] = rand(3) === 0 ? "é".repeat(rand(200)) : rand(1000);
      }
      const value = [`method.${rand(6)}`, rec];
      try {
        outbox.sendValue(1, i, value, sent);
        expected.push([i, value]);
        if (outbox.length > 0) heldBack++;
      } catch (err) {
        expect((err as StoreError).code).toBe("busy");
        busy++;
      }
      switch (rand(6)) {
        case 0:
          got.push(...drain(1 + rand(8)));
          outbox.flush();
          break;
        case 1: // the heap fills up (another binding's traffic), or frees again
          if (hog.length === 0) {
            for (let h = heap.alloc(256, 9); h !== 0; h = heap.alloc(256, 9)) hog.push(h);
          } else for (const h of hog.splice(0)) heap.free(h, 9);
          break;
      }
    }
    for (const h of hog.splice(0)) heap.free(h, 9);
    while (outbox.length > 0 || got.length < expected.length) {
      got.push(...drain());
      outbox.flush();
    }
    expect(got).toEqual(expected);
    expect(Math.min(busy, heldBack, forms.inline, forms.heap)).toBeGreaterThan(100);
    expect(sent.ids.size).toBe(1024);
    expect(heap.usedBytes).toBe(0);
  });
});
