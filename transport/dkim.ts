// DKIM signing of outbound mail (RFC 6376), so receivers (and DMARC, RFC 7489) can tell the
// mail really comes from its domain. The signature itself is mailauth's (relaxed/relaxed,
// rsa-sha256 or ed25519-sha256 from the key type); this module chooses the key, reads key
// files (cached until they change), and turns a message stream into its DKIM-Signature field.
// The key is the one of the From: domain (DMARC alignment), else of the envelope sender's.
import { readFileSync, statSync } from "node:fs";
import { isAbsolute, resolve } from "node:path";
import { Readable } from "node:stream";
import { domainToASCII } from "node:url";
import type { DKIMSignOptions } from "mailauth";
import { dkimSign } from "mailauth/lib/dkim/sign";
import type { Metabase } from "../metabase/schema.ts";

export interface DkimKey {
  domain: string;
  selector: string;
  privateKey: string;
}

/** The header is read at most this far to find From: (its domain picks the key). */
const HEAD_BYTES = 64 * 1024;

const cache = new Map<string, { stamp: string; pem: string }>();

/**
 * The configured keys (smtp.dkim), their files read (relative paths from the data dir) and
 * cached until a file changes. A key file that cannot be read is left out and reported.
 */
export function loadDkimKeys(
  mb: Metabase,
  dataDir: string,
  onError: (domain: string, file: string, err: Error) => void,
): DkimKey[] {
  const keys: DkimKey[] = [];
  for (const k of mb.smtp.dkim) {
    const file = isAbsolute(k.keyFile) ? k.keyFile : resolve(dataDir, k.keyFile);
    try {
      const s = statSync(file);
      const stamp = `${s.ino}:${s.size}:${s.mtimeMs}`;
      let hit = cache.get(file);
      if (!hit || hit.stamp !== stamp) {
        cache.set(file, hit = { stamp, pem: readFileSync(file, "utf8") });
      }
      keys.push({ domain: k.domain.toLowerCase(), selector: k.selector, privateKey: hit.pem });
    } catch (err) {
      onError(k.domain, file, err as Error);
    }
  }
  return keys;
}

/**
 * The domain of the first mailbox in the message's From: field, or null. The field is read
 * as RFC 5322 §3.4 has it (and RFC 6854's groups): comments and quoted strings are skipped
 * as wholes, so an "@" or "<" inside them never picks the domain.
 */
export function fromDomain(head: Uint8Array): string | null {
  const text = Buffer.from(head).toString("latin1");
  const end = text.search(/\r?\n\r?\n/);
  // RFC 5322 §2.2.3: unfold.
  const header = (end < 0 ? text : text.slice(0, end)).replace(/\r?\n[ \t]+/g, " ");
  // RFC 5322 §4.5: the obsolete syntax allows white space before the colon.
  const line = /^from[ \t]*:(.*)$/im.exec(header);
  if (!line) return null;
  const tokens = addressTokens(line[1]!);
  let mailbox: string[] = [];
  for (let i = 0; i < tokens.length; i++) {
    const t = tokens[i]!;
    if (t === "<") {
      // RFC 5322 §3.4 angle-addr; §4.4 obs-route ("@a,@b:") comes before the addr-spec.
      const close = tokens.indexOf(">", i);
      const inner = tokens.slice(i + 1, close < 0 ? tokens.length : close);
      const colon = inner.lastIndexOf(":");
      return domainOf(colon < 0 ? inner : inner.slice(colon + 1));
    }
    if (t === "," || t === ";" || t === ":") {
      // The end of a bare addr-spec (or of a group's display name, which is no mailbox).
      const domain = t === ":" ? null : domainOf(mailbox);
      if (domain) return domain;
      mailbox = [];
      continue;
    }
    mailbox.push(t);
  }
  return domainOf(mailbox);
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
function domainOf(addrSpec: string[]): string | null {
  const at = addrSpec.lastIndexOf("@");
  if (at < 0) return null;
  // RFC 5322 §4.4: obs-domain may have white space (or comments) between its atoms.
  let domain = addrSpec.slice(at + 1).join("").replace(/\.$/, "");
  if (domain === "" || domain.startsWith("[")) return null;
  // RFC 6532: a UTF-8 domain; the keys are configured as A-labels (RFC 5890).
  if (/[^\x00-\x7f]/.test(domain)) domain = domainToASCII(Buffer.from(domain, "latin1").toString());
  return domain === "" ? null : domain.toLowerCase();
}

/**
 * The key for a message: its From: domain's, else a parent domain's of it (relaxed alignment,
 * RFC 7489 §3.1.1: a DSN From: MAILER-DAEMON@mx1.example.com is aligned with d=example.com),
 * else its envelope sender's domain's (or a parent's); null: not signed. A null sender ("",
 * DSNs) has no domain.
 */
export async function chooseDkimKey(
  keys: DkimKey[],
  body: AsyncIterable<Uint8Array>,
  sender: string,
): Promise<DkimKey | null> {
  if (keys.length === 0) return null;
  const parts: Uint8Array[] = [];
  let n = 0;
  for await (const chunk of body) {
    parts.push(chunk);
    n += chunk.length;
    // Leaving the loop ends the read: only the header is needed here.
    if (n >= HEAD_BYTES || Buffer.concat(parts).includes("\r\n\r\n")) break;
  }
  const at = sender.lastIndexOf("@");
  const domains = [fromDomain(Buffer.concat(parts)), at < 0 ? null : sender.slice(at + 1)];
  for (const d of domains) {
    // The domain itself first, then each parent, nearest first (never the root).
    for (
      let name = d?.toLowerCase() ?? "";
      name.includes(".");
      name = name.slice(name.indexOf(".") + 1)
    ) {
      const key = keys.find((k) => k.domain === name);
      if (key) return key;
    }
  }
  return null;
}

/** The DKIM-Signature field (with its CRLF) to put in front of `body`; throws if it cannot. */
export async function dkimSignatureFor(
  body: AsyncIterable<Uint8Array>,
  key: DkimKey,
  now = new Date(),
): Promise<Uint8Array> {
  const result = await dkimSign(Readable.from(body), {
    canonicalization: "relaxed/relaxed",
    signTime: now,
    signatureData: [{
      signingDomain: key.domain,
      selector: key.selector,
      privateKey: key.privateKey,
    }],
  } as DKIMSignOptions);
  if (!result.signatures) {
    const why = result.errors?.map((e) => e.err?.message ?? "error").join("; ") || "no signature";
    throw new Error(`DKIM signing for ${key.domain} failed: ${why}`);
  }
  return Buffer.from(result.signatures, "latin1");
}
