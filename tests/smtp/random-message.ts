// Random message content for the DATA/BDAT fuzz tests: a seeded generator of token soups (words,
// CRLF, bare CR and LF, dots at line starts, the end marker, Received: headers, lines around the
// length limit, random bytes) with limits to match, and random cuts into network reads.
import type { ScanLimits } from "../../protocols/smtp/data-scanner.ts";

/** mulberry32: small, seedable, good enough to pick test inputs. */
export function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export interface Case {
  seed: number;
  limits: ScanLimits;
  bytes: Uint8Array;
}

export function makeCase(seed: number, withEnd: boolean, fixed: Partial<ScanLimits> = {}): Case {
  const r = rng(seed);
  const int = (lo: number, hi: number) => lo + Math.floor(r() * (hi - lo + 1));
  const pick = <T>(xs: T[]): T => xs[Math.floor(r() * xs.length)]!;
  const roomy = r() < 0.5;
  const limits: ScanLimits = {
    maxLineBytes: roomy ? int(60, 400) : int(3, 40),
    maxMessageBytes: roomy ? int(500, 5000) : int(1, 300),
    maxHops: int(1, 5),
    ...fixed,
  };
  // "clean" messages are mostly well-formed so that many are accepted and compared byte by byte.
  const chaos = r() < 0.3 ? 0.5 : r() < 0.5 ? 0.03 : 0;
  const words = ["a", "hello", "x y z", "Subject: hi", "\xe9t\xe9", "\t", " ", "-", "::"];
  const clean = [
    () => pick(words),
    () => ".",
    () => "..",
    () => "\r\n",
    () => "\r\n",
    () => "\r\n\r\n",
    () => "\r\n.",
    () => "\r\n..",
    () => pick(["Received: from x\r\n", "received:\r\n", "RECEIVED:y\r\n", "ReCeIvEd:", "Receiv"]),
    () => ".Received: z\r\n",
    () => "x".repeat(int(0, limits.maxLineBytes + 2)),
    () => "y".repeat(int(Math.max(0, limits.maxLineBytes - 4), limits.maxLineBytes + 1)) + "\r\n",
  ];
  const bad = [
    () => "\r",
    () => "\n",
    () => "\n.\n",
    () => "\r.\r",
    () => "\n.\r\n",
    () => "\r\n.\n",
    () => "\r\n.\r",
    () => "\r\r\n",
    () => String.fromCharCode(...Array.from({ length: int(1, 6) }, () => int(0, 255))),
  ];
  let s = "";
  const tokens = int(0, 40);
  for (let t = 0; t < tokens; t++) s += r() < chaos ? pick(bad)() : pick(clean)();
  if (withEnd) {
    if (r() < 0.85) s += pick(["\r\n.\r\n", ".\r\n", "\r\n.\r\n"]);
    // What a client pipelines after the message, sometimes with another end marker.
    if (r() < 0.6) s += pick(["QUIT\r\n", "NOOP\r\n", "RSET\r\nMAIL FROM:<>\r\n", "x\r\n.\r\n"]);
  }
  return { seed, limits, bytes: Buffer.from(s, "latin1") };
}

/** Cuts `bytes` at random points (sometimes into single bytes, sometimes not at all). */
export function split(bytes: Uint8Array, r: () => number): Uint8Array[] {
  const style = r();
  if (style < 0.1) return [bytes];
  if (style < 0.25) return Array.from(bytes, (_, i) => bytes.subarray(i, i + 1));
  const out: Uint8Array[] = [];
  let at = 0;
  while (at < bytes.length) {
    const n = r() < 0.05 ? 0 : 1 + Math.floor(r() * r() * 40);
    out.push(bytes.subarray(at, at + n));
    at += n;
  }
  return out;
}
