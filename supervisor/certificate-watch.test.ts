// The certificate watch: a pair that did not load is tried again at the next checks (a file
// fixed without a new mtime, say a permission, is still picked up); and only whole, matching
// pairs are read.
import { afterAll, expect, test } from "bun:test";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { generateSelfSigned } from "../protocols/wire/mod.ts";
import { eventually } from "../tests/helpers.ts";
import { CertificateWatch, readCertificatePair } from "./certificate-watch.ts";

const dir = mkdtempSync(join(tmpdir(), "posthorn-certwatch-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const certFile = join(dir, "cert.pem");
const keyFile = join(dir, "key.pem");
const first = generateSelfSigned("a.example.test");
const second = generateSelfSigned("b.example.test");

test("only a whole certificate with its own key is read", () => {
  writeFileSync(certFile, first.cert + second.cert); // a chain is fine
  writeFileSync(keyFile, first.key);
  expect(readCertificatePair(certFile, keyFile).key).toBe(first.key);
  for (
    const [cert, key] of [
      [first.cert.slice(0, 300), first.key], // caught mid-write
      ["", first.key], // truncated before the write
      [first.cert, second.key], // a key that is not the certificate's
      [first.cert, first.key.slice(0, 200)],
    ]
  ) {
    writeFileSync(certFile, cert!);
    writeFileSync(keyFile, key!);
    expect(() => readCertificatePair(certFile, keyFile)).toThrow(/not a usable certificate/);
  }
});

test("a change that failed to apply is tried again until it applies, then left alone", async () => {
  writeFileSync(certFile, first.cert);
  writeFileSync(keyFile, first.key);
  const answers = [false, false, true];
  let calls = 0;
  const watch = new CertificateWatch([certFile, keyFile], 20, () => answers[calls++] ?? true);
  try {
    writeFileSync(certFile, second.cert);
    writeFileSync(keyFile, second.key);
    await eventually(() => calls >= 3); // no further change on disk: retried all the same
    await Bun.sleep(100);
    expect(calls).toBe(3); // applied: not called again for the same files
  } finally {
    watch.close();
  }
});
