// The MIME structure and envelope of a stored body, parsed by streaming it once (RFC 2045,
// RFC 2046 §5.1.1 boundaries, RFC 5322 headers) and cached on the body row, so IMAP
// ENVELOPE / BODYSTRUCTURE / BODY[part] and the NNTP overview never re-parse and never hold
// the whole message in memory. Offsets are relative to the body (without local prefix).
import type { Envelope, EnvelopeAddress, MimePart } from "../ipc/store-api.ts";
import { decodeWords, type Header, headerValue, parseHeaders } from "./headers.ts";

export type { Envelope, EnvelopeAddress, MimePart };

export interface ParsedBody {
  envelope: Envelope;
  structure: MimePart;
  /** Bytes of the top-level header block including the blank line. */
  headerBytes: number;
  lines: number;
}

const MAX_HEADER_BYTES = 256 * 1024;
const MAX_DEPTH = 32;
const MAX_PARTS = 10_000;
const latin1 = new TextDecoder("latin1");

/** Content-Type style value: "type/subtype; a=b; c="d"" (RFC 2045 §5.1). */
export function parseParams(value: string): { value: string; params: Record<string, string> } {
  const parts: string[] = [];
  let cur = "", quoted = false;
  for (let i = 0; i < value.length; i++) {
    const c = value[i]!;
    if (c === '"') quoted = !quoted;
    if (c === "\\" && quoted && i + 1 < value.length) {
      cur += value[++i];
      continue;
    }
    if (c === ";" && !quoted) {
      parts.push(cur);
      cur = "";
    } else cur += c;
  }
  parts.push(cur);
  const params: Record<string, string> = {};
  for (const p of parts.slice(1)) {
    const eq = p.indexOf("=");
    if (eq <= 0) continue;
    const k = p.slice(0, eq).trim().toLowerCase();
    let v = p.slice(eq + 1).trim();
    if (v.startsWith('"') && v.endsWith('"') && v.length >= 2) v = v.slice(1, -1);
    if (k) params[k] = v;
  }
  return { value: parts[0]!.trim().replace(/\s*\(.*\)\s*$/, ""), params };
}

/** RFC 5322 §3.4 address lists, leniently: names, angle addresses, groups. */
export function parseAddressList(value: string | null): EnvelopeAddress[] {
  if (!value) return [];
  const out: EnvelopeAddress[] = [];
  const items: string[] = [];
  let cur = "", quoted = false, angle = 0, depth = 0;
  const flush = () => {
    if (cur.trim()) items.push(cur.trim());
    cur = "";
  };
  for (let i = 0; i < value.length; i++) {
    const c = value[i]!;
    if (c === "\\" && quoted) {
      cur += c + (value[++i] ?? "");
      continue;
    }
    if (c === '"' && depth === 0) quoted = !quoted;
    else if (!quoted && c === "(") depth++;
    else if (!quoted && c === ")" && depth > 0) depth--;
    else if (!quoted && depth === 0 && c === "<") angle++;
    else if (!quoted && depth === 0 && c === ">" && angle > 0) angle--;
    if (!quoted && depth === 0 && angle === 0 && (c === "," || c === ";" || c === ":")) {
      if (c === ":") {
        out.push({ name: null, mailbox: cur.trim().replace(/^"|"$/g, ""), host: null });
        cur = "";
        continue;
      }
      flush();
      for (const it of items.splice(0)) out.push(one(it));
      if (c === ";") out.push({ name: null, mailbox: null, host: null });
      continue;
    }
    cur += c;
  }
  flush();
  for (const it of items) out.push(one(it));
  return out;

  function one(s: string): EnvelopeAddress {
    const noComments = s.replace(/\((?:[^()\\]|\\.)*\)/g, (m) => m.includes("@") ? "" : m).trim();
    const m = noComments.match(/^(.*)<([^<>]*)>\s*$/);
    let name: string | null = null, addr = noComments;
    if (m) {
      name = m[1]!.trim().replace(/^"(.*)"$/, "$1").replace(/\\(.)/g, "$1") || null;
      addr = m[2]!.trim();
    } else {
      const comment = s.match(/\(([^()]*)\)/);
      addr = s.replace(/\([^()]*\)/g, "").trim();
      if (comment) name = comment[1]!.trim() || null;
    }
    addr = addr.replace(/^@[^:]*:/, ""); // obsolete source route
    const at = addr.lastIndexOf("@");
    return {
      name: name ? decodeWords(name) : null,
      mailbox: at >= 0 ? addr.slice(0, at) : addr || null,
      host: at >= 0 ? addr.slice(at + 1) : null,
    };
  }
}

export function envelopeOf(headers: Header[]): Envelope {
  const h = (n: string) => headerValue(headers, n);
  const from = parseAddressList(h("From"));
  const sender = parseAddressList(h("Sender"));
  const replyTo = parseAddressList(h("Reply-To"));
  return {
    date: h("Date"),
    subject: h("Subject"),
    from,
    // RFC 3501 §7.4.2: sender and reply-to default to from.
    sender: sender.length ? sender : from,
    replyTo: replyTo.length ? replyTo : from,
    to: parseAddressList(h("To")),
    cc: parseAddressList(h("Cc")),
    bcc: parseAddressList(h("Bcc")),
    inReplyTo: h("In-Reply-To"),
    messageId: h("Message-ID"),
    references: h("References"),
  };
}

function newPart(headerStart: number, parentDigest: boolean): MimePart {
  return {
    type: parentDigest ? "MESSAGE" : "TEXT",
    subtype: parentDigest ? "RFC822" : "PLAIN",
    params: parentDigest ? {} : { charset: "us-ascii" },
    id: null,
    description: null,
    encoding: "7BIT",
    disposition: null,
    language: null,
    location: null,
    md5: null,
    headerStart,
    bodyStart: headerStart,
    end: -1, // open until a boundary or the end of the body closes it
    lines: 0,
    children: [],
    message: null,
  };
}

function applyHeaders(p: MimePart, headers: Header[]): void {
  const ct = headerValue(headers, "Content-Type");
  if (ct) {
    const { value, params } = parseParams(ct);
    const [t, s] = value.split("/");
    if (t && s) {
      p.type = t.trim().toUpperCase();
      p.subtype = s.trim().toUpperCase();
      p.params = params;
    }
  }
  const enc = headerValue(headers, "Content-Transfer-Encoding");
  if (enc) p.encoding = enc.trim().toUpperCase();
  p.id = headerValue(headers, "Content-ID");
  p.description = headerValue(headers, "Content-Description");
  p.md5 = headerValue(headers, "Content-MD5");
  p.language = headerValue(headers, "Content-Language");
  p.location = headerValue(headers, "Content-Location");
  const disp = headerValue(headers, "Content-Disposition");
  if (disp) {
    const { value, params } = parseParams(disp);
    p.disposition = { type: value.toUpperCase(), params };
  }
}

interface Frame {
  part: MimePart;
  state: "headers" | "body" | "preamble" | "epilogue";
  headerText: string[];
  headerBytes: number;
  boundary: string | null;
  current: MimePart | null; // the child part being read (multipart)
  envelopeFor: MimePart | null; // message/rfc822 container waiting for this part's headers
}

/** A push parser: feed the body's chunks in order, then `finish`. */
export class MimeParser {
  private offset = 0;
  private carry: Uint8Array = new Uint8Array(0);
  private stack: Frame[] = [];
  private root: MimePart;
  private envelope: Envelope | null = null;
  private headerBytes = 0;
  private totalLines = 0;
  private parts = 1;

  constructor() {
    this.root = newPart(0, false);
    this.stack.push(this.frame(this.root, null));
  }

  private frame(part: MimePart, envelopeFor: MimePart | null): Frame {
    return {
      part,
      state: "headers",
      headerText: [],
      headerBytes: 0,
      boundary: null,
      current: null,
      envelopeFor,
    };
  }

  push(chunk: Uint8Array): void {
    let data = chunk;
    if (this.carry.length) {
      data = new Uint8Array(this.carry.length + chunk.length);
      data.set(this.carry);
      data.set(chunk, this.carry.length);
    }
    let start = 0;
    // Line ends found by the native byte search, not a JS loop over every byte.
    const view = Buffer.from(data.buffer, data.byteOffset, data.length);
    for (let lf = view.indexOf(10); lf >= 0; lf = view.indexOf(10, start)) {
      this.line(data.subarray(start, lf + 1));
      start = lf + 1;
    }
    // A very long line is handled in pieces: only boundaries and headers care about lines.
    if (data.length - start > 64 * 1024) {
      this.line(data.subarray(start));
      start = data.length;
    }
    this.carry = data.slice(start);
  }

  finish(): ParsedBody {
    if (this.carry.length) this.line(this.carry);
    this.carry = new Uint8Array(0);
    const end = this.offset;
    for (let k = this.stack.length - 1; k >= 0; k--) {
      const f = this.stack[k]!;
      if (f.state === "headers") {
        this.stack.length = k + 1; // endHeaders may push an inner frame; nothing follows
        this.endHeaders(f, end);
      }
      if (f.current) this.closePart(f.current, end);
      this.closePart(f.part, end);
    }
    for (const f of this.stack) this.closePart(f.part, end);
    if (!this.envelope) this.envelope = envelopeOf([]);
    return {
      envelope: this.envelope,
      structure: this.root,
      headerBytes: this.headerBytes,
      lines: this.totalLines,
    };
  }

  private closePart(p: MimePart, end: number): void {
    if (p.end < 0) p.end = Math.max(end, p.bodyStart);
  }

  private line(bytes: Uint8Array): void {
    const lineStart = this.offset;
    this.offset += bytes.length;
    if (bytes[bytes.length - 1] === 10) this.totalLines++;
    const top = this.stack[this.stack.length - 1]!;
    if (top.state === "headers") {
      const blank = bytes.length <= 2 && (bytes[0] === 10 || (bytes[0] === 13 && bytes[1] === 10));
      if (blank) {
        this.endHeaders(top, this.offset);
        return;
      }
      top.headerBytes += bytes.length;
      this.bumpEnclosingLines();
      if (top.headerBytes <= MAX_HEADER_BYTES) top.headerText.push(latin1.decode(bytes));
      return;
    }
    // Body line: a boundary of any open multipart ends the parts inside it (RFC 2046 §5.1.1).
    if (bytes[0] === 45 && bytes[1] === 45) {
      const text = latin1.decode(bytes).replace(/[ \t\r\n]+$/, "");
      for (let k = this.stack.length - 1; k >= 0; k--) {
        const f = this.stack[k]!;
        if (!f.boundary || f.state === "epilogue") continue;
        const isClose = text === `--${f.boundary}--`;
        if (text !== `--${f.boundary}` && !isClose) continue;
        // The line break before the boundary belongs to the boundary.
        const end = Math.max(lineStart - this.prevBreak, 0);
        while (this.stack.length - 1 > k) {
          const inner = this.stack.pop()!;
          if (inner.state === "headers") this.endHeaders(inner, end);
          if (inner.current) this.closePart(inner.current, end);
          this.closePart(inner.part, end);
        }
        if (f.current) {
          this.closePart(f.current, end);
          f.current = null;
        }
        if (isClose) f.state = "epilogue";
        else if (this.parts < MAX_PARTS && this.stack.length < MAX_DEPTH) {
          this.parts++;
          const child = newPart(this.offset, f.part.subtype === "DIGEST");
          f.part.children.push(child);
          f.current = child;
          f.state = "body";
          this.stack.push(this.frame(child, null));
        }
        this.prevBreak = this.breakLen(bytes);
        return;
      }
    }
    const cur = this.stack[this.stack.length - 1]!;
    if (cur.part.type === "TEXT" || cur.part.type === "MESSAGE") cur.part.lines += 1;
    this.bumpEnclosingLines();
    this.prevBreak = this.breakLen(bytes);
  }

  private prevBreak = 0;

  private breakLen(bytes: Uint8Array): number {
    const n = bytes.length;
    if (bytes[n - 1] !== 10) return 0;
    return n >= 2 && bytes[n - 2] === 13 ? 2 : 1;
  }

  /** message/rfc822 parts count the lines of everything they encapsulate. */
  private bumpEnclosingLines(): void {
    for (let k = this.stack.length - 2; k >= 0; k--) {
      const p = this.stack[k]!.part;
      if (p.type === "MESSAGE" && p.subtype === "RFC822") p.lines += 1;
    }
  }

  private endHeaders(f: Frame, bodyStart: number): void {
    const headers = parseHeaders(f.headerText.join(""));
    f.headerText = [];
    const p = f.part;
    p.bodyStart = bodyStart;
    applyHeaders(p, headers);
    if (p === this.root) {
      this.envelope = envelopeOf(headers);
      this.headerBytes = bodyStart;
    }
    if (f.envelopeFor) f.envelopeFor.message = { envelope: envelopeOf(headers), part: p };
    if (p.type === "MULTIPART" && p.params.boundary && this.stack.length < MAX_DEPTH) {
      f.boundary = p.params.boundary;
      f.state = "preamble";
    } else if (p.type === "MESSAGE" && p.subtype === "RFC822" && this.stack.length < MAX_DEPTH) {
      f.state = "body";
      const inner = newPart(bodyStart, false);
      this.parts++;
      this.stack.push(this.frame(inner, p));
    } else f.state = "body";
  }
}

export async function parseBody(chunks: AsyncIterable<Uint8Array>): Promise<ParsedBody> {
  const p = new MimeParser();
  for await (const c of chunks) p.push(c);
  return p.finish();
}
