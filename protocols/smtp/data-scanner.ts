// DataScanner: the content of one message (DATA or BDAT) checked in bulk as it streams in. Each
// piece of input is walked once with native searches for CR and LF; nothing is allocated per
// line. It is pure (no I/O) and resumable at any split: a CRLF, a leading dot or the end marker
// cut across pieces is carried over in a few fields.
//
// What it does, in the order the old per-line path did (the verdict is the same for any input,
// see tests/smtp/data-scanner.test.ts):
// - DATA (RFC 5321 §4.1.1.4): only CRLF "." CRLF ends the message; a bare LF or bare CR never
//   does (SMTP smuggling). A leading dot is removed (§4.5.2). The index just past the final
//   CRLF is returned: what follows is commands again (RFC 2920 §3.1).
// - BDAT (RFC 3030): the content is raw, no stuffing and no end marker; `end()` closes a last
//   line that has no CRLF by adding one, as DATA would have it.
// - Per line, when it ends (content-check.ts): too long → 500, bare CR/LF → 550, Received: in
//   the header section counted → 554 on a loop, running size → 552. The first failure wins;
//   later lines are still scanned (for the end marker) but not checked or written.
// - Content goes to `out.write` in contiguous runs (a run breaks only at a removed dot and at
//   the end of a piece). Once the message can no longer be accepted (a bare line ending, an
//   overlong line, more bytes than the size limit) nothing more is written, even before the
//   line's end decides the verdict.
import {
  bareLineEndReply,
  lineTooLongReply,
  loopReply,
  matchReceived,
  RECEIVED,
  tooBigReply,
} from "./content-check.ts";
import type { Reply } from "./reply.ts";

const CR = 0x0d;
const LF = 0x0a;
const DOT = 0x2e;
const CRLF = new Uint8Array([CR, LF]);

export interface ScanLimits {
  /** Longest line, CRLF included (limits.dataLineBytes). */
  maxLineBytes: number;
  /** Largest message, counted after unstuffing (the connector's maxMessageBytes). */
  maxMessageBytes: number;
  /** Received: headers at which the message is a loop (smtp.maxHops). */
  maxHops: number;
}

export interface ScanOutput {
  /** Message bytes [start, end) of `bytes`, in order; copy them before returning. */
  write(bytes: Uint8Array, start: number, end: number): void;
  /** The message is refused with `r` (called once; nothing is written afterwards). */
  fail(r: Reply): void;
}

export type ScanMode = "data" | "bdat";

export class DataScanner {
  /** The first failure, null while the message is acceptable. */
  failure: Reply | null = null;
  /** Message bytes of the complete lines so far (unstuffed, CRLF included), until a failure. */
  size = 0;
  /** Received: headers counted in the header section. */
  hops = 0;

  readonly #stuffed: boolean;
  readonly #limits: ScanLimits;
  readonly #out: ScanOutput;
  /** Raw bytes of the current line so far: a removed dot and a held CR included. */
  #line = 0;
  /** The current line holds a CR or LF that is not part of a CRLF. */
  #bare = false;
  /** The current line began with a dot that was removed (DATA). */
  #dot = false;
  /** The previous piece ended with a CR of the current line, not written yet. */
  #heldCr = false;
  /** Before the blank line that ends the header section (RFC 5322 §2.1). */
  #inHeaders = true;
  /** Bytes of the current (unstuffed) line matching "received:", -1 when it does not. */
  #matched = 0;
  /** Bytes handed to `out.write`. */
  #written = 0;
  /** The message will be refused when its current line ends: write nothing more. */
  #doomed = false;

  constructor(mode: ScanMode, limits: ScanLimits, out: ScanOutput) {
    if (!(limits.maxLineBytes >= 3)) throw new RangeError("maxLineBytes must be at least 3");
    this.#stuffed = mode === "data";
    this.#limits = limits;
    this.#out = out;
  }

  /**
   * Takes the next piece of input. DATA: the index in `bytes` just past the final CRLF "."
   * CRLF, or -1 when the message goes on; the scanner must not be fed after its end. BDAT:
   * always -1. Never throws on any input.
   */
  scan(bytes: Uint8Array): number {
    const n = bytes.length;
    let i = 0;
    /** Start of the bytes examined but not yet written. */
    let run = 0;
    /** The first LF at or after some point ≤ i (n when none): refreshed when behind i. */
    let lf = -1;
    if (this.#heldCr && n > 0) {
      this.#heldCr = false;
      if (bytes[0] === LF) {
        this.#line++;
        if (this.#lineEnd()) return 1;
        this.#write(CRLF, 0, 2); // the held CR with this LF
        run = i = 1;
      } else {
        this.#bareEnding(); // RFC 5321 §2.3.8: a CR not followed by LF
      }
    }
    while (i < n) {
      if (this.#line === 0 && this.#stuffed && bytes[i] === DOT) {
        // RFC 5321 §4.5.2: the leading dot is removed; alone on its line it ends the data.
        this.#write(bytes, run, i);
        this.#dot = true;
        this.#line = 1;
        run = ++i;
        continue;
      }
      const cr = bytes.indexOf(CR, i);
      const stop = cr < 0 ? n : cr;
      if (lf < i) {
        lf = bytes.indexOf(LF, i);
        if (lf < 0) lf = n;
      }
      if (lf < stop) this.#bareEnding(); // RFC 5321 §2.3.8: LF only as part of CRLF
      if (this.#inHeaders && this.#matched >= 0 && this.#matched < RECEIVED.length) {
        this.#matched = matchReceived(bytes, i, stop, this.#matched);
      }
      this.#line += stop - i;
      if (cr < 0) break;
      this.#line++; // the CR
      if (cr + 1 === n) {
        // Whether this CR ends the line depends on the next piece: hold it back till then.
        this.#write(bytes, run, cr);
        this.#heldCr = true;
        return -1;
      }
      if (bytes[cr + 1] !== LF) {
        this.#bareEnding();
        i = cr + 1;
        continue;
      }
      this.#line++; // the LF
      i = cr + 2;
      if (this.#lineEnd()) {
        // The final "." line: the bytes before its dot were written when the dot was removed.
        return i;
      }
    }
    this.#write(bytes, run, n);
    return -1;
  }

  /** BDAT LAST: a last line without CRLF is ended with one (a held CR becomes content). */
  end(): void {
    if (this.#heldCr) {
      this.#heldCr = false;
      this.#bareEnding(); // the CR is content, followed by the CRLF added here
    }
    if (this.#line === 0) return;
    this.#write(CRLF, 0, 2);
    this.#line += 2;
    this.#lineEnd();
  }

  #bareEnding(): void {
    this.#bare = true;
    this.#doomed = true;
    this.#matched = -1;
  }

  /** A line ended with CRLF (counted in #line): true when it is DATA's final ".". */
  #lineEnd(): boolean {
    const line = this.#line;
    const dot = this.#dot;
    const bare = this.#bare;
    const matched = this.#matched;
    this.#line = 0;
    this.#dot = false;
    this.#bare = false;
    this.#matched = 0;
    if (dot && line === 3) return true; // "." CRLF (RFC 5321 §4.1.1.4)
    if (this.failure) return false;
    const limits = this.#limits;
    if (line > limits.maxLineBytes) return this.#fail(lineTooLongReply(limits.maxLineBytes));
    if (bare) return this.#fail(bareLineEndReply());
    const content = dot ? line - 3 : line - 2;
    if (this.#inHeaders) {
      if (content === 0) this.#inHeaders = false; // the blank line (RFC 5322 §2.1)
      else if (matched === RECEIVED.length) {
        // Our own Received: comes on top, so the client's count may reach maxHops - 1.
        if (++this.hops >= limits.maxHops) return this.#fail(loopReply(this.hops));
      }
    }
    this.size += content + 2;
    if (this.size > limits.maxMessageBytes) return this.#fail(tooBigReply(limits.maxMessageBytes));
    return false;
  }

  #fail(r: Reply): false {
    this.failure = r;
    this.#doomed = true;
    this.#out.fail(r);
    return false;
  }

  #write(bytes: Uint8Array, start: number, end: number): void {
    if (this.#doomed || end <= start) return;
    const n = end - start;
    if (
      this.#line > this.#limits.maxLineBytes || this.#written + n > this.#limits.maxMessageBytes
    ) {
      // The current line will end as too long or too big: no need to store any of it.
      this.#doomed = true;
      return;
    }
    this.#written += n;
    this.#out.write(bytes, start, end);
  }
}
