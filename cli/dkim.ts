// `posthorn dkim`: make a DKIM key for a domain (RFC 6376), record it in the metabase, and
// print the DNS TXT record that publishes it; list the keys with their records.
import { createPrivateKey, createPublicKey, generateKeyPairSync } from "node:crypto";
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { isAbsolute, join, resolve } from "node:path";
import { editMetabase, resolvePaths } from "../metabase/mod.ts";
import {
  type Command,
  DEFAULT_METABASE,
  err,
  METABASE_HELP,
  openMetabase,
  out,
  parse,
  UsageError,
} from "./common.ts";

/** The TXT record publishing a private key's public half (RFC 6376 §3.6.1), in strings of at
 * most 255 octets (RFC 1035 §3.3.14), as a zone file line. */
export function dkimTxtRecord(domain: string, selector: string, privatePem: string): string {
  const pub = createPublicKey(createPrivateKey(privatePem));
  const type = pub.asymmetricKeyType === "ed25519" ? "ed25519" : "rsa";
  const der = pub.export({ type: "spki", format: "der" });
  // Ed25519 keys are published as the bare 32-byte key (RFC 8463 §4), RSA as the SPKI.
  const p = (type === "ed25519" ? der.subarray(der.length - 32) : der).toString("base64");
  const value = `v=DKIM1; k=${type}; p=${p}`;
  const strings = value.match(/.{1,255}/g)!.map((s) => `"${s}"`).join(" ");
  return `${selector}._domainkey.${domain}. IN TXT ${strings}`;
}

export const dkim: Command = {
  name: "dkim",
  summary: "make a DKIM signing key for a domain; list keys and their DNS records",
  help: `Usage: posthorn dkim keygen DOMAIN [--selector S] [--type rsa|ed25519] | list

keygen writes a private key under the data dir (dkim/DOMAIN.SELECTOR.key, mode 0600), adds it to
smtp.dkim in the metabase (a running server signs with it at once) and prints the TXT record to
publish. Mail leaving for a remote host is signed with the key of its From: domain.
  --selector S       the selector (default: posthorn)
  --type T           rsa (2048 bits, the default: every receiver verifies it) or ed25519
${METABASE_HELP}`,
  async run(argv) {
    const { values, positionals } = parse(argv, {
      selector: { type: "string" },
      type: { type: "string" },
    });
    const [verb, name] = positionals;
    const file = values.metabase ?? DEFAULT_METABASE;
    const { metabase, paths } = openMetabase(file);
    const keyPath = (p: string) => isAbsolute(p) ? p : resolve(paths.dataDir, p);
    if (verb === "list") {
      let failed = 0;
      for (const k of metabase.smtp.dkim) {
        try {
          out(dkimTxtRecord(k.domain, k.selector, readFileSync(keyPath(k.keyFile), "utf8")));
        } catch (e) {
          failed++;
          err(
            `${k.selector}._domainkey.${k.domain}: cannot read ${k.keyFile}: ${
              (e as Error).message
            }`,
          );
        }
      }
      return failed > 0 ? 1 : 0;
    }
    if (verb !== "keygen") throw new UsageError("expected keygen DOMAIN | list");
    if (!name || !/^[a-z0-9.-]+$/i.test(name)) throw new UsageError("expected keygen DOMAIN");
    const domain = name.toLowerCase().replace(/\.$/, "");
    const selector = values.selector ?? "posthorn";
    if (!/^[A-Za-z0-9][A-Za-z0-9._-]*$/.test(selector)) throw new UsageError("bad --selector");
    const type = values.type ?? "rsa";
    if (type !== "rsa" && type !== "ed25519") throw new UsageError("--type: rsa or ed25519");
    if (metabase.smtp.dkim.some((k) => k.domain === domain && k.selector === selector)) {
      err(`${selector}._domainkey.${domain} already has a key (posthorn dkim list)`);
      return 1;
    }
    const relative = join("dkim", `${domain}.${selector}.key`);
    const target = resolve(resolvePaths(paths.file, metabase).dataDir, relative);
    if (existsSync(target)) {
      err(`${target} exists: remove it or choose another --selector`);
      return 1;
    }
    const { privateKey } = type === "rsa"
      ? generateKeyPairSync("rsa", { modulusLength: 2048 })
      : generateKeyPairSync("ed25519");
    const pem = privateKey.export({ type: "pkcs8", format: "pem" }) as string;
    mkdirSync(join(paths.dataDir, "dkim"), { recursive: true, mode: 0o700 });
    writeFileSync(target, pem, { mode: 0o600, flag: "wx" });
    editMetabase(file, (raw) => {
      raw.smtp ??= {};
      raw.smtp.dkim ??= [];
      raw.smtp.dkim.push({ domain, selector, keyFile: relative });
    });
    out(`wrote ${target}; mail from ${domain} is now signed (d=${domain}, s=${selector}).`);
    out("Publish this record in the domain's DNS:");
    out(dkimTxtRecord(domain, selector, pem));
    return 0;
  },
};
