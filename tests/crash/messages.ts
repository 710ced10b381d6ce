// The messages the crash test sends and how it recognises them when read back: distinct
// Message-IDs, random bodies of 1–64 KiB (plain text, 8-bit bytes, lines starting with dots),
// written with LF and put on the wire as CRLF, and the check that a stored copy is byte-exact
// once the server's own trace headers (Return-Path:, Received:) are taken off its top.
import { createHash } from "node:crypto";

export const DOMAIN = "crash.test";
export const USERS = ["u@crash.test", "v@crash.test"] as const;
export const PASSWORD = "crash-test-Pass-1";

/** A small seeded generator (mulberry32), so a failing run's messages can be made again. */
export class Rng {
  #s: number;
  constructor(seed: number) {
    this.#s = seed >>> 0;
  }
  next(): number {
    this.#s = (this.#s + 0x6d2b79f5) >>> 0;
    let t = this.#s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }
  int(lo: number, hi: number): number {
    return lo + Math.floor(this.next() * (hi - lo + 1));
  }
  pick<T>(items: readonly T[]): T {
    return items[Math.floor(this.next() * items.length)]!;
  }
}

export type Outcome =
  | "unsent" // the connection died before the end of the message was written
  | "in-flight" // the end was written, no reply came (the server died)
  | "acked" // 250 to the end of data
  | "refused"; // a 4xx/5xx reply to the end of data (or to DATA, MAIL, RCPT)

export interface SentMessage {
  messageId: string;
  sender: string;
  recipients: string[];
  /** The message as the client meant it: CRLF line ends, not dot-stuffed. */
  canonical: Uint8Array;
  sha256: string;
  /** 8-bit bytes in the body: sent with BODY=8BITMIME (RFC 6152). */
  eightBit: boolean;
  /** Sent with BDAT (RFC 3030) instead of DATA. */
  bdat: boolean;
  /** Carries a bare LF on purpose: the server must refuse it (RFC 5321 §2.3.8). */
  bareLf: boolean;
  outcome: Outcome;
  reply: string | null;
  /** The last step begun: how far an "unsent" message got before its connection died. */
  stage: "mail" | "rcpt" | "data" | "body" | "end";
  /** performance.now() when the final reply arrived. */
  repliedAt: number | null;
}

export const sha256 = (b: Uint8Array): string => createHash("sha256").update(b).digest("hex");

const WORDS = [
  "post",
  "horn",
  "mail",
  "crash",
  "kill",
  "durable",
  "fsync",
  "page",
  "extent",
  "queue",
  "Grüße",
  "naïve",
  "façade",
  "Ærøskøbing",
  "日本語",
  "Ελληνικά",
  "emoji🙂",
];
const ASCII_WORDS = WORDS.filter((w) => /^[\x20-\x7e]+$/.test(w));

/** One body line (no line end): text, dots at the start, or raw 8-bit bytes. */
function bodyLine(rng: Rng, eightBit: boolean): Uint8Array {
  const kind = rng.int(0, 19);
  if (kind === 0) return new Uint8Array(0); // empty line
  if (kind === 1) return new TextEncoder().encode("."); // a lone dot: must be stuffed
  if (kind === 2) return new TextEncoder().encode(".." + ASCII_WORDS.join(" ")); // leading dots
  if (kind === 3 && eightBit) {
    // Raw high bytes, not valid UTF-8: 8BITMIME allows any octet but NUL, CR and LF.
    const n = rng.int(1, 120);
    const out = new Uint8Array(n);
    for (let i = 0; i < n; i++) out[i] = rng.int(0x80, 0xff);
    return out;
  }
  const words = eightBit ? WORDS : ASCII_WORDS;
  const n = rng.int(1, 20);
  const parts: string[] = [];
  for (let i = 0; i < n; i++) parts.push(rng.pick(words));
  if (rng.int(0, 9) === 0) parts.unshift("From"); // "From " lines: mbox quoting must not leak
  return new TextEncoder().encode(parts.join(" "));
}

function concat(parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

/** LF-terminated text as CRLF-terminated (every LF gains a CR; there are no CRs before). */
export function lfToCrlf(lf: Uint8Array): Uint8Array {
  let lfs = 0;
  for (const b of lf) if (b === 0x0a) lfs++;
  const out = new Uint8Array(lf.length + lfs);
  let o = 0;
  for (const b of lf) {
    if (b === 0x0a) out[o++] = 0x0d;
    out[o++] = b;
  }
  return out;
}

/** A distinct message; `tag` makes its Message-ID unique across cycles and connections. */
export function makeMessage(
  rng: Rng,
  tag: string,
  opts: { bareLf?: boolean } = {},
): SentMessage {
  const eightBit = rng.int(0, 2) === 0;
  const r = rng.int(0, 9);
  const recipients = r < 8 ? [USERS[0]] : r === 8 ? [USERS[1]] : [...USERS];
  const messageId = `<${tag}.${rng.int(0, 1e9)}@${DOMAIN}>`;
  const sender = `sender-${tag}@example.net`;
  const header = [
    `Message-ID: ${messageId}`,
    `From: Sender <${sender}>`,
    `To: ${recipients.join(", ")}`,
    `Subject: crash test ${tag}`,
    "Date: Sun, 22 Nov 2026 04:00:00 +0000",
    "MIME-Version: 1.0",
    `Content-Type: text/plain; charset=${eightBit ? "utf-8" : "us-ascii"}`,
    `Content-Transfer-Encoding: ${eightBit ? "8bit" : "7bit"}`,
    "",
    "",
  ].join("\n");
  const target = rng.int(1024, 64 * 1024);
  const lines: Uint8Array[] = [new TextEncoder().encode(header)];
  let size = lines[0]!.length;
  const NL = new Uint8Array([0x0a]);
  while (size < target) {
    const line = bodyLine(rng, eightBit);
    lines.push(line, NL);
    size += line.length + 1;
  }
  // Written with LF, as a program builds text; SMTP wants CRLF (RFC 5321 §2.3.8).
  let canonical = lfToCrlf(concat(lines));
  if (opts.bareLf) {
    // A bare LF inside the body: "\n.\n" is the SMTP-smuggling sequence, and must be refused.
    const at = canonical.length - 2;
    canonical = concat([
      canonical.subarray(0, at),
      new TextEncoder().encode("\n.\nsmuggled"),
      canonical.subarray(at),
    ]);
  }
  return {
    messageId,
    sender,
    recipients,
    canonical,
    sha256: sha256(canonical),
    eightBit,
    bdat: !opts.bareLf && rng.int(0, 3) === 0,
    bareLf: !!opts.bareLf,
    outcome: "unsent",
    reply: null,
    stage: "mail",
    repliedAt: null,
  };
}

/**
 * RFC 5321 §4.5.2: a line starting with a dot gets one more; then the CRLF.CRLF end. Lines end
 * at CRLF only, so a dot after a bare LF goes out as it is (the smuggling probe needs that).
 */
export function dotStuff(canonical: Uint8Array): Uint8Array {
  const lineStart = (i: number) =>
    i === 0 || (canonical[i - 1] === 0x0a && canonical[i - 2] === 0x0d);
  let dots = 0;
  for (let i = 0; i < canonical.length; i++) {
    if (canonical[i] === 0x2e && lineStart(i)) dots++;
  }
  const end = new TextEncoder().encode(".\r\n");
  const out = new Uint8Array(canonical.length + dots + end.length);
  let o = 0;
  for (let i = 0; i < canonical.length; i++) {
    if (canonical[i] === 0x2e && lineStart(i)) out[o++] = 0x2e;
    out[o++] = canonical[i]!;
  }
  out.set(end, o);
  return out;
}

export interface StoredCopy {
  /** The trace header lines the server put on top, unfolded names only. */
  prefixNames: string[];
  returnPath: string | null;
  rest: Uint8Array;
  messageId: string | null;
}

const latin1 = new TextDecoder("latin1");

/**
 * Splits a stored message into the trace headers the server prepended (RFC 5321 §4.4:
 * Return-Path: then Received:, each possibly folded) and the client's message after them.
 */
export function splitStored(stored: Uint8Array): StoredCopy {
  const names: string[] = [];
  let returnPath: string | null = null;
  let at = 0;
  for (;;) {
    const head = latin1.decode(stored.subarray(at, at + 16)).toLowerCase();
    const name = head.startsWith("return-path:")
      ? "Return-Path"
      : head.startsWith("received:")
      ? "Received"
      : null;
    if (!name) break;
    // The field ends at a CRLF not followed by white space (RFC 5322 §2.2.3 folding).
    let end = at;
    for (;;) {
      const crlf = indexOfCrlf(stored, end);
      if (crlf < 0) {
        end = stored.length;
        break;
      }
      end = crlf + 2;
      if (stored[end] !== 0x20 && stored[end] !== 0x09) break;
    }
    if (name === "Return-Path") {
      returnPath = latin1.decode(stored.subarray(at + 12, end)).trim();
    }
    names.push(name);
    at = end;
  }
  const rest = stored.subarray(at);
  const top = latin1.decode(rest.subarray(0, 300));
  const m = /^Message-ID: (<[^>\r\n]*>)\r\n/.exec(top);
  return { prefixNames: names, returnPath, rest, messageId: m ? m[1]! : null };
}

function indexOfCrlf(b: Uint8Array, from: number): number {
  for (let i = b.indexOf(0x0d, from); i >= 0 && i + 1 < b.length; i = b.indexOf(0x0d, i + 1)) {
    if (b[i + 1] === 0x0a) return i;
  }
  return -1;
}
