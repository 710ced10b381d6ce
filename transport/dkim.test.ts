// DKIM signing as mail leaves (RFC 6376), checked by an independent verifier (dkimpy, from
// Debian's python3-dkim, run by the system's python3): the key of the From: domain signs, the
// envelope sender's is the fallback, other mail goes unsigned, a broken key does not hold mail.
import { afterEach, describe, expect, test } from "bun:test";
import { generateKeyPairSync } from "node:crypto";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Metabase } from "../metabase/schema.ts";
import { memoryLogger } from "../log/mod.ts";
import { dkimTxtRecord } from "../cli/dkim.ts";
import { type DkimKey, fromDomain, loadDkimKeys } from "./dkim.ts";
import { type OutboundMessage, SmtpClient } from "./smtp-client.ts";
import {
  type FakeSmtpOptions,
  type FakeSmtpServer,
  fakeSmtpServer,
  testClientSettings,
} from "./testing/fake-smtp.ts";

const log = memoryLogger("dkim");
let servers: FakeSmtpServer[] = [];
afterEach(() => {
  servers.forEach((s) => s.stop());
  servers = [];
});

function key(domain: string, selector = "sel"): DkimKey {
  const { privateKey } = generateKeyPairSync("rsa", { modulusLength: 2048 });
  return {
    domain,
    selector,
    privateKey: privateKey.export({ type: "pkcs8", format: "pem" }) as string,
  };
}

/** The TXT value (no zone syntax) a resolver would answer for the key's selector. */
function txtValue(k: DkimKey): string {
  return dkimTxtRecord(k.domain, k.selector, k.privateKey)
    .replace(/^.*? IN TXT /, "").replace(/"\s*"/g, "").replace(/"/g, "");
}

/** dkimpy's verdict on `raw`, with DNS answered from `keys`. */
async function verify(raw: Uint8Array, keys: DkimKey[]): Promise<boolean> {
  const records = Object.fromEntries(
    keys.map((k) => [`${k.selector}._domainkey.${k.domain}.`, txtValue(k)]),
  );
  const py = `
import dkim, json, sys
records = json.loads(sys.argv[1])
def dns(name, timeout=5):
    v = records.get(name.decode())
    return v.encode() if v else None
print("ok" if dkim.verify(sys.stdin.buffer.read(), dnsfunc=dns) else "bad")
`;
  const p = Bun.spawn(["/usr/bin/python3", "-c", py, JSON.stringify(records)], {
    stdin: raw,
    stdout: "pipe",
    stderr: "pipe",
  });
  const [out, errText] = await Promise.all([
    new Response(p.stdout).text(),
    new Response(p.stderr).text(),
  ]);
  if ((await p.exited) !== 0) throw new Error(`dkimpy failed: ${errText}`);
  return out.trim() === "ok";
}

const bytes = (s: string) => Uint8Array.from(s, (c) => c.charCodeAt(0));

function message(text: string, sender = "alice@here.test", bodyType?: "8BITMIME"): OutboundMessage {
  const data = bytes(text);
  return {
    sender,
    recipients: [{ address: "bob@there.test" }],
    size: data.length,
    bodyType,
    async *body() {
      for (let i = 0; i < data.length; i += 100) yield data.slice(i, i + 100);
    },
  };
}

async function send(opts: FakeSmtpOptions, msg: OutboundMessage, dkim: DkimKey[]) {
  const s = fakeSmtpServer(opts);
  servers.push(s);
  const client = await SmtpClient.connect(
    { host: "127.0.0.1", port: s.port, tls: "none", verifyCertificate: false, auth: null },
    testClientSettings(log, { dkim, sevenBit: { lineBytes: 4096, mimeDepth: 20 } }),
  );
  const [outcome] = await client.send(msg);
  await client.quit();
  return { outcome: outcome!, data: s.messages()[0]?.data };
}

const TEXT = "From: Alice <alice@here.test>\r\nTo: bob@there.test\r\nSubject: signed\r\n" +
  "Date: Sun, 22 Nov 2026 08:00:00 +0000\r\n\r\nHello  there,\r\n\r\n.a line with a dot\r\n\r\n";

describe("DKIM signing", () => {
  test("mail From: a domain with a key leaves signed, and an independent verifier agrees", async () => {
    const here = key("here.test");
    for (const extensions of [["PIPELINING"], ["CHUNKING"]]) {
      const { outcome, data } = await send({ extensions }, message(TEXT), [here]);
      expect(outcome.kind).toBe("sent");
      const text = Buffer.from(data!).toString("latin1");
      expect(text).toStartWith("DKIM-Signature: ");
      expect(text).toContain("d=here.test");
      expect(text).toContain("s=sel");
      expect(await verify(data!, [here])).toBe(true);
      // A changed body no longer verifies: the check is real.
      const tampered = bytes(text.replace("Hello", "Jello"));
      expect(await verify(tampered, [here])).toBe(false);
    }
  });

  test("the From: domain chooses the key; the envelope sender's is the fallback; else unsigned", async () => {
    const here = key("here.test");
    const other = key("other.test", "s2");
    const viaFrom = await send({}, message(TEXT, "bounces@other.test"), [other, here]);
    expect(Buffer.from(viaFrom.data!).toString("latin1")).toContain("d=here.test");
    const noFromKey = TEXT.replace("alice@here.test>", "alice@elsewhere.test>");
    const viaSender = await send({}, message(noFromKey, "x@other.test"), [here, other]);
    expect(Buffer.from(viaSender.data!).toString("latin1")).toContain("d=other.test");
    expect(await verify(viaSender.data!, [other])).toBe(true);
    const none = await send({}, message(noFromKey, "x@nowhere.test"), [here, other]);
    expect(Buffer.from(none.data!).toString("latin1")).toStartWith("From: ");
  });

  test("a message converted to 7 bits is signed as converted, and verifies", async () => {
    const here = key("here.test");
    const eight = TEXT.replace(
      "Subject: signed\r\n",
      "Subject: signed\r\nMIME-Version: 1.0\r\n" +
        "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n",
    )
      .replace("Hello", "Gr\xc3\xbc\xc3\x9f dich");
    const { outcome, data } = await send(
      { extensions: ["PIPELINING"], sevenBitOnly: true },
      message(eight, "alice@here.test", "8BITMIME"),
      [here],
    );
    expect(outcome.kind).toBe("sent");
    expect(Buffer.from(data!).toString("latin1")).toContain("quoted-printable");
    expect(await verify(data!, [here])).toBe(true);
  });

  test("a DSN (null sender, From: MAILER-DAEMON@host) is signed with its host's parent domain key", async () => {
    const here = key("here.test");
    const dsn =
      "From: Mail Delivery System <MAILER-DAEMON@mx1.here.test>\r\nTo: bob@there.test\r\n" +
      "Subject: Undelivered Mail\r\n\r\nSorry.\r\n";
    // RFC 7489 §3.1.1: d=here.test is aligned (relaxed) with a From: of mx1.here.test.
    const { outcome, data } = await send({}, message(dsn, ""), [key("mx1.other.test"), here]);
    expect(outcome.kind).toBe("sent");
    expect(Buffer.from(data!).toString("latin1")).toContain("d=here.test");
    expect(await verify(data!, [here])).toBe(true);
    // An exact key wins over a parent's; the From: domain's parent wins over the sender's.
    const exact = key("mx1.here.test");
    const viaExact = await send({}, message(dsn, ""), [here, exact]);
    expect(Buffer.from(viaExact.data!).toString("latin1")).toContain("d=mx1.here.test");
    const other = key("other.test");
    const viaParent = await send({}, message(dsn, "x@other.test"), [other, here]);
    expect(Buffer.from(viaParent.data!).toString("latin1")).toContain("d=here.test");
  });

  test("a key that cannot sign does not hold the mail: it leaves unsigned, and it is logged", async () => {
    const broken = { domain: "here.test", selector: "sel", privateKey: "not a key" };
    const { outcome, data } = await send({}, message(TEXT), [broken]);
    expect(outcome.kind).toBe("sent");
    expect(Buffer.from(data!).toString("latin1")).toStartWith("From: ");
    expect(log.records.some((r) => r.event === "dkim.sign_failed")).toBe(true);
  });

  test("the SIZE limit counts the signature: a message that fits only unsigned is not sent", async () => {
    const here = key("here.test");
    const msg = message(TEXT);
    // RFC 1870 §6.1: the server's limit holds for what is sent, signature included.
    const { outcome, data } = await send({ extensions: [`SIZE ${msg.size + 10}`] }, msg, [here]);
    expect(outcome.kind).toBe("permanent");
    expect(outcome.status).toBe("5.3.4");
    expect(data).toBeUndefined();
    // With room for the signature it goes, and SIZE= is the signed size.
    const roomy = await send({ extensions: [`SIZE ${msg.size + 2000}`] }, msg, [here]);
    expect(roomy.outcome.kind).toBe("sent");
    expect(await verify(roomy.data!, [here])).toBe(true);
  });

  test("a store read that fails while signing defers the mail: it never leaves unsigned", async () => {
    const here = key("here.test");
    const full = bytes(TEXT);
    let reads = 0;
    const msg: OutboundMessage = {
      ...message(TEXT),
      async *body() {
        // Only the signing pass (the first read: it also picks the key) ends early.
        const cut = ++reads === 1 ? full.length - 5 : full.length;
        for (let i = 0; i < cut; i += 100) yield full.slice(i, Math.min(i + 100, cut));
      },
    };
    const { outcome, data } = await send({}, msg, [here]);
    expect(outcome.kind).toBe("temporary");
    expect(outcome.status).toBe("4.3.0");
    expect(data).toBeUndefined();
  });

  test("fromDomain skips comments and quoted text, takes the first mailbox of a list or group", () => {
    const cases: [string, string | null][] = [
      ["From: user@example.com (Joe <joe@evil.test>)", "example.com"],
      ['From: "Joe <joe@other.test>" <joe@example.com>', "example.com"],
      ["From: joe@example.com (at home@work)", "example.com"],
      ["From: a@example.com, b@other.test", "example.com"],
      ["From: A <a@example.com>, B <b@other.test>", "example.com"],
      ["From: Team: a@example.com, B <b@other.test>;", "example.com"],
      ["From: Nobody:;, c@example.com", "example.com"],
      ['From: "a@b.test"@example.com', "example.com"],
      ['From: "x\\" <y@z.test>" <w@example.com>', "example.com"],
      ["From: =?utf-8?q?J=C3=B6rg?= <j@Example.COM>", "example.com"],
      ["From: (comment (nested) x@evil.test) j@example.com", "example.com"],
      ["From : j@example.com", "example.com"],
      ["From: <@route.test:j@example.com>", "example.com"],
      ["From: j@example.com.", "example.com"],
      ["From: j@B\xc3\xbccher.test", "xn--bcher-kva.test"],
      ["From: Joe <joe>", null],
      ["From: undisclosed-recipients:;", null],
      // A resent message is signed for its resender, the author the SMTP engine checked.
      ["Resent-From: r@example.com", "example.com"],
      ["Resent-From: r@resent.test\r\nFrom: o@example.com", "resent.test"],
    ];
    for (const [field, domain] of cases) {
      expect([field, fromDomain(bytes(`Subject: x\r\n${field}\r\nTo: t@to.test\r\n\r\nb`))])
        .toEqual([field, domain]);
    }
  });

  test("fromDomain reads the first address of From:, folded or with a display name", () => {
    expect(fromDomain(bytes('Subject: x\r\nFrom: "A, B" <a@Ex.Test>\r\n\r\nb'))).toBe("ex.test");
    expect(fromDomain(bytes("From:\r\n a@folded.test\r\n\r\n"))).toBe("folded.test");
    expect(fromDomain(bytes("To: x@y.test\r\n\r\nFrom: z@body.test\r\n"))).toBeNull();
  });
});

describe("DKIM keys from the metabase", () => {
  test("key files are read relative to the data dir, re-read when they change; a bad one is reported", () => {
    const dir = mkdtempSync(join(tmpdir(), "posthorn-dkim-"));
    try {
      const a = key("a.test");
      writeFileSync(join(dir, "a.key"), a.privateKey);
      const mb = Metabase.parse({
        smtp: {
          dkim: [
            { domain: "A.test", selector: "s1", keyFile: "a.key" },
            { domain: "b.test", selector: "s1", keyFile: join(dir, "missing.key") },
          ],
        },
      });
      const errors: string[] = [];
      const keys = loadDkimKeys(mb, dir, (domain) => errors.push(domain));
      expect(keys).toEqual([{ domain: "a.test", selector: "s1", privateKey: a.privateKey }]);
      expect(errors).toEqual(["b.test"]);
      const renewed = key("a.test");
      writeFileSync(join(dir, "a.key"), renewed.privateKey + "\n");
      expect(loadDkimKeys(mb, dir, () => {})[0]!.privateKey).toBe(renewed.privateKey + "\n");
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
