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

/** The domain of the first address in the message's From: field, or null. */
export function fromDomain(head: Uint8Array): string | null {
  const text = Buffer.from(head).toString("latin1");
  const end = text.search(/\r?\n\r?\n/);
  const header = (end < 0 ? text : text.slice(0, end)).replace(/\r?\n[ \t]+/g, " ");
  const line = /^from:(.*)$/im.exec(header);
  if (!line) return null;
  // The address is in <…> when a display name comes first, else the field is the address.
  const value = line[1]!;
  const angle = /<([^>]*)>/.exec(value);
  const address = (angle ? angle[1]! : value).trim();
  const at = address.lastIndexOf("@");
  if (at < 0) return null;
  const domain = address.slice(at + 1).replace(/[\s>,;].*$/, "").toLowerCase();
  return domain === "" ? null : domain;
}

/** The key for a message: its From: domain's, else its envelope sender's; null: not signed. */
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
  const domains = [fromDomain(Buffer.concat(parts)), sender.slice(sender.lastIndexOf("@") + 1)];
  for (const d of domains) {
    const key = d ? keys.find((k) => k.domain === d.toLowerCase()) : undefined;
    if (key) return key;
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
