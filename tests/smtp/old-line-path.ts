// The per-line DATA/BDAT receive path as it was before protocols/smtp/data-scanner.ts, kept
// here (pure, no store) as the reference the bulk scanner is fuzzed against: the wire
// LineReader in "crlf" mode splits the content into lines, the old ContentCheck checks each
// line, the old BodySink.writeLine counts its size and stores it with CRLF added back, and the
// old DATA handler removes a leading dot and stops at the line ".".
//
// One deliberate difference from the old code, in BDAT: at LAST it added a CRLF only when
// `LineReader.buffered > 0`, which is 0 while the reader is discarding an overlong line, so an
// overlong last line without CRLF was silently dropped and the rest accepted. Here (and in the
// scanner) any unterminated last line gets its CRLF, so it is refused as too long.
import { LineReader } from "../../protocols/wire/mod.ts";

export interface Verdict {
  code: number;
  enhanced: string | null;
  text: string;
}

export interface PathLimits {
  maxLineBytes: number;
  maxMessageBytes: number;
  maxHops: number;
}

const CR = 0x0d;
const DOT = 0x2e;
const RECEIVED = new TextEncoder().encode("received:");

/** The old ContentCheck + BodySink.writeLine, storing into a list instead of the store. */
class OldSink {
  #inHeaders = true;
  #hops = 0;
  #stored: Uint8Array[] = [];
  size = 0;
  failure: Verdict | null = null;

  constructor(readonly limits: PathLimits) {}

  writeLine(line: Uint8Array, bareLf: boolean): void {
    if (this.failure) return;
    this.#check(line, bareLf);
    if (this.failure) return;
    this.size += line.length + 2;
    if (this.size > this.limits.maxMessageBytes) {
      this.failure = {
        code: 552,
        enhanced: "5.3.4",
        text: `Message size exceeds fixed limit of ${this.limits.maxMessageBytes} bytes`,
      };
      return;
    }
    this.#stored.push(line, new Uint8Array([0x0d, 0x0a]));
  }

  lineTooLong(): void {
    if (this.failure) return;
    this.failure = {
      code: 500,
      enhanced: "5.5.2",
      text: `Message line longer than ${this.limits.maxLineBytes} bytes`,
    };
  }

  #check(line: Uint8Array, bareLf: boolean): void {
    if (bareLf || line.indexOf(CR) >= 0) {
      this.failure = {
        code: 550,
        enhanced: "5.6.0",
        text: "Message contains a bare CR or LF (RFC 5321 §2.3.8); lines must end with CRLF",
      };
      return;
    }
    if (!this.#inHeaders) return;
    if (line.length === 0) {
      this.#inHeaders = false;
      return;
    }
    if (line.length >= RECEIVED.length && startsWithFold(line, RECEIVED)) {
      this.#hops++;
      if (this.#hops >= this.limits.maxHops) {
        this.failure = {
          code: 554,
          enhanced: "5.4.6",
          text: `Too many hops (${this.#hops}): mail loop?`,
        };
      }
    }
  }

  stored(): Uint8Array {
    return Buffer.concat(this.#stored);
  }
}

function startsWithFold(bytes: Uint8Array, lower: Uint8Array): boolean {
  for (let i = 0; i < lower.length; i++) {
    const b = bytes[i]!;
    const folded = b >= 0x41 && b <= 0x5a ? b + 0x20 : b;
    if (folded !== lower[i]) return false;
  }
  return true;
}

export interface DataResult {
  /** Offset in the whole input just past the final dot's CRLF, -1 when DATA did not end. */
  end: number;
  verdict: Verdict | null;
  stored: Uint8Array;
  size: number;
}

/** DATA content arriving as `pieces`, the old way. */
export function oldData(pieces: Uint8Array[], limits: PathLimits): DataResult {
  const reader = new LineReader({ maxLineBytes: limits.maxLineBytes, mode: "crlf" });
  const sink = new OldSink(limits);
  let pushed = 0;
  for (const piece of pieces) {
    reader.push(piece);
    pushed += piece.length;
    for (let ev = reader.next(); ev; ev = reader.next()) {
      if (ev.kind === "overflow") sink.lineTooLong();
      if (ev.kind !== "line") continue;
      const line = ev.line;
      if (line.length === 1 && line[0] === DOT) {
        return {
          end: pushed - reader.buffered,
          verdict: sink.failure,
          stored: sink.stored(),
          size: sink.size,
        };
      }
      sink.writeLine(line[0] === DOT ? line.subarray(1) : line, ev.bareLf);
    }
  }
  return { end: -1, verdict: sink.failure, stored: sink.stored(), size: sink.size };
}

export interface BdatResult {
  /** Index of the BDAT chunk whose reply was the failure, -1 when accepted. */
  failedAt: number;
  verdict: Verdict | null;
  stored: Uint8Array;
  size: number;
}

/** BDAT chunks (each arriving as pieces), the last one with LAST, the old way. */
export function oldBdat(chunks: Uint8Array[][], limits: PathLimits): BdatResult {
  const reader = new LineReader({ maxLineBytes: limits.maxLineBytes, mode: "crlf" });
  const sink = new OldSink(limits);
  let tail: number[] = []; // the last two content bytes, to see whether it ended in CRLF
  const feed = () => {
    for (let ev = reader.next(); ev; ev = reader.next()) {
      if (ev.kind === "overflow") sink.lineTooLong();
      else if (ev.kind === "line") sink.writeLine(ev.line, ev.bareLf);
    }
  };
  for (let k = 0; k < chunks.length; k++) {
    for (const piece of chunks[k]!) {
      if (sink.failure) continue; // read and dropped
      reader.push(piece);
      for (const b of piece) tail = [tail[tail.length - 1] ?? -1, b];
      feed();
    }
    if (sink.failure) {
      return { failedAt: k, verdict: sink.failure, stored: sink.stored(), size: sink.size };
    }
  }
  const endsInCrlf = tail[0] === 0x0d && tail[1] === 0x0a;
  if (tail.length > 0 && !endsInCrlf) {
    reader.push(new Uint8Array([0x0d, 0x0a]));
    feed();
  }
  return {
    failedAt: sink.failure ? chunks.length - 1 : -1,
    verdict: sink.failure,
    stored: sink.stored(),
    size: sink.size,
  };
}
