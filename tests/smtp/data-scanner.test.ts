// The bulk DATA/BDAT scanner against the old per-line path (old-line-path.ts): random messages
// (CR, LF, dots at line starts, the end marker, Received: headers, long lines, random bytes)
// split at random points must give the same verdict, the same end of DATA, the same size and,
// when accepted, the same stored bytes. Deterministic: a failing case prints its seed.
import { describe, expect, test } from "bun:test";
import { DataScanner, type ScanLimits } from "../../protocols/smtp/data-scanner.ts";
import type { Reply } from "../../protocols/smtp/reply.ts";
import { oldBdat, oldData, type Verdict } from "./old-line-path.ts";
import { makeCase, rng, split } from "./random-message.ts";

class Collect {
  parts: Uint8Array[] = [];
  failures: Reply[] = [];
  writesAfterFail = 0;
  write(bytes: Uint8Array, start: number, end: number): void {
    if (this.failures.length > 0) this.writesAfterFail++;
    expect(end).toBeGreaterThan(start);
    this.parts.push(bytes.slice(start, end));
  }
  fail(r: Reply): void {
    this.failures.push(r);
  }
  bytes(): Uint8Array {
    return Buffer.concat(this.parts);
  }
}

/** Every CR is followed by LF and every LF follows a CR. */
function onlyCrlf(b: Uint8Array): boolean {
  for (let i = 0; i < b.length; i++) {
    if (b[i] === 0x0d && b[i + 1] !== 0x0a) return false;
    if (b[i] === 0x0a && b[i - 1] !== 0x0d) return false;
  }
  return true;
}

const verdict = (r: Reply | null): Verdict | null =>
  r ? { code: r.code, enhanced: r.enhanced, text: r.lines.join("\n") } : null;

function newData(pieces: Uint8Array[], limits: ScanLimits) {
  const out = new Collect();
  const scanner = new DataScanner("data", limits, out);
  let offset = 0;
  let end = -1;
  for (const piece of pieces) {
    const at = scanner.scan(piece);
    if (at >= 0) {
      end = offset + at;
      break;
    }
    offset += piece.length;
  }
  return { end, verdict: verdict(scanner.failure), stored: out.bytes(), size: scanner.size, out };
}

function newBdat(chunks: Uint8Array[][], limits: ScanLimits) {
  const out = new Collect();
  const scanner = new DataScanner("bdat", limits, out);
  for (let k = 0; k < chunks.length; k++) {
    for (const piece of chunks[k]!) if (!scanner.failure) expect(scanner.scan(piece)).toBe(-1);
    if (scanner.failure) {
      return {
        failedAt: k,
        verdict: verdict(scanner.failure),
        stored: out.bytes(),
        out,
        size: scanner.size,
      };
    }
  }
  scanner.end();
  return {
    failedAt: scanner.failure ? chunks.length - 1 : -1,
    verdict: verdict(scanner.failure),
    stored: out.bytes(),
    out,
    size: scanner.size,
  };
}

const CASES = 4000;

describe("DataScanner matches the per-line path", () => {
  test(`DATA: ${CASES} random messages split at random points`, () => {
    const tally = new Map<string, number>();
    for (let seed = 1; seed <= CASES; seed++) {
      const c = makeCase(seed, true);
      const pieces = split(c.bytes, rng(seed * 7919));
      const want = oldData(pieces, c.limits);
      const got = newData(pieces, c.limits);
      const where = `seed ${seed}, limits ${JSON.stringify(c.limits)}, input ${
        JSON.stringify(Buffer.from(c.bytes).toString("latin1"))
      }`;
      try {
        expect(got.end).toBe(want.end);
        expect(got.verdict).toEqual(want.verdict);
        expect(got.size).toBe(want.size);
        expect(got.out.failures.length).toBe(got.verdict ? 1 : 0);
        expect(got.out.writesAfterFail).toBe(0);
        expect(onlyCrlf(got.stored)).toBe(true);
        if (want.end >= 0 && !want.verdict) expect(got.stored).toEqual(want.stored);
      } catch (err) {
        throw new Error(`${where}\n${(err as Error).message}`);
      }
      const key = want.end < 0 ? "unended" : String(want.verdict?.code ?? 250);
      tally.set(key, (tally.get(key) ?? 0) + 1);
    }
    // The generator reaches every outcome, each many times.
    for (const key of ["250", "500", "550", "552", "554", "unended"]) {
      expect(tally.get(key) ?? 0).toBeGreaterThan(CASES / 100);
    }
  });

  test(`BDAT: ${CASES} random messages in random chunks split at random points`, () => {
    const tally = new Map<string, number>();
    for (let seed = 1; seed <= CASES; seed++) {
      const c = makeCase(seed + 1_000_000, false);
      const r = rng(seed * 104729);
      const chunks: Uint8Array[][] = [];
      let at = 0;
      do {
        const n = r() < 0.1 ? 0 : Math.floor(r() * 60);
        chunks.push(split(c.bytes.subarray(at, at + n), r));
        at += n;
      } while (at < c.bytes.length);
      const want = oldBdat(chunks, c.limits);
      const got = newBdat(chunks, c.limits);
      const where = `seed ${c.seed}, limits ${JSON.stringify(c.limits)}, input ${
        JSON.stringify(Buffer.from(c.bytes).toString("latin1"))
      }`;
      try {
        expect(got.failedAt).toBe(want.failedAt);
        expect(got.verdict).toEqual(want.verdict);
        expect(got.size).toBe(want.size);
        expect(got.out.failures.length).toBe(got.verdict ? 1 : 0);
        expect(got.out.writesAfterFail).toBe(0);
        expect(onlyCrlf(got.stored)).toBe(true);
        if (!want.verdict) expect(got.stored).toEqual(want.stored);
      } catch (err) {
        throw new Error(`${where}\n${(err as Error).message}`);
      }
      const key = String(want.verdict?.code ?? 250);
      tally.set(key, (tally.get(key) ?? 0) + 1);
    }
    for (const key of ["250", "500", "550", "552", "554"]) {
      expect(tally.get(key) ?? 0).toBeGreaterThan(CASES / 100);
    }
  });
});

const enc = (s: string) => Buffer.from(s, "latin1");

describe("DataScanner edge cases", () => {
  const limits = { maxLineBytes: 20, maxMessageBytes: 1000, maxHops: 3 };

  test("the end marker split in every possible way, and what follows it", () => {
    const wire = enc("ab\r\n..c\r\n.\r\nNOOP\r\n");
    for (let i = 0; i <= wire.length; i++) {
      for (let j = i; j <= wire.length; j++) {
        const got = newData([wire.subarray(0, i), wire.subarray(i, j), wire.subarray(j)], limits);
        expect(got.verdict).toBeNull();
        expect(got.end).toBe(wire.length - 6);
        expect(Buffer.from(got.stored).toString("latin1")).toBe("ab\r\n.c\r\n");
      }
    }
  });

  test("an empty message, a dot line at the very start, and dot lines that are not the end", () => {
    expect(newData([enc(".\r\n")], limits)).toMatchObject({ end: 3, verdict: null, size: 0 });
    const got = newData([enc("..\r\n.x\r\n\r\n.\r\n")], limits);
    expect(Buffer.from(got.stored).toString("latin1")).toBe(".\r\nx\r\n\r\n");
  });

  test("bare LF / bare CR never end DATA (SMTP smuggling) and are refused", () => {
    for (
      const s of ["a\n.\nb\r\n.\r\n", "a\r.\rb\r\n.\r\n", "a\r\n.\n\r\n.\r\n", "a\n.\r\n.\r\n"]
    ) {
      const got = newData([enc(s)], limits);
      expect(got.end).toBe(s.length);
      expect(got.verdict?.code).toBe(550);
      expect(onlyCrlf(got.stored)).toBe(true); // a doomed line is never written
    }
  });

  test("an overlong line is 500 even with a bare LF in it; a line of exactly the limit passes", () => {
    const long = "z".repeat(30) + "\n" + "\r\n.\r\n";
    expect(newData([enc(long)], limits).verdict?.code).toBe(500);
    const exact = "z".repeat(18) + "\r\n.\r\n";
    expect(newData([enc(exact)], limits).verdict).toBeNull();
    expect(newData([enc("z" + exact)], limits).verdict?.code).toBe(500);
  });

  test("Received: is counted in the header section only (loop at maxHops)", () => {
    const twice = "Received: a\r\nreceived: b\r\n";
    expect(newData([enc(twice + "\r\n" + twice + ".\r\n")], limits).verdict).toBeNull();
    const got = newData([enc(twice + "RECEIVED: c\r\n\r\n.\r\n")], limits);
    expect(got.verdict).toEqual({
      code: 554,
      enhanced: "5.4.6",
      text: "Too many hops (3): mail loop?",
    });
  });

  test("BDAT: an overlong last line without CRLF is refused (the old path dropped it)", () => {
    const got = newBdat([[enc("ok\r\n" + "w".repeat(50))]], limits);
    expect(got.verdict?.code).toBe(500);
    const ended = newBdat([[enc("ok\r\nlast")], [enc("")]], limits);
    expect(ended.verdict).toBeNull();
    expect(Buffer.from(ended.stored).toString("latin1")).toBe("ok\r\nlast\r\n");
    expect(newBdat([[enc("ok\r")]], limits).verdict?.code).toBe(550); // "ok\r" + CRLF
    expect(newBdat([[enc("ok\r")], [enc("\nfine\r\n")]], limits).verdict).toBeNull();
  });

  test("content reaches the output in runs, not lines", () => {
    const lines = Array.from({ length: 200 }, (_, i) => `line ${i}\r\n`).join("");
    const got = newData([enc(lines + ".\r\n")], { ...limits, maxMessageBytes: 1e6 });
    expect(got.out.parts.length).toBe(1);
    expect(Buffer.from(got.stored).toString("latin1")).toBe(lines);
  });
});
