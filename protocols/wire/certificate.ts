// The self-signed certificate a fresh server uses when the metabase names none: generated once
// into the data dir with node:crypto (ECDSA P-256) and a hand-built X.509 v3 DER (RFC 5280),
// then reused on every start until it expires or stops covering the hostname.
import {
  createPrivateKey,
  generateKeyPairSync,
  randomBytes,
  sign,
  X509Certificate,
} from "node:crypto";
import { chmod, mkdir, readFile, rename, writeFile } from "node:fs/promises";
import { isIP } from "node:net";
import { join } from "node:path";
import type { TlsMaterial } from "../engine.ts";
import {
  bitString,
  boolean,
  explicit,
  implicitPrimitive,
  octetString,
  oid,
  sequence,
  set,
  smallInteger,
  time,
  unsignedInteger,
  utf8String,
} from "./der.ts";

export const SELF_SIGNED_CERT_FILE = "self-signed.cert.pem";
export const SELF_SIGNED_KEY_FILE = "self-signed.key.pem";
/** Kept under the 825 days Apple clients accept for a (manually trusted) server certificate. */
const VALIDITY_DAYS = 820;
const DAY_MS = 86_400_000;

const OID = {
  ecdsaWithSha256: "1.2.840.10045.4.3.2",
  commonName: "2.5.4.3",
  subjectAltName: "2.5.29.17",
  basicConstraints: "2.5.29.19",
  keyUsage: "2.5.29.15",
  extKeyUsage: "2.5.29.37",
  serverAuth: "1.3.6.1.5.5.7.3.1",
};

/**
 * Returns the PEM pair in `dir`, generating it on first use, or again when the stored one has
 * expired (or expires within a day), does not parse, or does not name `hostname`.
 */
export async function ensureSelfSignedCertificate(
  dir: string,
  hostname: string,
): Promise<TlsMaterial> {
  const certPath = join(dir, SELF_SIGNED_CERT_FILE);
  const keyPath = join(dir, SELF_SIGNED_KEY_FILE);
  try {
    const [cert, key] = await Promise.all([
      readFile(certPath, "utf8"),
      readFile(keyPath, "utf8"),
    ]);
    const x509 = new X509Certificate(cert);
    const fresh = Date.parse(x509.validTo) > Date.now() + DAY_MS;
    const names = isIP(hostname) ? x509.checkIP(hostname) : x509.checkHost(hostname);
    if (fresh && names !== undefined && x509.checkPrivateKey(createPrivateKey(key))) {
      return { cert, key };
    }
  } catch { /* missing or unreadable: generate below */ }
  const material = generateSelfSigned(hostname);
  await mkdir(dir, { recursive: true });
  // Write-then-rename so a crash never leaves half a key; the key is readable by us only.
  const tmpKey = `${keyPath}.${process.pid}.tmp`;
  const tmpCert = `${certPath}.${process.pid}.tmp`;
  await writeFile(tmpKey, material.key, { mode: 0o600 });
  await chmod(tmpKey, 0o600);
  await writeFile(tmpCert, material.cert);
  await rename(tmpKey, keyPath);
  await rename(tmpCert, certPath);
  return material;
}

/** Builds a fresh key pair and a self-signed certificate naming hostname, localhost, 127.0.0.1. */
export function generateSelfSigned(hostname: string, now = new Date()): TlsMaterial {
  const { publicKey, privateKey } = generateKeyPairSync("ec", { namedCurve: "prime256v1" });
  const spki = new Uint8Array(publicKey.export({ type: "spki", format: "der" }));
  const algorithm = sequence(oid(OID.ecdsaWithSha256)); // RFC 5758 §3.2: parameters absent
  const name = sequence(set(sequence(oid(OID.commonName), utf8String(hostname))));
  const serial = new Uint8Array(randomBytes(16));
  serial[0]! &= 0x7f; // RFC 5280 §4.1.2.2: a positive integer of at most 20 octets

  const altNames: Uint8Array[] = [];
  const seen = new Set<string>();
  for (const n of [hostname, "localhost", "127.0.0.1", "::1"]) {
    const key = n.toLowerCase();
    if (seen.has(key)) continue;
    seen.add(key);
    const kind = isIP(n);
    if (kind === 4) altNames.push(implicitPrimitive(7, ipv4Bytes(n))); // iPAddress [7]
    else if (kind === 6) altNames.push(implicitPrimitive(7, ipv6Bytes(n)));
    else altNames.push(implicitPrimitive(2, new TextEncoder().encode(n))); // dNSName [2]
  }
  const extensions = sequence(
    // RFC 5280 §4.2.1.6 subjectAltName: what TLS clients check the host against.
    sequence(oid(OID.subjectAltName), octetString(sequence(...altNames))),
    // §4.2.1.9 basicConstraints: an end-entity certificate (cA defaults to FALSE).
    sequence(oid(OID.basicConstraints), boolean(true), octetString(sequence())),
    // §4.2.1.3 keyUsage: digitalSignature (bit 0), all ECDHE/ECDSA needs.
    sequence(
      oid(OID.keyUsage),
      boolean(true),
      octetString(new Uint8Array([0x03, 0x02, 0x07, 0x80])),
    ),
    // §4.2.1.12 extKeyUsage: id-kp-serverAuth.
    sequence(oid(OID.extKeyUsage), octetString(sequence(oid(OID.serverAuth)))),
  );
  const tbs = sequence(
    explicit(0, smallInteger(2)), // version v3
    unsignedInteger(serial),
    algorithm,
    name, // issuer = subject: self-signed
    sequence(
      time(new Date(now.getTime() - DAY_MS)),
      time(new Date(now.getTime() + VALIDITY_DAYS * DAY_MS)),
    ),
    name,
    spki,
    explicit(3, extensions),
  );
  const signature = new Uint8Array(sign("sha256", tbs, privateKey)); // DER ECDSA-Sig-Value
  const der = sequence(tbs, algorithm, bitString(signature));
  return {
    cert: pem("CERTIFICATE", der),
    key: privateKey.export({ type: "pkcs8", format: "pem" }).toString(),
  };
}

function pem(label: string, der: Uint8Array): string {
  const b64 = Buffer.from(der).toString("base64").replace(/.{1,64}/g, "$&\n");
  return `-----BEGIN ${label}-----\n${b64}-----END ${label}-----\n`;
}

function ipv4Bytes(ip: string): Uint8Array {
  return new Uint8Array(ip.split(".").map(Number));
}

function ipv6Bytes(ip: string): Uint8Array {
  const [head, tail] = ip.includes("::") ? ip.split("::") as [string, string] : [ip, ""];
  const h = head ? head.split(":") : [];
  const t = tail ? tail.split(":") : [];
  const groups = [...h, ...Array(8 - h.length - t.length).fill("0"), ...t];
  const out = new Uint8Array(16);
  groups.forEach((g, i) => {
    const v = parseInt(g, 16);
    out[i * 2] = v >> 8;
    out[i * 2 + 1] = v & 0xff;
  });
  return out;
}
