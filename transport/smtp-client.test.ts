// Tests of the outbound SMTP client against a scripted server on 127.0.0.1.
import { afterAll, afterEach, beforeAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { memoryLogger } from "../log/mod.ts";
import {
  type ClientSettings,
  type HopTarget,
  type OutboundMessage,
  SessionError,
  SmtpClient,
} from "./smtp-client.ts";
import {
  type FakeSmtpOptions,
  type FakeSmtpServer,
  fakeSmtpServer,
  selfSignedCert,
  testClientSettings,
} from "./testing/fake-smtp.ts";

const enc = new TextEncoder();
const dec = new TextDecoder();
let dir = "";
let pem: { cert: string; key: string };
let servers: FakeSmtpServer[] = [];

beforeAll(() => {
  dir = mkdtempSync(`${tmpdir()}/posthorn-transport-`);
  pem = selfSignedCert(dir);
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));
afterEach(() => {
  servers.forEach((s) => s.stop());
  servers = [];
});

function server(opts: FakeSmtpOptions = {}): FakeSmtpServer {
  const s = fakeSmtpServer(opts);
  servers.push(s);
  return s;
}

const log = memoryLogger("client");
const settings = (over: Partial<ClientSettings> = {}) => testClientSettings(log, over);

function target(port: number, over: Partial<HopTarget> = {}): HopTarget {
  return {
    host: "127.0.0.1",
    port,
    tls: "opportunistic",
    verifyCertificate: false,
    auth: null,
    ...over,
  };
}

/** A message whose body arrives in chunks of `chunk` bytes, counting how often it is read. */
function message(body: string, recipients: string[], over: Partial<OutboundMessage> = {}) {
  const bytes = enc.encode(body);
  const reads = { count: 0 };
  const msg: OutboundMessage = {
    sender: "alice@here.test",
    recipients: recipients.map((address) => ({ address })),
    size: bytes.length,
    async *body() {
      reads.count++;
      for (let i = 0; i < bytes.length; i += 5) yield bytes.slice(i, i + 5);
    },
    ...over,
  };
  return { msg, reads };
}

const BODY = "Subject: hi\r\n\r\n.leading dot\r\n..two dots\r\nlast line without end";

describe("SMTP client", () => {
  test("multi-line EHLO, PIPELINING, DATA with dot-stuffing, per-recipient results", async () => {
    const s = server({
      reply: (line) => (line.startsWith("RCPT TO:<bad@") ? "550 5.1.1 no such user" : undefined),
    });
    const client = await SmtpClient.connect(target(s.port), settings());
    expect(client.capabilities.has("PIPELINING")).toBe(true);
    expect(client.capabilities.get("SIZE")).toBe("1000000");
    const { msg, reads } = message(BODY, ["bob@there.test", "bad@there.test", "carol@there.test"]);
    const out = await client.send(msg);
    await client.quit();
    expect(out.map((o) => [o.address, o.kind, o.status])).toEqual([
      ["bob@there.test", "sent", "2.0.0"],
      ["bad@there.test", "permanent", "5.1.1"],
      ["carol@there.test", "sent", "2.0.0"],
    ]);
    expect(reads.count).toBe(1);
    const [m] = s.messages();
    expect(m!.via).toBe("DATA");
    // Un-stuffed by the server: identical to the original plus the closing CRLF.
    expect(dec.decode(m!.data)).toBe(BODY + "\r\n");
    const cmds = s.sessions[0]!.commands;
    expect(cmds[0]).toBe("EHLO posthorn.test");
    expect(cmds[1]).toBe(`MAIL FROM:<alice@here.test> SIZE=${msg.size} BODY=8BITMIME`);
    expect(cmds.at(-1)).toBe("QUIT");
  });

  test("without PIPELINING each command waits; no parameters the server did not offer", async () => {
    const s = server({ extensions: ["HELP"] });
    const client = await SmtpClient.connect(target(s.port), settings());
    const { msg } = message(BODY, ["bob@there.test"], {
      envid: "abc",
      ret: "HDRS",
    });
    msg.recipients[0]!.notify = ["FAILURE"];
    const [o] = await client.send(msg);
    expect(o!.kind).toBe("sent");
    const cmds = s.sessions[0]!.commands;
    expect(cmds).toContain("MAIL FROM:<alice@here.test>");
    expect(cmds).toContain("RCPT TO:<bob@there.test>");
    await client.quit();
  });

  test("DSN parameters go out (xtext-encoded) when the server offers DSN", async () => {
    const s = server({ extensions: ["DSN", "PIPELINING"] });
    const client = await SmtpClient.connect(target(s.port), settings());
    const { msg } = message(BODY, ["bob@there.test"], { envid: "id+1=x", ret: "HDRS" });
    msg.recipients[0] = {
      address: "bob@there.test",
      notify: ["SUCCESS", "FAILURE"],
      orcpt: "rfc822;Bob+X@there.test",
    };
    const [o] = await client.send(msg);
    expect(o!.kind).toBe("sent");
    expect(o!.relayedWithoutDsn).toBe(false);
    const cmds = s.sessions[0]!.commands;
    expect(cmds).toContain("MAIL FROM:<alice@here.test> RET=HDRS ENVID=id+2B1+3Dx");
    expect(cmds).toContain(
      "RCPT TO:<bob@there.test> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;Bob+2BX@there.test",
    );
    await client.quit();
  });

  test("NOTIFY=SUCCESS to a server without DSN is reported as relayed", async () => {
    const s = server();
    const client = await SmtpClient.connect(target(s.port), settings());
    const { msg } = message(BODY, ["bob@there.test"]);
    msg.recipients[0]!.notify = ["SUCCESS"];
    const [o] = await client.send(msg);
    expect(o!.kind).toBe("sent");
    expect(o!.relayedWithoutDsn).toBe(true);
    await client.quit();
  });

  test("BDAT when CHUNKING is offered: bytes arrive exactly, unstuffed", async () => {
    const s = server({ extensions: ["CHUNKING", "PIPELINING", "8BITMIME"] });
    const client = await SmtpClient.connect(target(s.port), settings());
    const body = "Subject: b\r\n\r\n.dot\r\nbare\nlf\r\n";
    const { msg } = message(body, ["bob@there.test"]);
    const [o] = await client.send(msg);
    expect(o!.kind).toBe("sent");
    const [m] = s.messages();
    expect(m!.via).toBe("BDAT");
    expect(dec.decode(m!.data)).toBe(body);
    const bdats = s.sessions[0]!.commands.filter((c) => c.startsWith("BDAT"));
    expect(bdats.at(-1)).toMatch(/ LAST$/);
    expect(bdats.length).toBe(Math.ceil(body.length / 5));
    await client.quit();
  });

  test("4xx and 5xx at MAIL FROM apply to every recipient", async () => {
    for (
      const [reply, kind] of [["451 4.3.0 try later", "temporary"], ["553 5.7.1 no", "permanent"]]
    ) {
      const s = server({ reply: (l) => (l.startsWith("MAIL") ? reply : undefined) });
      const client = await SmtpClient.connect(target(s.port), settings());
      const out = await client.send(message(BODY, ["a@x.test", "b@x.test"]).msg);
      expect(out.map((o) => o.kind)).toEqual([kind, kind] as never);
      expect(out[0]!.diagnostic).toBe(reply!);
      expect(s.messages().length).toBe(0);
      // The session stays usable: the next transaction starts with RSET.
      await client.send(message(BODY, ["c@x.test"]).msg);
      await client.quit();
    }
  });

  test("4xx and 5xx after DATA; 552 to RCPT is temporary (RFC 5321 §4.5.3.1.10)", async () => {
    const s = server({
      extensions: [],
      reply: (l) =>
        l === "<DATA>"
          ? "554 5.6.0 content rejected"
          : l.startsWith("RCPT TO:<many@")
          ? "552 too many recipients"
          : undefined,
    });
    const client = await SmtpClient.connect(target(s.port), settings());
    const out = await client.send(message(BODY, ["a@x.test", "many@x.test"]).msg);
    expect(out.map((o) => [o.kind, o.status])).toEqual([
      ["permanent", "5.6.0"],
      ["temporary", "4.5.3"],
    ]);
    await client.quit();

    const t = server({ reply: (l) => (l === "DATA" ? "452 4.3.1 full" : undefined) });
    const c2 = await SmtpClient.connect(target(t.port), settings());
    const [o] = await c2.send(message(BODY, ["a@x.test"]).msg);
    expect([o!.kind, o!.status]).toEqual(["temporary", "4.3.1"]);
    await c2.quit();
  });

  test("all recipients refused with a pipelined DATA answered 354: a lone dot ends it", async () => {
    const s = server({
      reply: (
        l,
      ) => (l.startsWith("RCPT") ? "550 5.1.1 nobody" : l === "DATA" ? "354 go" : undefined),
    });
    const client = await SmtpClient.connect(target(s.port), settings());
    const out = await client.send(message(BODY, ["a@x.test"]).msg);
    expect(out[0]!.kind).toBe("permanent");
    expect(client.usable).toBe(true);
    await client.quit();
    expect(s.messages()[0]?.rcpts ?? []).toEqual([]);
  });

  test("greeting 4xx or 5xx, and EHLO 4xx, are session errors (temporary)", async () => {
    const a = server({ greeting: "421 4.3.2 busy" });
    const b = server({ greeting: "554 5.3.2 go away" });
    const c = server({ reply: (l) => (l.startsWith("EHLO") ? "421 4.7.0 later" : undefined) });
    for (const s of [a, b, c]) {
      const err = await SmtpClient.connect(target(s.port), settings()).catch((e) => e);
      expect(err).toBeInstanceOf(SessionError);
      expect((err as SessionError).temporary).toBe(true);
      expect((err as SessionError).status.startsWith("4.")).toBe(true);
    }
  });

  test("EHLO refused with 5xx falls back to HELO and sends no extensions", async () => {
    const s = server({ extensions: null });
    const client = await SmtpClient.connect(target(s.port), settings());
    expect(client.capabilities.size).toBe(0);
    const [o] = await client.send(message(BODY, ["a@x.test"]).msg);
    expect(o!.kind).toBe("sent");
    expect(s.sessions[0]!.commands.slice(0, 3)).toEqual([
      "EHLO posthorn.test",
      "HELO posthorn.test",
      "MAIL FROM:<alice@here.test>",
    ]);
    await client.quit();
  });

  test("opportunistic STARTTLS: upgrade, EHLO again, unverified certificate logged", async () => {
    const s = server({ tls: pem });
    const client = await SmtpClient.connect(target(s.port), settings());
    expect(client.secure).toBe(true);
    const [o] = await client.send(message(BODY, ["a@x.test"]).msg);
    expect(o!.kind).toBe("sent");
    await client.quit();
    expect(s.sessions[0]!.tls).toBe(true);
    expect(s.sessions[0]!.commands.filter((c) => c.startsWith("EHLO")).length).toBe(2);
    expect(dec.decode(s.messages()[0]!.data)).toBe(BODY + "\r\n");
    expect(log.records.some((r) => r.event === "tls_unverified")).toBe(true);
  });

  test("required TLS: refused without STARTTLS; a certificate that must verify and does not", async () => {
    const plain = server();
    const err = await SmtpClient.connect(target(plain.port, { tls: "required" }), settings())
      .catch((e) => e);
    expect(err).toBeInstanceOf(SessionError);
    expect((err as SessionError).message).toContain("STARTTLS");
    expect(plain.sessions[0]!.commands.some((c) => c.startsWith("MAIL"))).toBe(false);

    const tls = server({ tls: pem });
    const err2 = await SmtpClient.connect(
      target(tls.port, { tls: "required", verifyCertificate: true }),
      settings(),
    ).catch((e) => e);
    expect(err2).toBeInstanceOf(SessionError);
    expect((err2 as SessionError).temporary).toBe(true);
  });

  test("AUTH PLAIN, and LOGIN when PLAIN is not offered; never without TLS", async () => {
    const auth = { username: "relay", password: "s3cret" };
    const p = server({ tls: pem, extensions: ["AUTH LOGIN PLAIN"] });
    const c1 = await SmtpClient.connect(target(p.port, { tls: "required", auth }), settings());
    await c1.quit();
    const plainCmd = p.sessions[0]!.commands.find((c) => c.startsWith("AUTH"))!;
    expect(Buffer.from(plainCmd.split(" ")[2]!, "base64").toString()).toBe("\0relay\0s3cret");

    const l = server({ tls: pem, extensions: ["AUTH LOGIN"] });
    const c2 = await SmtpClient.connect(target(l.port, { tls: "required", auth }), settings());
    await c2.quit();
    const cmds = l.sessions[0]!.commands;
    const i = cmds.indexOf("AUTH LOGIN");
    expect(Buffer.from(cmds[i + 1]!, "base64").toString()).toBe("relay");
    expect(Buffer.from(cmds[i + 2]!, "base64").toString()).toBe("s3cret");

    const noTls = server({ extensions: ["AUTH PLAIN"] });
    const err = await SmtpClient.connect(
      target(noTls.port, { tls: "opportunistic", auth }),
      settings(),
    ).catch((e) => e);
    expect(err).toBeInstanceOf(SessionError);
    expect(noTls.sessions[0]!.commands.some((c) => c.startsWith("AUTH"))).toBe(false);
  });

  test("a message bigger than the server's SIZE is refused without sending", async () => {
    const s = server({ extensions: ["SIZE 10"] });
    const client = await SmtpClient.connect(target(s.port), settings());
    const [o] = await client.send(message(BODY, ["a@x.test"]).msg);
    expect([o!.kind, o!.status]).toEqual(["permanent", "5.3.4"]);
    expect(s.sessions[0]!.commands.some((c) => c.startsWith("MAIL"))).toBe(false);
    await client.quit();
  });

  test("SMTPUTF8 is sent when needed, and its absence fails the message permanently", async () => {
    const yes = server({ extensions: ["SMTPUTF8", "8BITMIME"] });
    const c1 = await SmtpClient.connect(target(yes.port), settings());
    const [o1] = await c1.send(message(BODY, ["josé@x.test"]).msg);
    expect(o1!.kind).toBe("sent");
    expect(yes.sessions[0]!.commands).toContain(
      `MAIL FROM:<alice@here.test> BODY=8BITMIME SMTPUTF8`,
    );
    await c1.quit();
    const no = server({ extensions: ["8BITMIME"] });
    const c2 = await SmtpClient.connect(target(no.port), settings());
    const [o2] = await c2.send(message(BODY, ["josé@x.test"]).msg);
    expect([o2!.kind, o2!.status]).toEqual(["permanent", "5.6.7"]);
    await c2.quit();
  });

  test("a server that stops answering, or drops the line, gives temporary results", async () => {
    const hang = server({ reply: (l) => (l === "<DATA>" ? "hang" : undefined) });
    const c1 = await SmtpClient.connect(target(hang.port), settings({ dataTermMs: 200 }));
    const [o1] = await c1.send(message(BODY, ["a@x.test"]).msg);
    expect(o1!.kind).toBe("temporary");
    expect(o1!.diagnostic).toContain("no reply");
    expect(c1.usable).toBe(false);

    const drop = server({ reply: (l) => (l.startsWith("RCPT") ? "close" : undefined) });
    const c2 = await SmtpClient.connect(target(drop.port), settings());
    const [o2] = await c2.send(message(BODY, ["a@x.test"]).msg);
    expect(o2!.kind).toBe("temporary");
    expect(c2.usable).toBe(false);

    const closed = await SmtpClient.connect(target(1), settings()).catch((e) => e);
    expect(closed).toBeInstanceOf(SessionError);
    expect((closed as SessionError).status).toBe("4.4.1");
  });

  test("an address that could smuggle a command is refused, the others still go", async () => {
    const s = server();
    const client = await SmtpClient.connect(target(s.port), settings());
    const out = await client.send(message(BODY, ["evil@x.test>\r\nRSET", "ok@x.test"]).msg);
    expect(out.map((o) => [o.kind, o.status])).toEqual([["permanent", "5.1.3"], ["sent", "2.0.0"]]);
    expect(s.sessions[0]!.commands.filter((c) => c.startsWith("RCPT"))).toEqual([
      "RCPT TO:<ok@x.test>",
    ]);
    expect(s.sessions[0]!.commands).not.toContain("RSET");
    const bad = await client.send(message(BODY, ["ok@x.test"], { sender: "a@b\nc" }).msg);
    expect(bad[0]!.status).toBe("5.1.7");
    await client.quit();
  });

  test("a body that fails mid-stream aborts the transfer: no message is accepted", async () => {
    const s = server();
    const client = await SmtpClient.connect(target(s.port), settings());
    const { msg } = message(BODY, ["a@x.test"]);
    msg.body = async function* () {
      yield enc.encode("Subject: x\r\n\r\npart");
      throw new Error("store went away");
    };
    const [o] = await client.send(msg);
    expect(o!.kind).toBe("temporary");
    expect(o!.diagnostic).toContain("store went away");
    await new Promise((r) => setTimeout(r, 50));
    expect(s.messages().length).toBe(0);
  });
});
