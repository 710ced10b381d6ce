// Owns: parsing SMTP server replies out of a byte stream, strictly (RFC 5321 §4.2): a
// three-digit code, "-" on every line but the last, one code for the whole reply, bounded line
// length and line count; and the RFC 3463 enhanced status code (RFC 2034 §4) when present.

export interface SmtpReply {
  /** The three-digit reply code (RFC 5321 §4.2). */
  code: number;
  /** The RFC 3463 enhanced status code ("5.1.1"), or null when the server sent none. */
  enhanced: string | null;
  /** The text of each line, code and separator (and the enhanced code) removed. */
  lines: string[];
}

export class ReplyError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "ReplyError";
  }
}

/** "550 5.1.1 no such user" — one line for logs, DSN Diagnostic-Code and queue errors. */
export function formatReply(reply: SmtpReply): string {
  const text = reply.lines.join(" ").replace(/[\x00-\x1f\x7f]+/g, " ").trim();
  return [String(reply.code), reply.enhanced, text].filter((p) => p).join(" ");
}

/** The enhanced code, or the class-only default RFC 3463 §3.1 implies (X.0.0). */
export function statusOf(reply: SmtpReply): string {
  return reply.enhanced ?? `${Math.floor(reply.code / 100)}.0.0`;
}

const ENHANCED = /^([245])\.(\d{1,3})\.(\d{1,3})(?: |$)/;

/** Incremental parser: push bytes as they arrive, get whole replies back. */
export class ReplyParser {
  private buffer = new Uint8Array(0);
  private pendingLines: { code: number; text: string }[] = [];
  private readonly decoder = new TextDecoder("utf-8", { fatal: false });

  constructor(private readonly maxLineBytes: number, private readonly maxLines: number) {}

  /** Throws ReplyError on a malformed reply; the connection is then unusable. */
  push(bytes: Uint8Array): SmtpReply[] {
    const joined = new Uint8Array(this.buffer.length + bytes.length);
    joined.set(this.buffer);
    joined.set(bytes, this.buffer.length);
    const replies: SmtpReply[] = [];
    let start = 0;
    for (;;) {
      const lf = joined.indexOf(0x0a, start);
      if (lf < 0) break;
      // RFC 5321 §2.3.8: lines end in CRLF; a bare LF is tolerated on input, never sent.
      const end = lf > start && joined[lf - 1] === 0x0d ? lf - 1 : lf;
      if (end - start > this.maxLineBytes) throw new ReplyError("reply line too long");
      const reply = this.line(this.decoder.decode(joined.subarray(start, end)));
      if (reply) replies.push(reply);
      start = lf + 1;
    }
    this.buffer = joined.slice(start);
    if (this.buffer.length > this.maxLineBytes) throw new ReplyError("reply line too long");
    return replies;
  }

  /** Bytes received after the last complete line (discarded on STARTTLS, RFC 3207 §4.2). */
  hasPartial(): boolean {
    return this.buffer.length > 0 || this.pendingLines.length > 0;
  }

  private line(text: string): SmtpReply | null {
    // RFC 5321 §4.2: Reply-code [ SP textstring ] CRLF, or Reply-code "-" [ textstring ] CRLF.
    const m = /^([2-5][0-5][0-9])([ -]|$)(.*)$/s.exec(text);
    if (!m) throw new ReplyError(`malformed reply line: ${JSON.stringify(text.slice(0, 80))}`);
    const code = Number(m[1]);
    const first = this.pendingLines[0];
    // RFC 5321 §4.2.1: every line of a multi-line reply carries the same code.
    if (first && first.code !== code) {
      throw new ReplyError(`reply code changed inside a multi-line reply (${first.code}, ${code})`);
    }
    this.pendingLines.push({ code, text: m[3] ?? "" });
    if (m[2] === "-") {
      if (this.pendingLines.length >= this.maxLines) {
        throw new ReplyError("too many lines in one reply");
      }
      return null;
    }
    const lines = this.pendingLines.map((l) => l.text);
    this.pendingLines = [];
    let enhanced: string | null = null;
    const e = ENHANCED.exec(lines[0] ?? "");
    // RFC 3463 §2: the class digit of the enhanced code matches the reply's first digit.
    if (e && Number(e[1]) === Math.floor(code / 100)) {
      enhanced = `${e[1]}.${e[2]}.${e[3]}`;
      const prefix = new RegExp(`^${enhanced.replace(/\./g, "\\.")} ?`);
      for (let i = 0; i < lines.length; i++) lines[i] = lines[i]!.replace(prefix, "");
    }
    return { code, enhanced, lines };
  }
}
