// DKIM signing of outbound mail (RFC 6376), so receivers (and DMARC, RFC 7489) can tell the
// mail really comes from its domain. The signature itself is mailauth's (relaxed/relaxed,
// rsa-sha256 or ed25519-sha256 from the key type); this module chooses the key, reads key
// files (cached until they change), and turns a message stream into its DKIM-Signature field.
// The key is the one of the From: domain (DMARC alignment), else of the envelope sender's.
import { readFileSync, statSync } from "node:fs";
import { isAbsolute, resolve } from "node:path";
import { Readable } from "node:stream";
import type { DKIMSignOptions } from "mailauth";
import { dkimSign } from "mailauth/lib/dkim/sign";
import type { Metabase } from "../metabase/schema.ts";
import { addrSpecDomain, authorMailboxes } from "../mailformat/addresses.ts";

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

/** The domain of the author's first mailbox (the topmost Resent-From: of a resent message,
 * else From:), or null: the author the SMTP engine checked (../mailformat/addresses.ts). */
export function fromDomain(head: Uint8Array): string | null {
  const first = authorMailboxes(head, true)?.[0];
  return first ? addrSpecDomain(first) : null;
}

/**
 * The DKIM-Signature field (with its CRLF) to put in front of `body`, or null when no key fits.
 * The key is its author's domain's (fromDomain), else a parent domain's of it (relaxed
 * alignment, RFC 7489 §3.1.1: a DSN From: MAILER-DAEMON@mx1.example.com is aligned with
 * d=example.com), else its envelope sender's domain's (or a parent's); a null sender ("",
 * DSNs) has no domain. One read of `body`: the header chosen from is the start of what is
 * signed. Throws if signing fails, or if `body` does.
 */
export async function dkimSignature(
  keys: DkimKey[],
  body: AsyncIterable<Uint8Array>,
  sender: string,
  now = new Date(),
): Promise<Uint8Array | null> {
  if (keys.length === 0) return null;
  const it = body[Symbol.asyncIterator]();
  const head: Uint8Array[] = [];
  let n = 0;
  while (n < HEAD_BYTES && !Buffer.concat(head).includes("\r\n\r\n")) {
    const r = await it.next();
    if (r.done) break;
    head.push(r.value);
    n += r.value.length;
  }
  const key = keyFor(keys, fromDomain(Buffer.concat(head)), sender);
  if (!key) {
    await it.return?.(); // only the header was needed
    return null;
  }
  async function* whole(): AsyncGenerator<Uint8Array> {
    yield* head;
    for (let r = await it.next(); !r.done; r = await it.next()) yield r.value;
  }
  const result = await dkimSign(Readable.from(whole()), {
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

function keyFor(keys: DkimKey[], author: string | null, sender: string): DkimKey | null {
  const at = sender.lastIndexOf("@");
  for (const d of [author, at < 0 ? null : sender.slice(at + 1)]) {
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
