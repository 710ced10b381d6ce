// End to end over a real socket, the real store and the transport: a full mailbox is refused at
// RCPT (552 5.2.2, also when SIZE= would not fit), and a recipient that went over quota between
// RCPT and the end of DATA (a race with another delivery) is bounced to the sender with an
// RFC 3464 report while the other recipient keeps the message. No bounce for the null sender,
// none when every recipient failed (the SMTP reply carries the error then).
import { afterAll, beforeAll, beforeEach, describe, expect, test } from "bun:test";
import { memoryLogger } from "../../log/mod.ts";
import { Metabase } from "../../metabase/schema.ts";
import type { EngineContext } from "../../protocols/engine.ts";
import { startTransport, type Transport } from "../../transport/mod.ts";
import { RawClient } from "./raw-client.ts";
import { startServer, type TestServer, withoutTrace } from "./server.ts";

let server: TestServer;
let transport: Transport;

beforeAll(async () => {
  server = await startServer({
    smtp: { connectors: [{ name: "mx", port: 0, role: "mx", tls: "none", auth: "optional" }] },
  }, [
    ["alice@example.com", "pw-a"],
    ["bob@example.com", "pw-b"],
    ["carol@example.com", "pw-c"],
  ]);
  const mb = Metabase.parse({
    server: { hostname: "mx.test" },
    domains: [{ name: "example.com" }],
    logging: { stderr: "off" },
    smtp: { queue: { pollSeconds: 3600 } },
  });
  const ctx: EngineContext = {
    config: () => mb,
    tls: () => {
      throw new Error("the transport needs no TLS here");
    },
    store: server.client,
    log: memoryLogger("transport"),
    workerIndex: 0,
  };
  transport = await startTransport(ctx);
});

afterAll(async () => {
  await transport.stop();
  await server.close();
});

beforeEach(() => {
  // Bob may hold 3000 bytes; each test starts with his mailbox emptied.
  server.store.updateUser("bob@example.com", { quotaBytes: 3000, quotaMessages: null });
});

async function emptyInbox(address: string): Promise<void> {
  const account = (await server.client.call("account.get", { address }))!;
  const folder = await server.client.call("folder.status", {
    userId: account.userId,
    name: "INBOX",
  });
  const list = await server.client.call("message.list", {
    userId: account.userId,
    folderId: folder.folderId,
  });
  await server.client.call("mailbox.expunge", {
    userId: account.userId,
    folderId: folder.folderId,
    uids: list.map((m) => m.uid),
  });
}

/** Another delivery of exactly `bytes` into bob's mailbox (the race, when a transaction is open). */
async function fillBobsMailbox(bytes: number): Promise<void> {
  const head = "Subject: filler\r\n\r\n";
  const { uploadId } = await server.client.call("body.begin", {});
  await server.client.call("body.append", {
    uploadId,
    chunk: new TextEncoder().encode(head + "f".repeat(bytes - head.length)),
  });
  const res = await server.client.call("delivery.commit", {
    uploadId,
    sender: "someone@remote.test",
    recipients: [{ address: "bob@example.com" }],
  });
  expect(res.delivered).toHaveLength(1);
}

async function session(): Promise<RawClient> {
  const c = await RawClient.open(server.ports.mx!);
  expect(await c.reply()).toStartWith("220 ");
  expect(await c.cmd("EHLO client.test")).toStartWith("250-");
  return c;
}

async function sendData(c: RawClient, message: string): Promise<string | null> {
  expect(await c.cmd("DATA")).toStartWith("354 ");
  c.write(message + ".\r\n");
  return await c.reply();
}

async function eventually(check: () => Promise<boolean>, what: string): Promise<void> {
  for (let i = 0; i < 500; i++) {
    if (await check()) return;
    await Bun.sleep(10);
  }
  throw new Error(`timed out waiting for ${what}`);
}

/** Header fields (unfolded, names lower-case) and the parts of a multipart/report. */
function parseReport(raw: string) {
  const fields = (block: string) => {
    const m = new Map<string, string>();
    for (const line of block.replace(/\r\n[ \t]+/g, " ").split("\r\n")) {
      const c = line.indexOf(":");
      if (c > 0) m.set(line.slice(0, c).toLowerCase(), line.slice(c + 1).trim());
    }
    return m;
  };
  const split = raw.indexOf("\r\n\r\n");
  const headers = fields(raw.slice(0, split));
  const boundary = /boundary="([^"]+)"/.exec(headers.get("content-type") ?? "")![1]!;
  const chunks = raw.slice(split + 4).split(`--${boundary}`);
  expect(chunks.at(-1)).toBe("--\r\n");
  const parts = chunks.slice(1, -1).map((p) => {
    const body = p.replace(/^\r\n/, "");
    const end = body.indexOf("\r\n\r\n");
    return { headers: fields(body.slice(0, end)), body: body.slice(end + 4) };
  });
  const blocks = parts[1]!.body.trim().split("\r\n\r\n").map(fields);
  return { headers, parts, perMessage: blocks[0]!, recipients: blocks.slice(1) };
}

const MESSAGE = "From: carol@example.com\r\nTo: alice@example.com, bob@example.com\r\n" +
  "Subject: quarterly figures\r\nMessage-ID: <q1@example.com>\r\n\r\n" +
  `${"The figures are attached. ".repeat(30)}\r\n`;

describe("quota at RCPT", () => {
  test("a full mailbox is refused with 552 5.2.2; SIZE= over the room left too", async () => {
    await emptyInbox("bob@example.com");
    const c = await session();
    // Room for 3000 bytes: a declared 5000 does not fit, a declared 1000 does.
    expect(await c.cmd("MAIL FROM:<carol@example.com> SIZE=5000")).toStartWith("250 ");
    expect(await c.cmd("RCPT TO:<alice@example.com>")).toStartWith("250 ");
    expect(await c.cmd("RCPT TO:<bob@example.com>")).toStartWith("552 5.2.2 ");
    expect(await c.cmd("RSET")).toStartWith("250 ");
    expect(await c.cmd("MAIL FROM:<carol@example.com> SIZE=1000")).toStartWith("250 ");
    expect(await c.cmd("RCPT TO:<bob@example.com>")).toStartWith("250 ");
    expect(await c.cmd("RSET")).toStartWith("250 ");
    // Now the mailbox is full: refused whatever the size, per recipient.
    await fillBobsMailbox(3000);
    expect(await c.cmd("MAIL FROM:<carol@example.com>")).toStartWith("250 ");
    expect(await c.cmd("RCPT TO:<bob@example.com>")).toBe("552 5.2.2 Mailbox full\r\n");
    expect(await c.cmd("RCPT TO:<alice@example.com>")).toStartWith("250 ");
    expect(await sendData(c, MESSAGE)).toStartWith("250 ");
    c.close();
    expect(await server.client.call("queue.list", {})).toEqual([]); // nothing to bounce
    // A message-count quota counts as full too.
    await emptyInbox("bob@example.com");
    server.store.updateUser("bob@example.com", { quotaBytes: null, quotaMessages: 1 });
    await fillBobsMailbox(100);
    const d = await session();
    expect(await d.cmd("MAIL FROM:<carol@example.com>")).toStartWith("250 ");
    expect(await d.cmd("RCPT TO:<bob@example.com>")).toStartWith("552 5.2.2 ");
    d.close();
  });
});

describe("a recipient over quota at commit (a race)", () => {
  test("gets a 250, a well-formed bounce to the sender naming him; the other has the message", async () => {
    await emptyInbox("bob@example.com");
    await emptyInbox("carol@example.com");
    const aliceBefore = (await server.inbox("alice@example.com")).length;
    const c = await session();
    expect(await c.cmd("MAIL FROM:<carol@example.com> ENVID=QF-2024")).toStartWith("250 ");
    expect(await c.cmd("RCPT TO:<alice@example.com>")).toStartWith("250 ");
    expect(
      await c.cmd("RCPT TO:<bob@example.com> NOTIFY=FAILURE ORCPT=rfc822;Bob@Example.com"),
    ).toStartWith("250 ");
    await fillBobsMailbox(2500); // between RCPT and the end of DATA
    expect(await sendData(c, MESSAGE)).toStartWith("250 2.0.0 ");
    c.close();

    const alice = await server.inbox("alice@example.com");
    expect(alice.length).toBe(aliceBefore + 1);
    expect(withoutTrace(alice.at(-1)!).toString("latin1")).toBe(MESSAGE);
    expect((await server.inbox("bob@example.com")).length).toBe(1); // only the filler

    await eventually(
      async () => (await server.inbox("carol@example.com")).length === 1,
      "the bounce in carol's INBOX",
    );
    const raw = (await server.inbox("carol@example.com"))[0]!.toString("utf8");
    // The bounce came with the null reverse-path (RFC 5321 §4.5.5).
    expect(raw).toStartWith("Return-Path: <>\r\n");
    const report = parseReport(raw.slice(raw.indexOf("\r\n") + 2));
    expect(report.headers.get("to")).toBe("<carol@example.com>");
    expect(report.headers.get("from")).toBe("Mail Delivery System <MAILER-DAEMON@mx.test>");
    expect(report.headers.get("content-type")).toMatch(
      /^multipart\/report; report-type=delivery-status;/,
    );
    expect(report.parts.map((p) => p.headers.get("content-type"))).toEqual([
      "text/plain; charset=utf-8",
      "message/delivery-status",
      "message/rfc822",
    ]);
    expect(report.perMessage.get("reporting-mta")).toBe("dns; mx.test");
    expect(report.perMessage.get("original-envelope-id")).toBe("QF-2024");
    expect(report.recipients).toHaveLength(1); // alice got it: she is not named
    const bob = report.recipients[0]!;
    expect(bob.get("final-recipient")).toBe("rfc822; bob@example.com");
    expect(bob.get("original-recipient")).toBe("rfc822; Bob@Example.com");
    expect(bob.get("action")).toBe("failed");
    expect(bob.get("status")).toBe("5.2.2");
    expect(bob.get("diagnostic-code")).toContain("quota");
    // RET absent: the whole message comes back (with our Received: line on top).
    expect(withoutTrace(Buffer.from(report.parts[2]!.body, "utf8")).toString("utf8")).toBe(
      MESSAGE,
    );
    await eventually(
      async () => (await server.client.call("queue.list", {})).length === 0,
      "the bounce entry to be done",
    );
    expect((await server.store.verify()).problems).toEqual([]);
  });

  test("the null sender gets no bounce; when every recipient fails, the reply says so", async () => {
    await emptyInbox("bob@example.com");
    await emptyInbox("carol@example.com");
    const c = await session();
    expect(await c.cmd("MAIL FROM:<>")).toStartWith("250 ");
    expect(await c.cmd("RCPT TO:<alice@example.com>")).toStartWith("250 ");
    expect(await c.cmd("RCPT TO:<bob@example.com>")).toStartWith("250 ");
    await fillBobsMailbox(2500);
    expect(await sendData(c, MESSAGE)).toStartWith("250 ");
    // Nothing was queued for a bounce: the store records none for the null reverse-path.
    expect(await server.client.call("queue.list", {})).toEqual([]);

    expect(await c.cmd("MAIL FROM:<carol@example.com>")).toStartWith("250 ");
    expect(await c.cmd("RCPT TO:<bob@example.com>")).toStartWith("250 ");
    await fillBobsMailbox(400); // now even a small message cannot fit
    expect(await sendData(c, MESSAGE)).toStartWith("552 5.2.2 ");
    c.close();
    expect(await server.client.call("queue.list", {})).toEqual([]);
    expect(await server.inbox("carol@example.com")).toEqual([]);
  });
});
