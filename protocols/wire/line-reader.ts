// LineReader: turns a byte stream, cut anywhere by the network, into protocol lines. Pure (no
// I/O), resumable on partial input, pull-based (`push` bytes, then `next()` until null) so a
// session can stop taking lines while it awaits the store without losing what is buffered.
//
// Line ends:
// - mode "crlf-or-lf" (commands): CRLF or a bare LF ends a line (RFC 1939 §3 and most clients
//   send CRLF; a bare LF is accepted leniently). The CR of a CRLF is never part of the line.
// - mode "crlf" (message bodies, SMTP DATA): only CRLF ends a line; a bare LF (and a bare CR)
//   is ordinary line content (RFC 5321 §2.3.8), so "\n.\n" can never end a message (SMTP
//   smuggling). Such a line reports `bareLf: true` for engines that want to refuse it.
//
// Limits: `maxLineBytes` counts the line including its terminator. Memory held for one line is
// bounded by it: an overlong line is reported once as an "overflow" event when its end arrives,
// and its bytes are discarded as they come.
//
// Raw mode: `readRaw(n)` makes the next n bytes come out as "raw" events (SMTP BDAT, IMAP
// literals, whatever their content), then line mode resumes by itself.

export type LineEvent =
  | { kind: "line"; line: Uint8Array; bareLf: boolean }
  | { kind: "overflow"; bytes: number }
  | { kind: "raw"; data: Uint8Array; remaining: number };

export type LineEndMode = "crlf-or-lf" | "crlf";

export interface LineReaderOptions {
  maxLineBytes: number;
  mode?: LineEndMode;
}

const LF = 0x0a;
const CR = 0x0d;

export class LineReader {
  #max: number;
  #mode: LineEndMode;
  /** Unread input: chunks and an offset into the first. */
  #chunks: Uint8Array[] = [];
  #offset = 0;
  #bufferedBytes = 0;
  /** The start of the current line, gathered from earlier chunks (never longer than #max). */
  #partial: Uint8Array[] = [];
  #partialBytes = 0;
  /** Bytes of an overlong line thrown away so far; -1 when not discarding. */
  #discarded = -1;
  /** Last byte consumed into the current line (to find a CR before an LF across chunks). */
  #lastByte = -1;
  #rawRemaining = 0;

  constructor(opts: LineReaderOptions) {
    if (!(opts.maxLineBytes >= 3)) throw new RangeError("maxLineBytes must be at least 3");
    this.#max = opts.maxLineBytes;
    this.#mode = opts.mode ?? "crlf-or-lf";
  }

  /** Change the line-end rule (e.g. SMTP switching between commands and DATA). */
  setMode(mode: LineEndMode): void {
    this.#mode = mode;
  }

  setMaxLineBytes(n: number): void {
    if (!(n >= 3)) throw new RangeError("maxLineBytes must be at least 3");
    this.#max = n;
  }

  /** Bytes pushed and not yet returned (including a partial line). */
  get buffered(): number {
    return this.#bufferedBytes + this.#partialBytes;
  }

  /** True while raw bytes are still owed from `readRaw`. */
  get inRawMode(): boolean {
    return this.#rawRemaining > 0;
  }

  /** Append bytes. The reader keeps a reference: the caller must not modify them afterwards. */
  push(chunk: Uint8Array): void {
    if (chunk.length === 0) return;
    this.#chunks.push(chunk);
    this.#bufferedBytes += chunk.length;
  }

  /** The next `n` bytes come out as "raw" events; call it between lines. */
  readRaw(n: number): void {
    if (!Number.isSafeInteger(n) || n < 0) throw new RangeError("raw byte count must be ≥ 0");
    if (this.#partialBytes > 0 || this.#discarded >= 0) {
      throw new Error("readRaw called in the middle of a line");
    }
    this.#rawRemaining = n;
  }

  /** Forget everything buffered (STARTTLS: plaintext sent after the command is discarded). */
  clear(): void {
    this.#chunks = [];
    this.#offset = 0;
    this.#bufferedBytes = 0;
    this.#partial = [];
    this.#partialBytes = 0;
    this.#discarded = -1;
    this.#lastByte = -1;
    this.#rawRemaining = 0;
  }

  /** The next complete event, or null when more input is needed. Never throws on any input. */
  next(): LineEvent | null {
    while (this.#chunks.length > 0) {
      const chunk = this.#chunks[0]!;
      const start = this.#offset;
      if (this.#rawRemaining > 0) {
        const take = Math.min(this.#rawRemaining, chunk.length - start);
        const data = chunk.subarray(start, start + take);
        this.#advance(chunk, start + take);
        this.#rawRemaining -= take;
        return { kind: "raw", data, remaining: this.#rawRemaining };
      }
      let searchFrom = start;
      let lf = chunk.indexOf(LF, searchFrom);
      // In "crlf" mode an LF not preceded by CR is content: keep looking in this chunk.
      while (lf >= 0 && this.#mode === "crlf" && this.#byteBefore(chunk, start, lf) !== CR) {
        searchFrom = lf + 1;
        lf = chunk.indexOf(LF, searchFrom);
      }
      if (lf < 0) {
        this.#gather(chunk.subarray(start));
        this.#advance(chunk, chunk.length);
        continue;
      }
      const hasCr = this.#byteBefore(chunk, start, lf) === CR;
      const piece = chunk.subarray(start, lf + 1);
      this.#advance(chunk, lf + 1);
      const total = this.#partialBytes + piece.length;
      if (this.#discarded >= 0 || total > this.#max) {
        const bytes = (this.#discarded >= 0 ? this.#discarded : this.#partialBytes) +
          piece.length;
        this.#resetLine();
        return { kind: "overflow", bytes };
      }
      let whole: Uint8Array;
      if (this.#partialBytes === 0) whole = piece;
      else {
        whole = new Uint8Array(total);
        let at = 0;
        for (const p of this.#partial) {
          whole.set(p, at);
          at += p.length;
        }
        whole.set(piece, at);
      }
      this.#resetLine();
      const line = whole.subarray(0, whole.length - (hasCr ? 2 : 1));
      // A bare LF inside the line (crlf mode), or as its terminator (crlf-or-lf mode).
      const bareLf = !hasCr || hasBareLf(line);
      return { kind: "line", line, bareLf };
    }
    return null;
  }

  #byteBefore(chunk: Uint8Array, start: number, index: number): number {
    return index > start ? chunk[index - 1]! : this.#lastByte;
  }

  #gather(bytes: Uint8Array): void {
    if (bytes.length === 0) return;
    this.#lastByte = bytes[bytes.length - 1]!;
    if (this.#discarded >= 0) {
      this.#discarded += bytes.length;
      return;
    }
    if (this.#partialBytes + bytes.length > this.#max) {
      // Overlong: stop keeping it; only the count survives until the line ends.
      this.#discarded = this.#partialBytes + bytes.length;
      this.#partial = [];
      this.#partialBytes = 0;
      return;
    }
    this.#partial.push(bytes);
    this.#partialBytes += bytes.length;
  }

  #resetLine(): void {
    this.#partial = [];
    this.#partialBytes = 0;
    this.#discarded = -1;
    this.#lastByte = -1;
  }

  #advance(chunk: Uint8Array, to: number): void {
    this.#bufferedBytes -= to - this.#offset;
    if (to >= chunk.length) {
      this.#chunks.shift();
      this.#offset = 0;
    } else this.#offset = to;
  }
}

function hasBareLf(line: Uint8Array): boolean {
  return line.indexOf(LF) >= 0;
}

/** Decode a command line as Latin-1 (byte-transparent: every byte maps to one code unit). */
export function latin1(bytes: Uint8Array): string {
  let s = "";
  for (let i = 0; i < bytes.length; i += 8192) {
    s += String.fromCharCode(...bytes.subarray(i, Math.min(bytes.length, i + 8192)));
  }
  return s;
}
