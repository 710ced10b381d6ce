import { describe, expect, test } from "bun:test";
import { DotStuffer, TopLimiter } from "./dot-stuff.ts";

const enc = (s: string) => new TextEncoder().encode(s);
const dec = (b: Uint8Array) => Buffer.from(b).toString("latin1");

function stuffAll(input: Uint8Array, cuts: number[]): string {
  const s = new DotStuffer();
  let out = "";
  let at = 0;
  for (const cut of [...cuts, input.length]) {
    out += dec(s.stuff(input.subarray(at, cut)));
    at = cut;
  }
  return out + dec(s.finish());
}

/** What a client does (RFC 1939 §3): split on CRLF, stop at ".", drop one leading dot. */
function unstuff(wire: string): string {
  const lines = wire.split("\r\n");
  const out: string[] = [];
  for (const l of lines) {
    if (l === ".") break;
    out.push(l.startsWith(".") ? l.slice(1) : l);
  }
  return out.join("\r\n") + "\r\n";
}

describe("DotStuffer", () => {
  test("doubles line-initial dots only, and terminates", () => {
    expect(stuffAll(enc(".a\r\nb.c\r\n..\r\n"), [])).toBe("..a\r\nb.c\r\n...\r\n.\r\n");
    expect(stuffAll(enc(""), [])).toBe(".\r\n");
    expect(stuffAll(enc("no final crlf"), [])).toBe("no final crlf\r\n.\r\n");
  });

  test("a chunk without line-initial dots is passed through uncopied", () => {
    const s = new DotStuffer();
    const chunk = enc("abc.def\r\nxyz\r\n");
    expect(s.stuff(chunk)).toBe(chunk);
  });

  test("fuzz: split-independent, and a client recovers the exact bytes", () => {
    let seed = 7;
    const rand = () => {
      seed = (seed * 1103515245 + 12345) & 0x7fffffff;
      return seed / 0x7fffffff;
    };
    const pieces = [".", "..", "a", "\r\n", ".\r\n", "x.y", " "];
    for (let round = 0; round < 300; round++) {
      let text = "";
      const n = Math.floor(rand() * 40);
      for (let i = 0; i < n; i++) text += pieces[Math.floor(rand() * pieces.length)];
      text += "\r\n";
      const input = enc(text);
      const whole = stuffAll(input, []);
      expect(unstuff(whole)).toBe(text);
      expect(whole.endsWith("\r\n.\r\n") || whole === ".\r\n").toBe(true);
      for (let k = 0; k < 4; k++) {
        const cuts = Array.from({ length: 5 }, () => Math.floor(rand() * (input.length + 1)))
          .sort((a, b) => a - b);
        expect(stuffAll(input, cuts)).toBe(whole);
      }
    }
  });

  test("chunks that are views (an offset into shared memory, a Buffer) stuff the same", () => {
    // The native "\n." search reads through the chunk's own offset: a view must not leak
    // bytes of its neighbours into the search (the heap block before it ends in "\n").
    const text = ".a\r\n.b\r\nc.d\r\n\r\n..\r\n";
    const plain = stuffAll(enc(text), [3, 4, 9]);
    const shared = new Uint8Array(new SharedArrayBuffer(64));
    shared.set(enc("\n"), 9);
    shared.set(enc(text), 10);
    const view = shared.subarray(10, 10 + text.length);
    expect(stuffAll(view, [3, 4, 9])).toBe(plain);
    expect(stuffAll(Buffer.from(text, "latin1"), [3, 4, 9])).toBe(plain);
    expect(plain).toBe("..a\r\n..b\r\nc.d\r\n\r\n...\r\n.\r\n");
  });
});

describe("TopLimiter", () => {
  const msg = "A: 1\r\nB: 2\r\n\r\nl1\r\nl2\r\nl3\r\n";
  function top(n: number, chunk: number): string {
    const t = new TopLimiter(n);
    const input = enc(msg);
    let out = "";
    for (let i = 0; i < input.length && !t.done; i += chunk) {
      out += dec(t.take(input.subarray(i, i + chunk)));
    }
    return out;
  }
  test("header, blank line, then n body lines, however the input is cut", () => {
    for (const chunk of [1, 2, 3, 5, 100]) {
      expect(top(0, chunk)).toBe("A: 1\r\nB: 2\r\n\r\n");
      expect(top(2, chunk)).toBe("A: 1\r\nB: 2\r\n\r\nl1\r\nl2\r\n");
      expect(top(10, chunk)).toBe(msg);
    }
  });
});
