import { describe, expect, test } from "bun:test";
import { INLINE, INLINE_BYTES, Ring, ringBytes, ringSlotsFor } from "./ring.ts";

function collect(ring: Ring): number[][] {
  const out: number[][] = [];
  ring.drain((k, id, h, l) => out.push([k, id, h, l]));
  return out;
}

describe("ring", () => {
  test("empty and full", () => {
    const ring = new Ring(new SharedArrayBuffer(ringBytes(4)), 0, 4);
    expect(collect(ring)).toEqual([]);
    for (let i = 0; i < 4; i++) expect(ring.push(1, i, 10 + i, 20 + i)).toBe(true);
    expect(ring.push(1, 99, 0, 0)).toBe(false);
    expect(ring.size).toBe(4);
    expect(collect(ring).map((e) => e[1])).toEqual([0, 1, 2, 3]);
    expect(ring.free).toBe(4);
  });

  test("wrap-around keeps order over many laps, across the 2^31 counter wrap", () => {
    const buffer = new SharedArrayBuffer(ringBytes(8));
    const words = new Int32Array(buffer);
    words[0] = 0x7ffffffa; // head
    words[16] = 0x7ffffffa; // tail
    const ring = new Ring(buffer, 0, 8);
    let sent = 0;
    let got = 0;
    for (let lap = 0; lap < 50; lap++) {
      const burst = 1 + (lap % 8);
      for (let i = 0; i < burst; i++) expect(ring.push(2, sent++, 1, 1)).toBe(true);
      for (const e of collect(ring)) expect(e[1]).toBe(got++);
    }
    expect(got).toBe(sent);
    expect(ring.size).toBe(0);
  });

  test("drain takes every ready entry, up to max", () => {
    const ring = new Ring(new SharedArrayBuffer(ringBytes(16)), 0, 16);
    for (let i = 0; i < 10; i++) ring.push(3, i, 0, 0);
    const seen: number[] = [];
    expect(ring.drain((_k, id) => seen.push(id), 4)).toBe(4);
    expect(ring.drain((_k, id) => seen.push(id))).toBe(6);
    expect(seen).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
  });

  test("a producer waiting for space is told once", () => {
    const ring = new Ring(new SharedArrayBuffer(ringBytes(2)), 0, 2);
    ring.push(1, 1, 0, 0);
    ring.push(1, 2, 0, 0);
    expect(ring.push(1, 3, 0, 0)).toBe(false);
    ring.wantSpace();
    expect(ring.takeSpaceWanted()).toBe(true);
    expect(ring.takeSpaceWanted()).toBe(false);
    expect(ring.unconsumed().map((e) => e.id)).toEqual([1, 2]);
  });

  test("an inline payload travels in its slot, across wrap-around; a full ring claims nothing", () => {
    const ring = new Ring(new SharedArrayBuffer(ringBytes(4)), 0, 4);
    const got: string[] = [];
    for (let i = 0; i < 11; i++) {
      const at = ring.claim();
      expect(at).toBeGreaterThan(0);
      const text = `entry ${i} `.repeat(i + 1).slice(0, INLINE_BYTES);
      const n = ring.buf.write(text, at, "utf8");
      expect(ring.push(7, i, INLINE, n)).toBe(true);
      if (i % 3 === 2) {
        ring.drain((_k, id, h, len, payloadAt) => {
          expect(h).toBe(INLINE);
          got.push(`${id}:${ring.buf.toString("utf8", payloadAt, payloadAt + len)}`);
        });
      }
    }
    ring.drain((_k, id, _h, len, payloadAt) => {
      got.push(`${id}:${ring.buf.toString("utf8", payloadAt, payloadAt + len)}`);
    });
    expect(got).toEqual(
      Array.from(
        { length: 11 },
        (_, i) => `${i}:${`entry ${i} `.repeat(i + 1).slice(0, INLINE_BYTES)}`,
      ),
    );
    for (let i = 0; i < 4; i++) ring.push(1, i, 0, 0);
    expect(ring.claim()).toBe(-1);
  });

  test("slot counts round up to a power of two", () => {
    expect(ringSlotsFor(16)).toBe(16);
    expect(ringSlotsFor(1000)).toBe(1024);
    expect(() => new Ring(new SharedArrayBuffer(ringBytes(8)), 0, 6)).toThrow();
  });
});
