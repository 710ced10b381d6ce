// What the full-text index reads of a message: the decoded address and subject headers, and
// the text a person wrote: every text/* part, its transfer encoding undone (RFC 2045 §6.7
// quoted-printable, §6.8 base64) and its charset decoded, HTML reduced to its words. An
// attachment contributes its file name only, never its (base64) bytes: those were noise in the
// index and most of the cost of indexing a message with attachments.
import { decodeWords, headerEnd, parseHeaders } from "./headers.ts";
import { MimeParser, type MimePart } from "./mime.ts";

const INDEXED_HEADERS = /^(subject|from|to|cc|bcc|reply-to|newsgroups)$/i;
const latin1 = new TextDecoder("latin1");

/**
 * The index text of a message from its first bytes (`start`, possibly cut short); at most
 * `maxText` characters of body text.
 */
export function indexText(start: Uint8Array, maxText: number): { headers: string; text: string } {
  const end = headerEnd(start);
  const block = end < 0 ? start : start.subarray(0, end);
  const headers = parseHeaders(block)
    .filter((h) => INDEXED_HEADERS.test(h.name))
    .map((h) => decodeWords(h.value))
    .join("\n");
  if (end < 0) return { headers, text: "" };
  const parser = new MimeParser();
  parser.push(start);
  const { structure } = parser.finish();
  const out: string[] = [];
  let left = maxText;
  const visit = (part: MimePart, depth: number) => {
    if (left <= 0 || depth > 32) return;
    if (part.children.length > 0) {
      for (const child of part.children) visit(child, depth + 1);
      return;
    }
    if (part.message) {
      const subject = part.message.envelope.subject;
      if (subject) add(subject);
      visit(part.message.part, depth + 1);
      return;
    }
    const name = part.disposition?.params.filename ?? part.params.name;
    if (name) add(decodeWords(name));
    const attachment = part.disposition?.type === "ATTACHMENT";
    if (part.type !== "TEXT" || attachment) return;
    const stop = part.end < 0 ? start.length : Math.min(part.end, start.length);
    const raw = start.subarray(Math.min(part.bodyStart, stop), stop);
    let text = decodeCharset(undoTransferEncoding(raw, part.encoding), part.params.charset);
    if (part.subtype === "HTML") text = htmlWords(text);
    add(text);
  };
  const add = (s: string) => {
    const piece = s.length > left ? s.slice(0, left) : s;
    out.push(piece);
    left -= piece.length + 1;
  };
  visit(structure, 0);
  return { headers, text: out.join("\n") };
}

function undoTransferEncoding(raw: Uint8Array, encoding: string): Uint8Array {
  if (encoding === "BASE64") {
    // Buffer's decoder skips line breaks and stops at junk: right for a cut-short part too.
    return Buffer.from(latin1.decode(raw), "base64");
  }
  if (encoding === "QUOTED-PRINTABLE") return decodeQuotedPrintable(raw);
  return raw;
}

/** RFC 2045 §6.7: "=XX" is a byte, "=" at the end of a line is a soft break. */
export function decodeQuotedPrintable(raw: Uint8Array): Uint8Array {
  const out = new Uint8Array(raw.length);
  let n = 0;
  for (let i = 0; i < raw.length; i++) {
    const c = raw[i]!;
    if (c !== 0x3d) {
      out[n++] = c;
      continue;
    }
    const a = raw[i + 1], b = raw[i + 2];
    if (a === 0x0a) i += 1; // "=\n"
    else if (a === 0x0d && b === 0x0a) i += 2; // "=\r\n"
    else if (a !== undefined && b !== undefined && isHex(a) && isHex(b)) {
      out[n++] = (hexValue(a) << 4) | hexValue(b);
      i += 2;
    } else out[n++] = c; // a stray "=": kept as it is
  }
  return out.subarray(0, n);
}

function isHex(c: number): boolean {
  return (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x46) || (c >= 0x61 && c <= 0x66);
}

function hexValue(c: number): number {
  return c <= 0x39 ? c - 0x30 : (c & 0x0f) + 9;
}

function decodeCharset(bytes: Uint8Array, charset: string | undefined): string {
  const label = (charset ?? "utf-8").trim().toLowerCase();
  try {
    return new TextDecoder(label === "us-ascii" ? "utf-8" : label).decode(bytes);
  } catch {
    return new TextDecoder("utf-8").decode(bytes); // a charset we do not know: best effort
  }
}

const ENTITIES: Record<string, string> = { amp: "&", lt: "<", gt: ">", quot: '"', nbsp: " " };

/**
 * The words of an HTML part: no scripts, styles, tags or comments; common entities decoded.
 * One forward pass (each search starts where the last ended), so hostile markup such as a
 * long run of "<" or an unterminated comment costs linear time, never quadratic.
 */
export function htmlWords(html: string): string {
  const low = html.toLowerCase();
  let out = "";
  let i = 0;
  while (i < html.length) {
    const lt = html.indexOf("<", i);
    if (lt < 0) {
      out += html.slice(i);
      break;
    }
    out += html.slice(i, lt) + " ";
    if (low.startsWith("<!--", lt)) {
      const end = low.indexOf("-->", lt + 4);
      if (end < 0) break; // an unterminated comment runs to the end
      i = end + 3;
      continue;
    }
    const gt = html.indexOf(">", lt + 1);
    if (gt < 0) break; // an unterminated tag: nothing after it is text
    const raw = /^<(script|style)\b/.exec(low.slice(lt, lt + 8));
    if (raw) {
      const close = low.indexOf(`</${raw[1]}`, gt + 1);
      if (close < 0) break; // an unterminated script or style runs to the end
      const closeEnd = html.indexOf(">", close);
      i = closeEnd < 0 ? html.length : closeEnd + 1;
      continue;
    }
    i = gt + 1;
  }
  return out.replace(/&(#x[0-9a-f]{1,6}|#[0-9]{1,7}|[a-z]{1,10});/gi, (m, e: string) => {
    if (e[0] === "#") {
      const code = e[1] === "x" || e[1] === "X" ? parseInt(e.slice(2), 16) : parseInt(e.slice(1));
      return code > 0 && code < 0x110000 ? String.fromCodePoint(code) : " ";
    }
    return ENTITIES[e.toLowerCase()] ?? m;
  });
}
