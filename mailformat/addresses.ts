// Author addresses of a message (RFC 5322 §3.4, §3.6.2, §3.6.6), read the one way both the
// SMTP engine (an authenticated client may only name itself) and the transport (the DKIM key
// of the author's domain) read them, so the two can never disagree about who the author is.
// Comments and quoted strings count as wholes: an "@" or "<" inside them names nobody.
import { domainToASCII } from "node:url";

/**
 * The author field's mailboxes, each as its addr-spec's tokens: of the topmost Resent-From:
 * when the message was resent (§3.6.6: a client's "redirect"), else of From:. [] when there is
 * no such field; null when the header section does not end within `head` (unless `whole`: the
 * bytes are all of the message, which may be header fields only, §3.5).
 */
export function authorMailboxes(head: Uint8Array, whole = false): string[][] | null {
  const text = Buffer.from(head).toString("latin1");
  let end = text.search(/\r?\n\r?\n/);
  if (end < 0) {
    if (!whole) return null;
    end = text.length;
  }
  // §2.2.3: unfold; one field per line.
  const fields = text.slice(0, end).replace(/\r?\n[ \t]+/g, " ").split(/\r?\n/);
  // §4.5: the obsolete syntax allows white space before the colon.
  const value = (name: string) => {
    const re = new RegExp(`^${name}[ \\t]*:(.*)$`, "i");
    for (const f of fields) {
      const m = re.exec(f);
      if (m) return m[1]!;
    }
    return null;
  };
  const field = value("resent-from") ?? value("from");
  return field === null ? [] : mailboxes(field);
}

/** Every mailbox of an address-list (§3.4, with §3.4 groups and §4.4 obs-route). */
export function mailboxes(value: string): string[][] {
  const tokens = addressTokens(value);
  const out: string[][] = [];
  let current: string[] = [];
  for (let i = 0; i < tokens.length; i++) {
    const t = tokens[i]!;
    if (t === "<") {
      // §3.4 angle-addr; §4.4 obs-route ("@a,@b:") comes before the addr-spec. What came
      // before the "<" was the display name.
      const close = tokens.indexOf(">", i);
      const inner = tokens.slice(i + 1, close < 0 ? tokens.length : close);
      const colon = inner.lastIndexOf(":");
      out.push(colon < 0 ? inner : inner.slice(colon + 1));
      current = [];
      i = close < 0 ? tokens.length : close;
      continue;
    }
    if (t === "," || t === ";" || t === ":") {
      // The end of a bare addr-spec, or of a group's display name (no mailbox).
      if (t !== ":" && current.includes("@")) out.push(current);
      current = [];
      continue;
    }
    current.push(t);
  }
  if (current.includes("@")) out.push(current);
  return out;
}

/** An addr-spec's tokens as one address, lower case ("Alice@Example.COM" → alice@example.com). */
export function addrSpecText(addrSpec: string[]): string {
  return addrSpec.join("").toLowerCase();
}

/**
 * An address field's tokens (RFC 5322 §3.2): specials alone, a quoted string or a domain
 * literal as one token (quoted, so never taken for a special), atoms (dots included) joined;
 * comments and white space dropped.
 */
function addressTokens(value: string): string[] {
  const tokens: string[] = [];
  let i = 0;
  while (i < value.length) {
    const c = value[i]!;
    if (c === " " || c === "\t" || c === "\r" || c === "\n") {
      i++;
    } else if (c === "(") {
      // RFC 5322 §3.2.2: comments nest, and a backslash quotes the next character.
      let depth = 0;
      for (; i < value.length; i++) {
        const d = value[i]!;
        if (d === "\\") i++;
        else if (d === "(") depth++;
        else if (d === ")" && --depth === 0) break;
      }
      i++;
    } else if (c === '"' || c === "[") {
      // RFC 5322 §3.2.4 quoted-string, §3.4.1 domain-literal.
      const close = c === '"' ? '"' : "]";
      let j = i + 1;
      for (; j < value.length && value[j] !== close; j++) if (value[j] === "\\") j++;
      tokens.push(value.slice(i, j + 1));
      i = j + 1;
    } else if ("<>,;:@".includes(c)) {
      tokens.push(c);
      i++;
    } else {
      let j = i;
      while (j < value.length && !' \t\r\n()"[<>,;:@'.includes(value[j]!)) j++;
      tokens.push(value.slice(i, j));
      i = j;
    }
  }
  return tokens;
}

/** The domain of an addr-spec's tokens (after its last "@"), lower case, as an A-label. */
export function addrSpecDomain(addrSpec: string[]): string | null {
  const at = addrSpec.lastIndexOf("@");
  if (at < 0) return null;
  // RFC 5322 §4.4: obs-domain may have white space (or comments) between its atoms.
  let domain = addrSpec.slice(at + 1).join("").replace(/\.$/, "");
  if (domain === "" || domain.startsWith("[")) return null;
  // RFC 6532: a UTF-8 domain; the keys are configured as A-labels (RFC 5890).
  if (/[^\x00-\x7f]/.test(domain)) domain = domainToASCII(Buffer.from(domain, "latin1").toString());
  return domain === "" ? null : domain.toLowerCase();
}
