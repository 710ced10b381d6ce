// End to end: a message received with BODY=8BITMIME leaves through the transport's SMTP client
// (and the queue runner) to fake next hops with and without 8BITMIME (RFC 6152 §3).
import { afterEach, describe, expect, test } from "bun:test";
import { memoryLogger } from "../log/mod.ts";
import { Metabase } from "../metabase/schema.ts";
import { QueueRunner } from "./runner.ts";
import { type OutboundMessage, SmtpClient } from "./smtp-client.ts";
import {
  type FakeSmtpOptions,
  type FakeSmtpServer,
  fakeSmtpServer,
  testClientSettings,
} from "./testing/fake-smtp.ts";
import { MemoryStore } from "./testing/memory-store.ts";
import { parseMime, qpDecode, sevenBitProblem } from "./testing/mime-check.ts";

const bytes = (s: string) => Uint8Array.from(s, (c) => c.charCodeAt(0));
const text = (b: Uint8Array) => Buffer.from(b).toString("latin1");

let servers: FakeSmtpServer[] = [];
afterEach(() => {
  servers.forEach((s) => s.stop());
  servers = [];
});
function server(opts: FakeSmtpOptions): FakeSmtpServer {
  const s = fakeSmtpServer(opts);
  servers.push(s);
  return s;
}

const log = memoryLogger("client");
const settings = testClientSettings(log, { sevenBit: { lineBytes: 4096, mimeDepth: 20 } });

const EIGHT_BIT = [
  "From: alice@here.test",
  "Subject: menu",
  "MIME-Version: 1.0",
  'Content-Type: multipart/mixed; boundary="m"',
  "",
  "--m",
  "Content-Type: text/plain; charset=utf-8",
  "Content-Transfer-Encoding: 8bit",
  "",
  "Cr\xc3\xa8me br\xc3\xbbl\xc3\xa9e = 5 \xe2\x82\xac",
  ".a line with a dot",
  "--m",
  "Content-Type: application/pdf",
  "Content-Transfer-Encoding: base64",
  "",
  "JVBERi0xLjQK",
  "--m--",
  "",
].join("\r\n");

function message(body: string, over: Partial<OutboundMessage> = {}) {
  const data = bytes(body);
  const reads = { count: 0 };
  const msg: OutboundMessage = {
    sender: "alice@here.test",
    recipients: [{ address: "bob@there.test" }],
    size: data.length,
    bodyType: "8BITMIME",
    async *body() {
      reads.count++;
      for (let i = 0; i < data.length; i += 7) yield data.slice(i, i + 7);
    },
    ...over,
  };
  return { msg, reads };
}

async function sendTo(s: FakeSmtpServer, msg: OutboundMessage) {
  const client = await SmtpClient.connect(
    { host: "127.0.0.1", port: s.port, tls: "none", verifyCertificate: false, auth: null },
    settings,
  );
  const out = await client.send(msg);
  await client.quit();
  return out;
}

function checkConverted(data: Uint8Array) {
  expect(sevenBitProblem(data)).toBeNull();
  const conv = parseMime(data);
  const orig = parseMime(bytes(EIGHT_BIT));
  expect(conv.children.length).toBe(2);
  expect(conv.children[0]!.cte).toBe("quoted-printable");
  expect(qpDecode(conv.children[0]!.body)).toEqual(orig.children[0]!.body);
  expect(conv.children[1]!.body).toEqual(orig.children[1]!.body);
}

describe("8BITMIME message to a 7-bit next hop", () => {
  test("DATA: the hop gets 7-bit MIME, no BODY=, SIZE= exactly what is sent", async () => {
    const s = server({
      extensions: ["PIPELINING", "SIZE 1000000", "ENHANCEDSTATUSCODES"],
      sevenBitOnly: true,
    });
    const { msg, reads } = message(EIGHT_BIT);
    const [o] = await sendTo(s, msg);
    expect([o!.kind, o!.status]).toEqual(["sent", "2.0.0"]);
    expect(reads.count).toBe(2); // the scan, then the conversion
    const [m] = s.messages();
    expect(m!.via).toBe("DATA");
    checkConverted(m!.data);
    expect(m!.mail).toBe(`MAIL FROM:<alice@here.test> SIZE=${m!.data.length}`);
    const line = log.records.find((r) => r.event === "downgraded_7bit");
    expect(line).toMatchObject({ parts: 1, bytesIn: msg.size, bytesOut: m!.data.length });
  });

  test("BDAT: the same conversion through CHUNKING", async () => {
    const s = server({ extensions: ["CHUNKING", "SIZE 1000000"], sevenBitOnly: true });
    const [o] = await sendTo(s, message(EIGHT_BIT).msg);
    expect(o!.kind).toBe("sent");
    const [m] = s.messages();
    expect(m!.via).toBe("BDAT");
    checkConverted(m!.data);
    expect(m!.mail).toBe(`MAIL FROM:<alice@here.test> SIZE=${m!.data.length}`);
  });

  test("control: the strict fake hop refuses 8-bit data sent without conversion", async () => {
    const s = server({ extensions: ["PIPELINING"], sevenBitOnly: true });
    const [o] = await sendTo(s, message(EIGHT_BIT, { bodyType: null }).msg);
    expect([o!.kind, o!.status]).toEqual(["permanent", "5.6.0"]);
    expect(s.messages()).toEqual([]);
  });

  test("a hop that offers 8BITMIME gets the original bytes with BODY=8BITMIME", async () => {
    const s = server({ extensions: ["PIPELINING", "8BITMIME", "CHUNKING"] });
    const { msg, reads } = message(EIGHT_BIT);
    const [o] = await sendTo(s, msg);
    expect(o!.kind).toBe("sent");
    expect(reads.count).toBe(1);
    const [m] = s.messages();
    expect(text(m!.data)).toBe(EIGHT_BIT);
    expect(m!.mail).toBe("MAIL FROM:<alice@here.test> BODY=8BITMIME");
  });

  test("an 8BITMIME message that is all 7-bit goes as it is", async () => {
    const s = server({ extensions: ["PIPELINING"], sevenBitOnly: true });
    const plain = "Subject: plain\r\n\r\nascii only\r\n";
    const [o] = await sendTo(s, message(plain).msg);
    expect(o!.kind).toBe("sent");
    expect(text(s.messages()[0]!.data)).toBe(plain);
  });

  test("8-bit header fields: permanent 5.6.3 before MAIL, nothing half sent", async () => {
    const s = server({ extensions: ["PIPELINING", "CHUNKING"], sevenBitOnly: true });
    const body = EIGHT_BIT.replace("Subject: menu", "Subject: cr\xc3\xa8me");
    const [o] = await sendTo(s, message(body).msg);
    expect([o!.kind, o!.status, o!.fromServer]).toEqual(["permanent", "5.6.3", false]);
    expect(o!.diagnostic).toContain("subject");
    expect(s.sessions[0]!.commands.some((c) => c.startsWith("MAIL"))).toBe(false);
    expect(s.messages()).toEqual([]);
  });

  test("converted size over the hop's SIZE limit: 5.3.4 without sending", async () => {
    const big = EIGHT_BIT.replace(".a line", "\xe9".repeat(300) + "\r\n.a line");
    const limit = bytes(big).length + 100; // the original fits, the converted form does not
    const s = server({ extensions: [`SIZE ${limit}`], sevenBitOnly: true });
    const [o] = await sendTo(s, message(big).msg);
    expect([o!.kind, o!.status]).toEqual(["permanent", "5.3.4"]);
    expect(s.sessions[0]!.commands.some((c) => c.startsWith("MAIL"))).toBe(false);
  });
});

describe("review fixes at the hop", () => {
  for (const extensions of [["PIPELINING", "SIZE 1000000"], ["CHUNKING", "SIZE 1000000"]]) {
    test(
      `a store read that ends early in the conversion is never taken as whole (${extensions[0]})`,
      async () => {
        const s = server({ extensions, sevenBitOnly: true });
        const data = bytes(EIGHT_BIT);
        let reads = 0;
        const { msg } = message(EIGHT_BIT, {
          async *body() {
            reads++;
            // The scan sees the whole message; the second read stops short without an error.
            const end = reads === 1 ? data.length : data.length - 30;
            for (let i = 0; i < end; i += 7) yield data.slice(i, Math.min(i + 7, end));
          },
        });
        const [o] = await sendTo(s, msg);
        expect(o!.kind).toBe("temporary");
        expect(s.messages()).toEqual([]);
      },
    );
  }

  for (const extensions of [["PIPELINING", "8BITMIME"], ["CHUNKING", "8BITMIME"]]) {
    test(
      `a store read that ends early is never taken as whole, converted or not (${extensions[0]})`,
      async () => {
        const s = server({ extensions });
        const data = bytes(EIGHT_BIT);
        const { msg } = message(EIGHT_BIT, {
          async *body() {
            yield data.slice(0, data.length - 30); // stops short, without an error
          },
        });
        const [o] = await sendTo(s, msg);
        expect(o!.kind).toBe("temporary");
        expect(s.messages()).toEqual([]);
      },
    );
  }

  test("a downgrade of a DKIM-signed message is logged as breaking the signature", async () => {
    const s = server({ extensions: ["PIPELINING"], sevenBitOnly: true });
    const signed = "DKIM-Signature: v=1; a=rsa-sha256; d=here.test; s=s1; bh=x; b=y\r\n" +
      EIGHT_BIT;
    const [o] = await sendTo(s, message(signed).msg);
    expect(o!.kind).toBe("sent");
    const line = log.records.findLast((r) => r.event === "downgraded_7bit");
    expect(line).toMatchObject({ level: "warn", dkimSignatures: 1 });
  });
});

describe("through the queue runner", () => {
  test("a 7-bit hop gets the converted message; an 8-bit header bounces with 5.6.3", async () => {
    const s = server({ extensions: ["PIPELINING", "SIZE 1000000"], sevenBitOnly: true });
    const mb = Metabase.parse({
      server: { hostname: "posthorn.test" },
      smtp: {
        routes: [{ domain: "there.test", host: "127.0.0.1", port: s.port, tls: "none" }],
        queue: { pollSeconds: 3600 },
      },
    });
    const clock = { now: 1_800_000_000_000 };
    const store = new MemoryStore(["here.test"], () => clock.now);
    const runner = new QueueRunner({
      store: store.client(),
      config: () => mb,
      log: memoryLogger("t"),
      now: () => clock.now,
      dns: () => ({
        resolveMx: () => Promise.reject(Object.assign(new Error("x"), { code: "ENOTFOUND" })),
      }),
    });
    try {
      const [ok] = store.enqueue("alice@here.test", ["bob@there.test"], bytes(EIGHT_BIT), {
        bodyType: "8BITMIME",
      });
      const bad = EIGHT_BIT.replace("Subject: menu", "Subject: cr\xc3\xa8me");
      const [refused] = store.enqueue("carol@here.test", ["dan@there.test"], bytes(bad), {
        bodyType: "8BITMIME",
      });
      runner.kick();
      await runner.idle();
      expect(store.done).toEqual([ok!]);
      checkConverted(s.messages()[0]!.data);
      expect(store.failed.map((f) => f.queueId)).toEqual([refused!]);
      const bounce = store.inbox("carol@here.test");
      expect(bounce.length).toBe(1);
      expect(text(bounce[0]!.body)).toMatch(/Status: 5\.6\.3/);
    } finally {
      await runner.stop();
    }
  });
});
