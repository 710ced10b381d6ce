// Owns: the 8-bit → 7-bit MIME downgrade for a next hop without 8BITMIME (RFC 6152 §3: convert
// or do not relay). Two streaming passes over the message, line by line with a line cap, never
// a whole message or part in memory:
//   1. `planSevenBit` walks the MIME tree (RFC 2045/2046) and decides: which leaf parts need
//      quoted-printable, the exact size of the converted message (for SIZE=, RFC 1870 §3), or a
//      refusal (`DowngradeRefused`, 5.6.3) when the message cannot be downgraded honestly
//      (8-bit header fields; 8-bit octets inside base64/quoted-printable/composite-only parts).
//   2. `toSevenBit` streams the converted bytes following that plan. A message the plan finds
//      all 7-bit passes through untouched.
// Both passes run the same walker, so the size announced is the size sent, and nothing 8-bit
// is ever discovered after MAIL FROM.

export interface SevenBitLimits {
  /** Longest line held whole (limits.dataLineBytes); a longer body line is handled in pieces. */
  lineBytes: number;
  /** Deepest MIME nesting walked (smtp.client.mimeNestingLimit). */
  mimeDepth: number;
}

/** The message cannot be converted to 7 bits: RFC 3463 §3.7 X.6.3, "conversion required but not supported". */
export class DowngradeRefused extends Error {
  readonly status = "5.6.3";
  constructor(message: string) {
    super(message);
    this.name = "DowngradeRefused";
  }
}

export interface SevenBitPlan {
  /** False: nothing 8-bit in the body: send the message exactly as it is. */
  convert: boolean;
  /** Bytes read in the scan. */
  inputBytes: number;
  /** Bytes `toSevenBit` will produce (equal to inputBytes when convert is false). */
  outputBytes: number;
  /** Leaf parts re-encoded as quoted-printable. */
  encodedParts: number;
  /** Per part ordinal (ascending): ordinal * 2 + (0: quoted-printable, 1: relabel as 7bit). */
  readonly actions: readonly number[];
  /**
   * DKIM-Signature fields in the message header (RFC 6376): a conversion changes the body they
   * sign, so the next hop will find them broken. Not ours to fix, but worth a log line.
   */
  dkimSignatures: number;
}

const CR = 0x0d;
const LF = 0x0a;
const SP = 0x20;
const TAB = 0x09;
const DASH = 0x2d;
const EQ = 0x3d;
const CRLF = new Uint8Array([CR, LF]);
const LF_ONLY = new Uint8Array([LF]);
const NONE = new Uint8Array(0);
/** RFC 5322 §2.1.1 / RFC 5321 §4.5.3.1.6: at most 998 octets before CRLF. */
const MAX_LINE = 998;
const HEX = new TextEncoder().encode("0123456789ABCDEF");
const enc = new TextEncoder();
const latin1 = new TextDecoder("latin1");
const QP_FIELD = enc.encode("Content-Transfer-Encoding: quoted-printable\r\n");
const SEVEN_BIT_FIELD = enc.encode("Content-Transfer-Encoding: 7bit\r\n");
const MIME_VERSION_FIELD = enc.encode("MIME-Version: 1.0\r\n");
const QP = 0;
const RELABEL = 1;

interface Sink {
  put(b: number): void;
}

class CountingSink implements Sink {
  count = 0;
  put(): void {
    this.count++;
  }
}

/** The converted output, taken after each input chunk (so bounded by ~3× a chunk). */
class Output implements Sink {
  private buf = new Uint8Array(64 * 1024);
  private n = 0;
  put(b: number): void {
    if (this.n === this.buf.length) this.grow(1);
    this.buf[this.n++] = b;
  }
  bytes(data: Uint8Array): void {
    if (this.n + data.length > this.buf.length) this.grow(data.length);
    this.buf.set(data, this.n);
    this.n += data.length;
  }
  take(): Uint8Array {
    const out = this.buf.slice(0, this.n);
    this.n = 0;
    return out;
  }
  private grow(need: number): void {
    const next = new Uint8Array(Math.max(this.buf.length * 2, this.n + need));
    next.set(this.buf.subarray(0, this.n));
    this.buf = next;
  }
}

/**
 * Streaming quoted-printable encoder (RFC 2045 §6.7). Input comes as line contents and hard
 * breaks (the original CRLF or LF); output lines are at most 76 octets.
 */
export class QpEncoder {
  private col = 0;
  private pendingWs = -1;
  constructor(private readonly sink: Sink) {}

  content(data: Uint8Array): void {
    for (let i = 0; i < data.length; i++) {
      const b = data[i]!;
      if (this.pendingWs >= 0) {
        const w = this.pendingWs;
        this.pendingWs = -1;
        this.literal(w); // rule 3: whitespace followed by something on the line stays literal
      }
      if (b === SP || b === TAB) this.pendingWs = b;
      // Rule 2: printable ASCII except "=" as itself; rule 1: everything else as =XX
      // (a bare CR too, so the decoded bytes are the original ones).
      else if (b >= 33 && b <= 126 && b !== EQ) this.literal(b);
      else this.escaped(b);
    }
  }

  /** Rule 4: a line break of the original is a CRLF of the encoding. */
  hardBreak(): void {
    this.flushWhitespace();
    this.sink.put(CR);
    this.sink.put(LF);
    this.col = 0;
  }

  /** The body ends (the CRLF after it belongs to a boundary, or the message ends). */
  finish(): void {
    this.flushWhitespace();
  }

  /** Rule 3: whitespace at the end of an encoded line must be encoded. */
  private flushWhitespace(): void {
    if (this.pendingWs < 0) return;
    const w = this.pendingWs;
    this.pendingWs = -1;
    this.escaped(w);
  }

  private literal(b: number): void {
    if (this.col + 1 > 75) this.soft();
    // RFC 2046 §5.1.1: a boundary delimiter starts with "--"; no line of ours may start with
    // "-", so no soft break can ever make a line an enclosing multipart would read as one.
    if (this.col === 0 && b === DASH) return this.escaped(b);
    this.sink.put(b);
    this.col++;
  }

  private escaped(b: number): void {
    if (this.col + 3 > 75) this.soft();
    this.sink.put(EQ);
    this.sink.put(HEX[b >> 4]!);
    this.sink.put(HEX[b & 15]!);
    this.col += 3;
  }

  /** Rule 5: "=" at the end of a line is a soft line break; lines stay within 76 octets. */
  private soft(): void {
    this.sink.put(EQ);
    this.sink.put(CR);
    this.sink.put(LF);
    this.col = 0;
  }
}

function has8bit(data: Uint8Array): boolean {
  for (let i = 0; i < data.length; i++) if (data[i]! >= 0x80) return true;
  return false;
}

/** Remove RFC 5322 comments "(…)" outside quoted strings. */
function stripComments(value: string): string {
  let out = "";
  let depth = 0;
  let quoted = false;
  for (let i = 0; i < value.length; i++) {
    const c = value[i]!;
    if (c === "\\" && (quoted || depth > 0)) {
      if (depth === 0) out += c + (value[i + 1] ?? "");
      i++;
    } else if (quoted) {
      out += c;
      if (c === '"') quoted = false;
    } else if (c === "(") depth++;
    else if (c === ")" && depth > 0) depth--;
    else if (depth === 0) {
      if (c === '"') quoted = true;
      out += c;
    }
  }
  return out;
}

/** RFC 2045 §5.1: type/subtype (lower case) and the boundary parameter, if any. */
export function parseContentType(value: string): { type: string; boundary: string | null } {
  const clean = stripComments(value.replace(/\r?\n/g, ""));
  const semi = clean.indexOf(";");
  const type = (semi < 0 ? clean : clean.slice(0, semi)).trim().toLowerCase();
  let boundary: string | null = null;
  const param = /;\s*([^=\s;]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^;\s]*)/g;
  for (const m of clean.matchAll(param)) {
    if (m[1]!.toLowerCase() !== "boundary") continue;
    let v = m[2]!;
    if (v.startsWith('"')) v = v.slice(1, -1).replace(/\\(.)/g, "$1");
    // RFC 2046 §5.1.1: 1 to 70 characters, not ending in a space.
    if (v.length > 0 && v.length <= 70 && !v.endsWith(" ")) boundary = v;
    break;
  }
  // RFC 2045 §5.1: type "/" subtype, both tokens.
  if (!/^[^\s()<>@,;:\\"/[\]?=]+\/[^\s()<>@,;:\\"/[\]?=]+$/.test(type)) {
    return { type: "", boundary };
  }
  return { type, boundary };
}

interface Level {
  boundary: Uint8Array;
  /** Depth of the multipart entity itself; its parts are one deeper. */
  depth: number;
  digest: boolean;
  epilogue: boolean;
  /** Scan: a delimiter of this multipart was seen (until then its body is all preamble). */
  delimiterSeen: boolean;
  /** Scan: its preamble holds 8-bit octets (made "?" only if a delimiter follows). */
  preamble8bit: boolean;
}

interface Entity {
  ordinal: number;
  depth: number;
  /** A message header (top level or message/rfc822): MIME-Version belongs here. */
  messageHeader: boolean;
  defaultType: string;
  /** The field whose continuation lines come next. */
  field: "content-type" | "content-transfer-encoding" | "mime-version" | "other";
  contentType: string;
  transferEncoding: string;
  cteBytes: number;
  hasMimeVersion: boolean;
  /** Convert pass: the action found for this part in the plan (-1: none). */
  action: number;
}

interface Leaf {
  ordinal: number;
  /** Quoted-printable is allowed (an identity encoding on a non-composite type). */
  canEncode: boolean;
  cte: string;
  type: string;
  /** A composite walked as a leaf because it is nested past limits.mimeDepth. */
  tooDeep: boolean;
  /** Scan: bytes the header grows by if this part is encoded. */
  headerDelta: number;
  eightBit: boolean;
  longLine: boolean;
  rawBytes: number;
  counter: CountingSink | null;
  encoder: QpEncoder | null;
  /** The line break after the last line: part of the body unless a boundary follows. */
  heldEol: Uint8Array | null;
}

const IDENTITY = new Set(["", "7bit", "8bit", "binary"]);

/** The MIME walker behind both passes: `plan` null scans, a plan converts. */
class Walker {
  readonly out = new Output();
  private readonly carry: Uint8Array;
  private carryLen = 0;
  private atLineStart = true;
  private linePos = 0;
  private inputBytes = 0;

  private mode: "header" | "leaf" | "preamble" | "epilogue" = "header";
  private readonly levels: Level[] = [];
  private entity: Entity | null;
  private leaf: Leaf | null = null;
  private nextOrdinal = 0;

  // scan results
  private readonly actions: number[] = [];
  private encodedParts = 0;
  private deltaEncoded = 0;
  private deltaRelabel = 0;
  private deltaOutside = 0;
  private changedOutside = false;
  private dkimSignatures = 0;
  private cursor = 0;

  constructor(private readonly limits: SevenBitLimits, private readonly plan: SevenBitPlan | null) {
    this.carry = new Uint8Array(limits.lineBytes + 1);
    this.entity = this.newEntity(0, true, "text/plain");
  }

  push(chunk: Uint8Array): void {
    this.inputBytes += chunk.length;
    let start = 0;
    while (start < chunk.length) {
      const lf = chunk.indexOf(LF, start);
      if (lf < 0) {
        this.append(chunk.subarray(start));
        return;
      }
      this.append(chunk.subarray(start, lf));
      const withCr = this.carryLen > 0 && this.carry[this.carryLen - 1] === CR;
      const content = this.carry.subarray(0, this.carryLen - (withCr ? 1 : 0));
      this.line(content, withCr ? CRLF : LF_ONLY, true);
      this.carryLen = 0;
      start = lf + 1;
    }
  }

  end(): void {
    if (this.carryLen > 0 || !this.atLineStart) {
      this.line(this.carry.subarray(0, this.carryLen), NONE, true);
      this.carryLen = 0;
    }
    this.endOfMessage();
  }

  result(): SevenBitPlan {
    const convert = this.encodedParts > 0 || this.changedOutside;
    return {
      convert,
      inputBytes: this.inputBytes,
      outputBytes: convert
        ? this.inputBytes + this.deltaEncoded + this.deltaOutside + this.deltaRelabel
        : this.inputBytes,
      encodedParts: this.encodedParts,
      actions: convert ? this.actions : [],
      dkimSignatures: this.dkimSignatures,
    };
  }

  /** Buffer bytes of the current line; a line longer than the cap goes on in pieces. */
  private append(bytes: Uint8Array): void {
    let i = 0;
    while (this.carryLen + (bytes.length - i) > this.limits.lineBytes) {
      const fill = this.limits.lineBytes - this.carryLen;
      this.carry.set(bytes.subarray(i, i + fill), this.carryLen);
      this.carryLen += fill;
      i += fill;
      // Keep a final CR back: with the LF that may follow, it is a line break, not content.
      const keepCr = this.carry[this.carryLen - 1] === CR ? 1 : 0;
      this.line(this.carry.subarray(0, this.carryLen - keepCr), NONE, false);
      this.carry[0] = CR;
      this.carryLen = keepCr;
    }
    this.carry.set(bytes.subarray(i), this.carryLen);
    this.carryLen += bytes.length - i;
  }

  /** One line (or a piece of a long one: `complete` false), without its line break. */
  private line(content: Uint8Array, eol: Uint8Array, complete: boolean): void {
    const lineStart = this.atLineStart;
    this.atLineStart = complete && eol.length > 0;
    this.dispatch(content, eol, lineStart, complete);
  }

  private dispatch(content: Uint8Array, eol: Uint8Array, lineStart: boolean, complete: boolean) {
    const whole = lineStart && complete;
    if (whole && this.levels.length > 0 && content.length >= 2 && content[0] === DASH) {
      const top = this.levels.length - 1;
      // RFC 2046 §5.1.2: a delimiter of any enclosing multipart ends every part inside it.
      for (let i = top; i >= 0; i--) {
        if (i === top && this.mode === "epilogue") continue;
        const kind = matchBoundary(content, this.levels[i]!.boundary);
        if (kind) return this.boundary(i, kind === "close", content, eol);
      }
    }
    switch (this.mode) {
      case "header":
        return this.headerLine(content, eol, whole);
      case "leaf":
        return this.leafLine(content, eol, lineStart);
      default:
        return this.outsideLine(content, eol, lineStart);
    }
  }

  // ---- headers ----

  private newEntity(depth: number, messageHeader: boolean, defaultType: string): Entity {
    const ordinal = this.nextOrdinal++;
    let action = -1;
    if (this.plan) {
      const a = this.plan.actions;
      while (this.cursor < a.length && a[this.cursor]! >> 1 < ordinal) this.cursor++;
      if (this.cursor < a.length && a[this.cursor]! >> 1 === ordinal) action = a[this.cursor]! & 1;
    }
    this.mode = "header";
    return {
      ordinal,
      depth,
      messageHeader,
      defaultType,
      field: "other",
      contentType: "",
      transferEncoding: "",
      cteBytes: 0,
      hasMimeVersion: false,
      action,
    };
  }

  private headerLine(content: Uint8Array, eol: Uint8Array, whole: boolean): void {
    const e = this.entity!;
    if (!whole) {
      throw new DowngradeRefused(`a header line is longer than ${this.limits.lineBytes} bytes`);
    }
    if (content.length === 0) return this.endHeader(eol); // RFC 5322 §2.1: the empty line
    const first = content[0]!;
    if (first === SP || first === TAB) {
      if (e.field === "content-transfer-encoding") e.cteBytes += content.length + eol.length;
    } else {
      const name = fieldName(content);
      if (name === null) {
        // Not a header field: the body starts here without an empty line (what Postfix does).
        this.endHeader(null);
        return this.dispatch(content, eol, true, true);
      }
      e.field = name === "content-type" || name === "content-transfer-encoding" ||
          name === "mime-version"
        ? name
        : "other";
      if (e.field === "content-transfer-encoding") {
        e.transferEncoding = "";
        e.cteBytes += content.length + eol.length;
      }
      if (e.field === "mime-version") e.hasMimeVersion = true;
      if (e.ordinal === 0 && name === "dkim-signature") this.dkimSignatures++; // RFC 6376 §3.5
      if (e.field === "content-type") e.contentType = "";
    }
    if (has8bit(content)) {
      // RFC 6152 §3 allows converting the body only; an 8-bit header needs SMTPUTF8 (RFC 6532).
      throw new DowngradeRefused(
        `8-bit octets in the header field "${
          headerNameOf(content, e.field)
        }" cannot be sent to a server without 8BITMIME`,
      );
    }
    if (e.field === "content-type" || e.field === "content-transfer-encoding") {
      const text = latin1.decode(content);
      const value = first === SP || first === TAB ? text : text.slice(text.indexOf(":") + 1);
      if (e.field === "content-type") e.contentType += value;
      else e.transferEncoding += value;
      if (e.contentType.length + e.transferEncoding.length > this.limits.lineBytes) {
        throw new DowngradeRefused(`a MIME header field is longer than ${this.limits.lineBytes}`);
      }
    }
    if (this.plan && e.action >= 0 && e.field === "content-transfer-encoding") return; // replaced
    if (this.plan) {
      this.out.bytes(content);
      this.out.bytes(eol);
    }
  }

  /** The header is over: by its empty line (`eol`), or without one (null). */
  private endHeader(eol: Uint8Array | null): void {
    const e = this.entity!;
    this.entity = null;
    const ct = parseContentType(e.contentType || e.defaultType);
    const type = ct.type || "text/plain"; // RFC 2045 §5.2: unusable Content-Type is text/plain
    const cte = stripComments(e.transferEncoding).trim().toLowerCase();
    const identity = IDENTITY.has(cte);
    const deeper = e.depth < this.limits.mimeDepth;
    const multipart = type.startsWith("multipart/");
    // RFC 2046 §5.2.1-§5.2.3: rfc822, partial and external-body take no transfer encoding.
    const message = type === "message/rfc822" || type === "message/partial" ||
      type === "message/external-body";
    const blank = eol ?? CRLF;
    const missingBlank = eol === null ? 2 : 0;

    if (this.plan) {
      if (e.action === QP) {
        if (e.messageHeader && !e.hasMimeVersion) this.out.bytes(MIME_VERSION_FIELD);
        this.out.bytes(QP_FIELD);
        this.out.bytes(blank);
      } else if (e.action === RELABEL) {
        this.out.bytes(SEVEN_BIT_FIELD);
        this.out.bytes(blank);
      } else if (eol) this.out.bytes(eol);
    }

    const composite = multipart && ct.boundary !== null || type === "message/rfc822";
    if (identity && deeper && composite) {
      // RFC 2045 §6.4: a composite is labelled 7bit/8bit/binary only; once its parts are
      // 7-bit, "7bit" is the honest label.
      if (!this.plan && (cte === "8bit" || cte === "binary")) {
        this.actions.push(e.ordinal * 2 + RELABEL);
        this.deltaRelabel += SEVEN_BIT_FIELD.length - e.cteBytes + missingBlank;
      }
      if (type === "message/rfc822") {
        this.entity = this.newEntity(e.depth + 1, true, "text/plain");
      } else {
        this.levels.push({
          boundary: enc.encode(ct.boundary!),
          depth: e.depth,
          digest: type === "multipart/digest", // RFC 2046 §5.1.5: parts default to rfc822
          epilogue: false,
          delimiterSeen: false,
          preamble8bit: false,
        });
        this.mode = "preamble";
      }
      return;
    }
    this.mode = "leaf";
    this.leaf = {
      ordinal: e.ordinal,
      canEncode: identity && !multipart && !message,
      cte,
      type,
      tooDeep: identity && composite && !deeper,
      headerDelta: (e.messageHeader && !e.hasMimeVersion ? MIME_VERSION_FIELD.length : 0) +
        QP_FIELD.length - e.cteBytes + missingBlank,
      eightBit: false,
      longLine: false,
      rawBytes: 0,
      counter: null,
      encoder: null,
      heldEol: null,
    };
    if (!this.plan && this.leaf.canEncode) {
      this.leaf.counter = new CountingSink();
      this.leaf.encoder = new QpEncoder(this.leaf.counter);
    } else if (this.plan && e.action === QP) this.leaf.encoder = new QpEncoder(this.out);
  }

  // ---- leaf bodies ----

  private leafLine(content: Uint8Array, eol: Uint8Array, lineStart: boolean): void {
    const l = this.leaf!;
    if (l.heldEol) {
      this.leafBreak(l, l.heldEol);
      l.heldEol = null;
    }
    if (lineStart) this.linePos = 0;
    this.linePos += content.length;
    if (this.plan) {
      if (l.encoder) l.encoder.content(content);
      else {
        // The plan said 7-bit: anything else means the message changed under us.
        if (has8bit(content)) throw new Error("message changed between scan and conversion");
        this.out.bytes(content);
      }
    } else {
      if (!l.eightBit && has8bit(content)) l.eightBit = true;
      if (this.linePos > MAX_LINE) l.longLine = true;
      l.rawBytes += content.length;
      l.encoder?.content(content);
    }
    if (eol.length > 0) l.heldEol = eol;
  }

  private leafBreak(l: Leaf, eol: Uint8Array): void {
    if (this.plan) {
      if (l.encoder) l.encoder.hardBreak();
      else this.out.bytes(eol);
    } else {
      l.rawBytes += eol.length;
      l.encoder?.hardBreak();
    }
  }

  /** The leaf ends at a boundary (its held line break belongs to the delimiter) or at EOF. */
  private endLeaf(atBoundary: boolean): void {
    const l = this.leaf;
    if (!l) return;
    this.leaf = null;
    if (!atBoundary && l.heldEol) {
      this.leafBreak(l, l.heldEol);
      l.heldEol = null;
    }
    l.encoder?.finish();
    if (this.plan) {
      if (l.heldEol) this.out.bytes(l.heldEol);
      return;
    }
    if (l.canEncode) {
      // 8-bit octets, or lines no 7-bit transport carries (RFC 2045 §2.7): quoted-printable.
      if (l.eightBit || l.longLine) {
        this.actions.push(l.ordinal * 2 + QP);
        this.encodedParts++;
        this.deltaEncoded += l.headerDelta + l.counter!.count - l.rawBytes;
      }
    } else if (l.eightBit && l.tooDeep) {
      throw new DowngradeRefused(
        `8-bit octets in a ${l.type} part nested deeper than the MIME nesting limit of ${this.limits.mimeDepth} (smtp.client.mimeNestingLimit)`,
      );
    } else if (l.eightBit) {
      throw new DowngradeRefused(
        `8-bit octets in a ${l.type} part with Content-Transfer-Encoding ${
          l.cte || "7bit"
        }, which cannot be re-encoded`,
      );
    }
  }

  // ---- preamble and epilogue ----

  /**
   * RFC 2046 §5.1.1: preamble and epilogue carry no meaning and MIME readers ignore them. An
   * 8-bit octet there becomes "?" and a line beyond 998 octets is cut: the same length or
   * shorter, and no new line start, so no boundary can appear that was not there.
   */
  private outsideLine(content: Uint8Array, eol: Uint8Array, lineStart: boolean): void {
    if (lineStart) this.linePos = 0;
    const room = Math.max(0, MAX_LINE - this.linePos);
    this.linePos += content.length;
    const cut = Math.max(0, content.length - room);
    if (!this.plan) {
      const eightBit = has8bit(content);
      if (cut > 0 || eightBit) this.changedOutside = true;
      if (eightBit && this.mode === "preamble") this.levels.at(-1)!.preamble8bit = true;
      this.deltaOutside -= cut;
      return;
    }
    const kept = content.subarray(0, content.length - cut);
    for (let i = 0; i < kept.length; i++) this.out.put(kept[i]! >= 0x80 ? 0x3f : kept[i]!);
    this.out.bytes(eol);
  }

  // ---- boundaries ----

  private boundary(level: number, close: boolean, content: Uint8Array, eol: Uint8Array): void {
    if (this.mode === "header") this.endHeader(null);
    this.endLeaf(true);
    this.checkPreambles(level + 1);
    this.levels.length = level + 1;
    const lv = this.levels[level]!;
    lv.delimiterSeen = true;
    if (this.plan) {
      this.out.bytes(content);
      this.out.bytes(eol);
    }
    if (close) {
      lv.epilogue = true;
      this.mode = "epilogue";
      this.entity = null;
    } else {
      lv.epilogue = false;
      this.entity = this.newEntity(
        lv.depth + 1,
        false,
        lv.digest ? "message/rfc822" : "text/plain",
      );
    }
  }

  private endOfMessage(): void {
    if (this.mode === "header") this.endHeader(null);
    this.endLeaf(false);
    this.checkPreambles(0);
  }

  /**
   * Scan: multiparts from `from` up are over. One that never had a delimiter has no parts: its
   * whole body was "preamble", which readers then tend to show as text, so 8-bit octets there
   * cannot be made "?" quietly (RFC 2046 §5.1.1 only lets a reader ignore a real preamble).
   */
  private checkPreambles(from: number): void {
    if (this.plan) return;
    for (let i = from; i < this.levels.length; i++) {
      const lv = this.levels[i]!;
      if (!lv.delimiterSeen && lv.preamble8bit) {
        throw new DowngradeRefused(
          `8-bit octets in a multipart body with no "--${
            latin1.decode(lv.boundary)
          }" delimiter, which cannot be re-encoded`,
        );
      }
    }
  }
}

/** "delim", "close" or null: is this line `--boundary[--] *LWSP` (RFC 2046 §5.1.1)? */
function matchBoundary(line: Uint8Array, boundary: Uint8Array): "delim" | "close" | null {
  if (line.length < 2 + boundary.length || line[0] !== DASH || line[1] !== DASH) return null;
  for (let i = 0; i < boundary.length; i++) if (line[2 + i] !== boundary[i]) return null;
  let i = 2 + boundary.length;
  const close = line[i] === DASH && line[i + 1] === DASH;
  if (close) i += 2;
  for (; i < line.length; i++) if (line[i] !== SP && line[i] !== TAB) return null;
  return close ? "close" : "delim";
}

/** The lower-cased field name when the line starts a header field (RFC 5322 §2.2), else null. */
function fieldName(line: Uint8Array): string | null {
  let i = 0;
  while (i < line.length && line[i]! >= 33 && line[i]! <= 126 && line[i] !== 0x3a) i++;
  if (i === 0) return null;
  let j = i;
  while (j < line.length && (line[j] === SP || line[j] === TAB)) j++; // obs-optional (§4.5)
  if (line[j] !== 0x3a) return null;
  return latin1.decode(line.subarray(0, i)).toLowerCase();
}

function headerNameOf(line: Uint8Array, field: string): string {
  const name = fieldName(line);
  return name ?? (field === "other" ? "(continuation)" : field);
}

/** Pass 1: read the message once and decide. Throws DowngradeRefused (5.6.3). */
export async function planSevenBit(
  body: AsyncIterable<Uint8Array>,
  limits: SevenBitLimits,
): Promise<SevenBitPlan> {
  const walker = new Walker(limits, null);
  for await (const chunk of body) walker.push(chunk);
  walker.end();
  return walker.result();
}

/** Pass 2: the message as 7-bit MIME, following `plan` (from the same bytes). */
export async function* toSevenBit(
  body: AsyncIterable<Uint8Array>,
  plan: SevenBitPlan,
  limits: SevenBitLimits,
): AsyncIterable<Uint8Array> {
  // The plan holds only for the bytes it was made from: a second read that differs (a store
  // stream ending early) throws before the last bytes go out, so the message is never ended
  // (no final "." or BDAT LAST) and a half message cannot pass for a whole one.
  const changed = (what: string, got: number, want: number) =>
    new Error(`message changed between scan and conversion: ${got} bytes ${what}, ${want} planned`);
  let read = 0;
  if (!plan.convert) {
    for await (const chunk of body) {
      read += chunk.length;
      if (read > plan.inputBytes) throw changed("read", read, plan.inputBytes);
      yield chunk;
    }
    if (read !== plan.inputBytes) throw changed("read", read, plan.inputBytes);
    return;
  }
  const walker = new Walker(limits, plan);
  let written = 0;
  for await (const chunk of body) {
    read += chunk.length;
    if (read > plan.inputBytes) throw changed("read", read, plan.inputBytes);
    walker.push(chunk);
    const out = walker.out.take();
    written += out.length;
    if (out.length > 0) yield out;
  }
  if (read !== plan.inputBytes) throw changed("read", read, plan.inputBytes);
  walker.end();
  const out = walker.out.take();
  written += out.length;
  // RFC 1870 §3: SIZE= announced plan.outputBytes; anything else is a bug, not a message.
  if (written !== plan.outputBytes) throw changed("converted", written, plan.outputBytes);
  if (out.length > 0) yield out;
}
