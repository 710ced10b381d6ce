// Just enough of RFC 5322 to index and identify a message at delivery: the header block,
// unfolded (RFC 5322 §2.2.3), with RFC 2047 encoded-words decoded for the full-text index.

const decoder = new TextDecoder("utf-8", { fatal: false });

/** Offset just past the blank line ending the header block, or -1 if not within `bytes`. */
export function headerEnd(bytes: Uint8Array): number {
  for (let i = 0; i < bytes.length; i++) {
    if (bytes[i] !== 10) continue;
    if (bytes[i + 1] === 10) return i + 2;
    if (bytes[i + 1] === 13 && bytes[i + 2] === 10) return i + 3;
  }
  return -1;
}

export interface Header {
  name: string; // as written
  value: string; // unfolded, raw (not decoded)
}

export function parseHeaders(block: Uint8Array | string): Header[] {
  const text = typeof block === "string" ? block : decoder.decode(block);
  const out: Header[] = [];
  for (const line of text.split(/\r?\n/)) {
    if (line === "") break;
    if ((line[0] === " " || line[0] === "\t") && out.length > 0) {
      out[out.length - 1]!.value += " " + line.trim();
      continue;
    }
    const colon = line.indexOf(":");
    if (colon <= 0) continue;
    out.push({ name: line.slice(0, colon).trim(), value: line.slice(colon + 1).trim() });
  }
  return out;
}

export function headerValue(headers: Header[], name: string): string | null {
  const n = name.toLowerCase();
  return headers.find((h) => h.name.toLowerCase() === n)?.value ?? null;
}

/** RFC 2047 §4: =?charset?B|Q?text?= → text (utf-8 and latin-1 decoded, others kept raw). */
export function decodeWords(value: string): string {
  return value.replace(
    /=\?([^?]+)\?([bBqQ])\?([^?]*)\?=(\s+(?==\?))?/g,
    (_m, charset: string, enc: string, text: string) => {
      try {
        let bytes: Uint8Array;
        if (enc.toUpperCase() === "B") bytes = Uint8Array.from(atob(text), (c) => c.charCodeAt(0));
        else {
          const s = text.replace(/_/g, " ").replace(
            /=([0-9A-Fa-f]{2})/g,
            (_x, h: string) => String.fromCharCode(parseInt(h, 16)),
          );
          bytes = Uint8Array.from(s, (c) => c.charCodeAt(0));
        }
        return new TextDecoder(charset.toLowerCase(), { fatal: false }).decode(bytes);
      } catch {
        return text;
      }
    },
  );
}

/** The Message-ID header without its angle brackets' surrounding noise, or null. */
export function messageIdOf(headers: Header[]): string | null {
  const v = headerValue(headers, "Message-ID");
  const m = v?.match(/<[^<>\s]+>/);
  return m ? m[0] : null;
}
