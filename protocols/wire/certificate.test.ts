import { afterAll, describe, expect, test } from "bun:test";
import { X509Certificate } from "node:crypto";
import { mkdtempSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import * as tls from "node:tls";
import { ensureSelfSignedCertificate, SELF_SIGNED_KEY_FILE } from "./certificate.ts";
import { oid, smallInteger, time, unsignedInteger } from "./der.ts";

const dir = mkdtempSync(join(tmpdir(), "posthorn-cert-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe("DER writer", () => {
  test("known encodings", () => {
    expect(Buffer.from(oid("1.2.840.10045.4.3.2")).toString("hex")).toBe("06082a8648ce3d040302");
    expect(Buffer.from(smallInteger(2)).toString("hex")).toBe("020102");
    expect(Buffer.from(unsignedInteger(new Uint8Array([0x80]))).toString("hex")).toBe("02020080");
    expect(Buffer.from(time(new Date(Date.UTC(2030, 0, 2, 3, 4, 5)))).toString()).toContain(
      "300102030405Z",
    );
    expect(time(new Date(Date.UTC(2050, 0, 1)))[0]).toBe(0x18); // GeneralizedTime
  });
});

describe("ensureSelfSignedCertificate", () => {
  test("generates a valid certificate once and reuses it", async () => {
    const first = await ensureSelfSignedCertificate(dir, "mail.example.test");
    const x = new X509Certificate(first.cert);
    expect(x.verify(x.publicKey)).toBe(true); // self-signed signature checks out
    expect(x.checkHost("mail.example.test")).toBe("mail.example.test");
    expect(x.checkHost("localhost")).toBe("localhost");
    expect(x.checkIP("127.0.0.1")).toBe("127.0.0.1");
    expect(statSync(join(dir, SELF_SIGNED_KEY_FILE)).mode & 0o777).toBe(0o600);
    const again = await ensureSelfSignedCertificate(dir, "mail.example.test");
    expect(again).toEqual(first);
    // A new hostname the old certificate does not cover gets a new one.
    const other = await ensureSelfSignedCertificate(dir, "other.example.test");
    expect(other.cert).not.toBe(first.cert);
    expect(new X509Certificate(other.cert).checkHost("other.example.test")).toBeTruthy();
  });

  test("Bun.listen serves it and a Node TLS client verifies it as its CA", async () => {
    const m = await ensureSelfSignedCertificate(dir, "mail.example.test");
    const server = Bun.listen({
      hostname: "127.0.0.1",
      port: 0,
      tls: { key: m.key, cert: m.cert },
      socket: {
        data(s, d) {
          s.write(`echo ${d.toString()}`);
        },
      },
    });
    try {
      for (const servername of ["localhost", "mail.example.test"]) {
        const reply = await new Promise<string>((resolve, reject) => {
          const c = tls.connect(
            { host: "127.0.0.1", port: server.port, ca: m.cert, servername },
            () => c.write("hi"),
          );
          c.on("data", (d) => {
            resolve(d.toString());
            c.end();
          });
          c.on("error", reject);
        });
        expect(reply).toBe("echo hi");
      }
    } finally {
      server.stop(true);
    }
  });
});
