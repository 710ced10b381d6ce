// Reverse-path and forward-path syntax (RFC 5321 §4.1.2), extended for internationalized
// addresses (RFC 6531 §3.3). Pure and total: any string yields a path or a reason, never a throw.

export type PathResult =
  | {
    ok: true;
    /** "local@domain" with the domain lower-cased; "" for the null path; "postmaster" alone. */
    address: string;
    /** The address carries UTF-8 (needs SMTPUTF8, RFC 6531 §3.4). */
    utf8: boolean;
    /** What follows the closing ">" (the ESMTP parameters). */
    rest: string;
  }
  | { ok: false; reason: string };

export interface PathOptions {
  /** MAIL FROM:<> (RFC 5321 §4.5.5). */
  allowNull: boolean;
  /** RCPT TO:<Postmaster> without a domain (RFC 5321 §4.1.1.3). */
  allowBarePostmaster: boolean;
}

// RFC 5321 §4.5.3.1: size limits, in octets.
export const MAX_LOCAL_PART = 64;
export const MAX_DOMAIN = 255;
export const MAX_PATH = 256;

const ATEXT = /^[A-Za-z0-9!#$%&'*+\-/=?^_`{|}~\u0080-\u{10FFFF}]$/u;
const LABEL =
  /^[A-Za-z0-9\u0080-\u{10FFFF}](?:[A-Za-z0-9\-\u0080-\u{10FFFF}]*[A-Za-z0-9\u0080-\u{10FFFF}])?$/u;
const ROUTE = /^@[^,:<>@\s]+(?:,@[^,:<>@\s]+)*$/;

const octets = (s: string) => Buffer.byteLength(s, "utf8");
const hasNonAscii = (s: string) => /[^\x00-\x7f]/.test(s);

/** Parses "<...>" at the start of `text`. */
export function parsePath(text: string, opts: PathOptions): PathResult {
  if (!text.startsWith("<")) return { ok: false, reason: "the address must be in angle brackets" };
  let i = 1;
  // RFC 5321 §4.1.2 / Appendix C: a source route "@a,@b:" is accepted and ignored.
  if (text[i] === "@") {
    const colon = text.indexOf(":", i);
    if (colon < 0 || !ROUTE.test(text.slice(i, colon))) {
      return { ok: false, reason: "bad source route" };
    }
    i = colon + 1;
  }
  if (text[i] === ">") {
    if (!opts.allowNull) return { ok: false, reason: "an empty address is not allowed here" };
    return { ok: true, address: "", utf8: false, rest: text.slice(i + 1) };
  }
  const local = readLocalPart(text, i);
  if (!local.ok) return local;
  i = local.end;
  let address: string;
  if (text[i] === ">") {
    // Only "<Postmaster>" may come without a domain (RFC 5321 §4.1.1.3).
    if (!opts.allowBarePostmaster || local.value.toLowerCase() !== "postmaster") {
      return { ok: false, reason: "the address needs a domain" };
    }
    address = "postmaster";
  } else {
    if (text[i] !== "@") return { ok: false, reason: "expected @ after the local part" };
    const domain = readDomain(text, i + 1);
    if (!domain.ok) return domain;
    i = domain.end;
    if (text[i] !== ">") return { ok: false, reason: "expected > after the address" };
    if (octets(local.value) > MAX_LOCAL_PART) {
      return { ok: false, reason: `the local part is longer than ${MAX_LOCAL_PART} octets` };
    }
    if (octets(domain.value) > MAX_DOMAIN) {
      return { ok: false, reason: `the domain is longer than ${MAX_DOMAIN} octets` };
    }
    address = `${local.value}@${domain.value}`;
  }
  if (octets(address) + 2 > MAX_PATH) {
    return { ok: false, reason: `the path is longer than ${MAX_PATH} octets` };
  }
  return { ok: true, address, utf8: hasNonAscii(address), rest: text.slice(i + 1) };
}

type Read = { ok: true; value: string; end: number } | { ok: false; reason: string };

function readLocalPart(text: string, start: number): Read {
  if (text[start] === '"') {
    // Quoted-string (RFC 5321 §4.1.2): qtextSMTP / quoted-pairSMTP, plus UTF-8 (RFC 6531).
    let i = start + 1;
    while (i < text.length) {
      const c = text.charCodeAt(i);
      if (c === 0x22) return { ok: true, value: text.slice(start, i + 1), end: i + 1 };
      if (c === 0x5c) {
        const n = text.charCodeAt(i + 1);
        if (!(n >= 32 && n <= 126)) return { ok: false, reason: "bad quoted pair" };
        i += 2;
        continue;
      }
      if (c < 32 || c === 127) return { ok: false, reason: "control character in address" };
      i++;
    }
    return { ok: false, reason: "unterminated quoted local part" };
  }
  // Dot-string = Atom *("." Atom)
  let i = start;
  let atomLength = 0;
  for (; i < text.length; i++) {
    const ch = text[i]!;
    if (ch === "@" || ch === ">") break;
    if (ch === ".") {
      if (atomLength === 0) return { ok: false, reason: "misplaced dot in the local part" };
      atomLength = 0;
      continue;
    }
    const cp = text.codePointAt(i)!;
    const whole = String.fromCodePoint(cp);
    if (!ATEXT.test(whole)) return { ok: false, reason: "invalid character in the local part" };
    if (whole.length === 2) i++; // astral character: two UTF-16 units
    atomLength++;
  }
  if (atomLength === 0) return { ok: false, reason: "empty or dot-ended local part" };
  return { ok: true, value: text.slice(start, i), end: i };
}

function readDomain(text: string, start: number): Read {
  if (text[start] === "[") {
    // address-literal (RFC 5321 §4.1.3): dtext between brackets, kept as written.
    const close = text.indexOf("]", start);
    if (close < 0) return { ok: false, reason: "unterminated address literal" };
    const inner = text.slice(start + 1, close);
    if (inner === "" || !/^[\x21-\x5a\x5e-\x7e]+$/.test(inner)) {
      return { ok: false, reason: "bad address literal" };
    }
    return { ok: true, value: text.slice(start, close + 1), end: close + 1 };
  }
  const end = text.indexOf(">", start);
  const raw = end < 0 ? text.slice(start) : text.slice(start, end);
  if (raw === "") return { ok: false, reason: "empty domain" };
  for (const label of raw.split(".")) {
    if (!LABEL.test(label)) return { ok: false, reason: "bad domain name" };
  }
  return { ok: true, value: raw.toLowerCase(), end: start + raw.length };
}
