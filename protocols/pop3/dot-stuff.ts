// Multi-line response bodies on the fly (RFC 1939 §3): every line starting with "." gets one
// more, and ".\r\n" ends the response. Streaming and split-independent: a chunk boundary may
// fall anywhere, and a chunk without a line-initial dot passes through uncopied. Also the TOP
// cut (RFC 1939 §7): the header, the blank line, then the first n body lines.

const LF = 0x0a;
const CR = 0x0d;
const DOT = 0x2e;
const TERMINATOR = new Uint8Array([DOT, CR, LF]);
const CRLF_TERMINATOR = new Uint8Array([CR, LF, DOT, CR, LF]);
/** A dot starting any line but the chunk's first. */
const LF_DOT = Buffer.from([LF, DOT]);

/** The same bytes as a Buffer (for its native indexOf of a byte sequence), without a copy. */
function asBuffer(chunk: Uint8Array): Buffer {
  return Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk.buffer, chunk.byteOffset, chunk.length);
}

export class DotStuffer {
  /** The next byte starts a line. */
  #atLineStart = true;
  #last = -1;
  #secondLast = -1;
  #any = false;

  /** Returns the bytes to send for `chunk`: the chunk itself when no dot needs doubling. */
  stuff(chunk: Uint8Array): Uint8Array {
    if (chunk.length === 0) return chunk;
    // Line-initial dots are found as "\n." by Buffer's native search (one pass over the
    // chunk), not by visiting every dot: ordinary text has a dot in most lines.
    const bytes = asBuffer(chunk);
    const first = this.#atLineStart && chunk[0] === DOT ? 0 : -1;
    let extra = first === 0 ? 1 : 0;
    for (let i = bytes.indexOf(LF_DOT); i >= 0; i = bytes.indexOf(LF_DOT, i + 2)) extra++;
    const n = chunk.length;
    this.#secondLast = n >= 2 ? chunk[n - 2]! : this.#last;
    this.#last = chunk[n - 1]!;
    this.#atLineStart = this.#last === LF;
    this.#any = true;
    if (extra === 0) return chunk;
    const out = new Uint8Array(n + extra);
    let from = 0;
    let at = 0;
    // Each line-initial dot is copied, then doubled (RFC 1939 §3: byte-stuff the termination
    // octet).
    const double = (dot: number) => {
      out.set(chunk.subarray(from, dot + 1), at);
      at += dot + 1 - from;
      out[at++] = DOT;
      from = dot + 1;
    };
    if (first === 0) double(0);
    for (let i = bytes.indexOf(LF_DOT); i >= 0; i = bytes.indexOf(LF_DOT, i + 2)) double(i + 1);
    out.set(chunk.subarray(from), at);
    return out;
  }

  /** The terminator; a CRLF first if the content did not end with one (RFC 1939 §3). */
  finish(): Uint8Array {
    if (!this.#any || (this.#secondLast === CR && this.#last === LF)) return TERMINATOR;
    return CRLF_TERMINATOR;
  }
}

/** Cuts a message after its header and `bodyLines` lines of body (RFC 1939 §7, TOP). */
export class TopLimiter {
  #inHeader = true;
  #bodyLeft: number;
  /** Bytes of the current line so far (terminator excluded), and the byte before the LF. */
  #lineBytes = 0;
  #last = -1;
  #done = false;

  constructor(bodyLines: number) {
    this.#bodyLeft = bodyLines;
  }

  get done(): boolean {
    return this.#done;
  }

  /** The part of `chunk` to send; once `done` is true, nothing more is needed. */
  take(chunk: Uint8Array): Uint8Array {
    if (this.#done) return chunk.subarray(0, 0);
    if (!this.#inHeader && this.#bodyLeft === 0) {
      this.#done = true;
      return chunk.subarray(0, 0);
    }
    let from = 0;
    for (let lf = chunk.indexOf(LF); lf >= 0; lf = chunk.indexOf(LF, lf + 1)) {
      const lineBytes = this.#lineBytes + (lf - from);
      const before = lf > 0 ? chunk[lf - 1]! : this.#last;
      const empty = lineBytes === 0 || (lineBytes === 1 && before === CR);
      from = lf + 1;
      this.#lineBytes = 0;
      if (this.#inHeader) {
        if (empty) this.#inHeader = false; // the blank line ends the header (RFC 5322 §2.1)
        else continue;
      } else this.#bodyLeft--;
      if (this.#bodyLeft === 0) {
        this.#done = true;
        return chunk.subarray(0, lf + 1);
      }
    }
    this.#lineBytes += chunk.length - from;
    if (chunk.length > 0) this.#last = chunk[chunk.length - 1]!;
    return chunk;
  }
}
