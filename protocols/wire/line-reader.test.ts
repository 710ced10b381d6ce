import { describe, expect, test } from "bun:test";
import { type LineEvent, LineReader, type LineReaderOptions } from "./line-reader.ts";

const enc = (s: string) => new TextEncoder().encode(s);

function drain(r: LineReader): LineEvent[] {
  const out: LineEvent[] = [];
  for (let e = r.next(); e; e = r.next()) out.push(e);
  return out;
}

/** Events in a comparable form; raw chunks are merged since their split is arbitrary. */
function normalize(events: LineEvent[]): string[] {
  const out: string[] = [];
  let raw = "";
  for (const e of events) {
    if (e.kind === "raw") {
      raw += Buffer.from(e.data).toString("latin1");
      if (e.remaining === 0) {
        out.push(`raw:${raw}`);
        raw = "";
      }
      continue;
    }
    if (e.kind === "line") out.push(`line:${e.bareLf}:${Buffer.from(e.line).toString("latin1")}`);
    else out.push(`overflow:${e.bytes}`);
  }
  if (raw) out.push(`raw-partial:${raw}`);
  return out;
}

function run(opts: LineReaderOptions, input: Uint8Array, cuts: number[]): string[] {
  const r = new LineReader(opts);
  const events: LineEvent[] = [];
  let at = 0;
  for (const cut of [...cuts, input.length]) {
    r.push(input.subarray(at, cut));
    at = cut;
    events.push(...drain(r));
  }
  return normalize(events);
}

describe("LineReader", () => {
  test("CRLF and bare LF end command lines; the terminator is stripped", () => {
    const r = new LineReader({ maxLineBytes: 100 });
    r.push(enc("USER a\r\nPASS b\nQUIT"));
    expect(normalize(drain(r))).toEqual(["line:false:USER a", "line:true:PASS b"]);
    expect(r.buffered).toBe(4);
    r.push(enc("\r\n"));
    expect(normalize(drain(r))).toEqual(["line:false:QUIT"]);
    expect(r.buffered).toBe(0);
  });

  test("crlf mode: a bare LF is content, never a line end (SMTP DATA)", () => {
    const r = new LineReader({ maxLineBytes: 100, mode: "crlf" });
    r.push(enc("a\n.\nb\r\n.\r\n"));
    expect(normalize(drain(r))).toEqual(["line:true:a\n.\nb", "line:false:."]);
  });

  test("CR and LF split across chunks still make one CRLF", () => {
    const r = new LineReader({ maxLineBytes: 100, mode: "crlf" });
    r.push(enc("abc\r"));
    expect(drain(r)).toEqual([]);
    r.push(enc("\nx\r\n"));
    expect(normalize(drain(r))).toEqual(["line:false:abc", "line:false:x"]);
  });

  test("an overlong line is reported once, discarded, and the next line is intact", () => {
    const r = new LineReader({ maxLineBytes: 10 });
    r.push(enc("0123456789"));
    r.push(enc("abcdef"));
    expect(drain(r)).toEqual([]);
    expect(r.buffered).toBeLessThanOrEqual(10); // memory stays bounded
    r.push(enc("ghi\r\nNOOP\r\n"));
    expect(normalize(drain(r))).toEqual(["overflow:21", "line:false:NOOP"]);
  });

  test("the limit counts the terminator", () => {
    const r = new LineReader({ maxLineBytes: 6 });
    r.push(enc("abcd\r\nabcde\r\n"));
    expect(normalize(drain(r))).toEqual(["line:false:abcd", "overflow:7"]);
  });

  test("raw mode hands out exactly n bytes, then lines resume", () => {
    const r = new LineReader({ maxLineBytes: 100 });
    r.push(enc("A {5}\r\nab\r\ncTAIL\r\n"));
    const first = r.next();
    expect(first?.kind).toBe("line");
    r.readRaw(5);
    expect(normalize(drain(r))).toEqual(["raw:ab\r\nc", "line:false:TAIL"]);
    expect(r.inRawMode).toBe(false);
  });

  test("clear() forgets buffered input (STARTTLS)", () => {
    const r = new LineReader({ maxLineBytes: 100 });
    r.push(enc("STLS\r\nUSER evil\r\nPART"));
    expect(normalize([r.next()!])).toEqual(["line:false:STLS"]);
    r.clear();
    expect(r.next()).toBeNull();
    expect(r.buffered).toBe(0);
  });

  test("fuzz: random bytes, random splits: never throws, same events however split", () => {
    let seed = 12345;
    const rand = () => {
      seed = (seed * 1103515245 + 12345) & 0x7fffffff;
      return seed / 0x7fffffff;
    };
    const alphabet = [0x0d, 0x0a, 0x41, 0x2e, 0x00, 0xff, 0x20];
    for (let round = 0; round < 300; round++) {
      const len = Math.floor(rand() * 400);
      const input = new Uint8Array(len);
      for (let i = 0; i < len; i++) {
        input[i] = rand() < 0.7
          ? alphabet[Math.floor(rand() * alphabet.length)]!
          : Math.floor(rand() * 256);
      }
      const opts: LineReaderOptions = {
        maxLineBytes: 3 + Math.floor(rand() * 40),
        mode: rand() < 0.5 ? "crlf" : "crlf-or-lf",
      };
      const whole = run(opts, input, []);
      for (let k = 0; k < 5; k++) {
        const cuts = Array.from(
          { length: Math.floor(rand() * 10) },
          () => Math.floor(rand() * (len + 1)),
        ).sort((a, b) => a - b);
        expect(run(opts, input, cuts)).toEqual(whole);
      }
      // Byte-at-a-time is the harshest split of all.
      expect(run(opts, input, Array.from({ length: len }, (_, i) => i))).toEqual(whole);
      // Lines never exceed the limit.
      for (const e of whole) {
        if (e.startsWith("line:")) {
          expect(e.length - e.indexOf(":", 5) - 1).toBeLessThanOrEqual(opts.maxLineBytes);
        }
      }
    }
  });

  test("fuzz: raw mode interleaved with lines is split-independent", () => {
    let seed = 99;
    const rand = () => {
      seed = (seed * 1103515245 + 12345) & 0x7fffffff;
      return seed / 0x7fffffff;
    };
    for (let round = 0; round < 100; round++) {
      // lines announcing literals: "{n}\r\n" followed by n bytes
      let text = "";
      for (let i = 0; i < 5; i++) {
        const n = Math.floor(rand() * 20);
        text += `L{${n}}\r\n` + "x\r\n.\n".repeat(5).slice(0, n);
      }
      const input = enc(text);
      const drive = (cuts: number[]) => {
        const r = new LineReader({ maxLineBytes: 64 });
        const events: LineEvent[] = [];
        let at = 0;
        for (const cut of [...cuts, input.length]) {
          r.push(input.subarray(at, cut));
          at = cut;
          for (let e = r.next(); e; e = r.next()) {
            events.push(e);
            if (e.kind === "line") {
              const m = /\{(\d+)\}$/.exec(Buffer.from(e.line).toString());
              if (m && Number(m[1]) > 0) r.readRaw(Number(m[1]));
            }
          }
        }
        return normalize(events);
      };
      const whole = drive([]);
      const cuts = Array.from({ length: 8 }, () => Math.floor(rand() * (input.length + 1)))
        .sort((a, b) => a - b);
      expect(drive(cuts)).toEqual(whole);
      expect(whole.filter((e) => e.startsWith("line:")).length).toBe(5);
    }
  });
});
