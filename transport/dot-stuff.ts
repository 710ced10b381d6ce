// Owns: turning message bytes into the DATA stream, chunk by chunk with state carried across
// chunk boundaries: dot-stuffing (RFC 5321 §4.5.2), line endings made CRLF, and the final
// CRLF "." CRLF terminator (RFC 5321 §4.1.1.4). A bare CR or bare LF is never sent: a lenient
// server could read one as a line end and end DATA early (SMTP smuggling), so each becomes CRLF.

const CR = 0x0d;
const LF = 0x0a;
const DOT = 0x2e;

export class DotStuffer {
  private atLineStart = true;
  private pendingCr = false;

  /** The stuffed form of the next chunk (at most 2× its size plus 2 bytes). */
  push(chunk: Uint8Array): Uint8Array {
    const out = new Uint8Array(chunk.length * 2 + 2);
    let n = 0;
    for (let i = 0; i < chunk.length; i++) {
      const b = chunk[i]!;
      if (this.pendingCr) {
        this.pendingCr = false;
        out[n++] = CR;
        out[n++] = LF;
        this.atLineStart = true;
        if (b === LF) continue; // CRLF as it should be
        // a bare CR: already emitted as CRLF, now handle b normally
      }
      if (b === CR) {
        this.pendingCr = true;
        continue;
      }
      if (b === LF) {
        // RFC 5321 §2.3.8: a bare LF is sent as CRLF.
        out[n++] = CR;
        out[n++] = LF;
        this.atLineStart = true;
        continue;
      }
      // RFC 5321 §4.5.2: a line starting with "." gets one more "." in front.
      if (this.atLineStart && b === DOT) out[n++] = DOT;
      out[n++] = b;
      this.atLineStart = false;
    }
    return out.subarray(0, n);
  }

  /** The tail: close an unterminated last line, then CRLF "." CRLF. */
  finish(): Uint8Array {
    const tail: number[] = [];
    if (this.pendingCr) {
      tail.push(CR, LF);
      this.pendingCr = false;
      this.atLineStart = true;
    }
    // RFC 5321 §4.1.1.4: the body ends with CRLF; if it did not, add one before the ".".
    if (!this.atLineStart) tail.push(CR, LF);
    tail.push(DOT, CR, LF);
    return new Uint8Array(tail);
  }
}
