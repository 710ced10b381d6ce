import { describe, expect, test } from "bun:test";
import { MANAGER_TAG, SharedHeap, UNIT_BYTES } from "./heap.ts";

function rng(seed: number) {
  let x = seed >>> 0 || 1;
  return () => {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    return (x >>> 0) / 2 ** 32;
  };
}

describe("shared heap", () => {
  test("random alloc/free keeps blocks disjoint and usage returns to zero", () => {
    const heap = new SharedHeap(SharedHeap.create(1 << 20), 2);
    const random = rng(42);
    const live: { h: number; size: number; fill: number }[] = [];
    for (let round = 0; round < 5000; round++) {
      if (live.length > 0 && random() < 0.45) {
        const i = Math.floor(random() * live.length);
        const b = live.splice(i, 1)[0]!;
        // the block still holds what we wrote: nobody else was given any of its bytes
        const off = heap.offsetOf(b.h);
        expect(heap.bytes[off]).toBe(b.fill);
        expect(heap.bytes[off + b.size - 1]).toBe(b.fill);
        expect(heap.free(b.h, 7)).toBe(true);
      } else {
        const size = 1 + Math.floor(random() ** 3 * 40_000);
        const h = heap.alloc(size, 7);
        if (h === 0) continue; // full for this size: fine, that is the "busy" path
        expect(heap.capacity(h)).toBeGreaterThanOrEqual(size);
        const fill = round & 0xff;
        heap.bytes.fill(fill, heap.offsetOf(h), heap.offsetOf(h) + size);
        live.push({ h, size, fill });
      }
    }
    for (const b of live) expect(heap.free(b.h)).toBe(true);
    expect(heap.usedBytes).toBe(0);
    expect(heap.blocks).toBe(0);
    // fully merged again: the largest block is available
    const big = heap.alloc(heap.maxBlockBytes, 1);
    expect(big).toBeGreaterThan(0);
    heap.free(big);
  });

  test("a full heap says so with 0, and recovers after a free", () => {
    const heap = new SharedHeap(SharedHeap.create(1 << 20), 2);
    const blocks: number[] = [];
    for (;;) {
      const h = heap.alloc(64 * 1024, 1);
      if (h === 0) break;
      blocks.push(h);
    }
    expect(blocks.length).toBe(16);
    expect(heap.alloc(1, 1)).toBe(0);
    heap.free(blocks.pop()!);
    expect(heap.alloc(1, 1)).toBeGreaterThan(0);
    expect(heap.alloc(heap.maxBlockBytes + 1, 1)).toBe(0);
  });

  test("a heap whose size is not a power of two uses all of it", () => {
    const heap = new SharedHeap(SharedHeap.create(3 * 1024 * 1024), 2);
    let total = 0;
    for (;;) {
      const h = heap.alloc(256 * 1024, 1);
      if (h === 0) break;
      total += heap.capacity(h);
    }
    expect(total).toBe(3 * 1024 * 1024);
  });

  test("free checks the owner; transfer hands a block over exactly once", () => {
    const heap = new SharedHeap(SharedHeap.create(1 << 20), 2);
    const h = heap.alloc(100, 11);
    expect(heap.free(h, 12)).toBe(false);
    expect(heap.transfer(h, 11, 12)).toBe(true);
    expect(heap.transfer(h, 11, 12)).toBe(false);
    expect(heap.free(h, 11)).toBe(false);
    expect(heap.free(h, 12)).toBe(true);
    expect(heap.free(h, 12)).toBe(false); // double free is refused
    expect(heap.usedBytes).toBe(0);
  });

  test("freeWhere reclaims one owner's blocks only", () => {
    const heap = new SharedHeap(SharedHeap.create(1 << 20), MANAGER_TAG);
    const mine = [heap.alloc(10, 4), heap.alloc(5000, 4), heap.alloc(300, 4)];
    const theirs = heap.alloc(700, 6);
    expect(heap.freeWhere((o) => o === 4)).toBe(3);
    for (const h of mine) expect(heap.capacity(h)).toBe(0);
    expect(heap.capacity(theirs)).toBe(1024);
    expect(heap.usedBytes).toBe(1024);
  });

  test("a lock left held by a dead worker is recovered without losing live blocks", () => {
    const buffer = SharedHeap.create(1 << 20);
    const worker = new SharedHeap(buffer, 5);
    const manager = new SharedHeap(buffer, MANAGER_TAG);
    const kept = worker.alloc(3000, 9);
    worker.bytes.fill(0xab, worker.offsetOf(kept), worker.offsetOf(kept) + 3000);
    new Int32Array(buffer, 0, 1)[0] = 5; // worker 5 "died" inside the allocator
    expect(manager.alloc(10, 1)).toBe(0); // gives up after a bounded wait: "busy"
    expect(manager.recoverFrom(4)).toBe(false);
    expect(manager.recoverFrom(5)).toBe(true);
    expect(manager.usedBytes).toBe(4096);
    const h = manager.alloc(10, 1);
    expect(h).toBeGreaterThan(0);
    expect(manager.bytes[manager.offsetOf(kept) + 2999]).toBe(0xab);
    expect(manager.allocations().map((a) => a.owner).sort()).toEqual([1, 9]);
    manager.free(h);
    manager.free(kept);
    expect(manager.usedBytes).toBe(0);
    expect(manager.alloc(manager.maxBlockBytes, 1)).toBeGreaterThan(0);
  });

  test("unit size is what handles address", () => {
    const heap = new SharedHeap(SharedHeap.create(1 << 20), 2);
    const a = heap.alloc(1, 1);
    const b = heap.alloc(1, 1);
    expect(Math.abs(heap.offsetOf(a) - heap.offsetOf(b))).toBe(UNIT_BYTES);
  });
});
