// End to end over real sockets: the attacks polite clients never send. SMTP smuggling with
// bare line endings, STARTTLS command injection, open relay, pipelined floods, implicit TLS and
// the per-IP connection cap.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { connect as tlsConnect } from "node:tls";
import { RawClient } from "./raw-client.ts";
import { startServer, type TestServer } from "./server.ts";

let server: TestServer;

beforeAll(async () => {
  server = await startServer({
    auth: { plaintext: "tls" },
    limits: { connectionsPerIp: 4 },
    smtp: {
      connectors: [
        { name: "mx", port: 0, role: "mx", tls: "starttls", auth: "optional" },
        { name: "smtps", port: 0, role: "submission", tls: "implicit", auth: "required" },
      ],
    },
  }, [["alice@example.com", "alice-pw"], ["bob@example.com", "bob-pw"]]);
});

afterAll(async () => {
  await server.close();
});

async function greeted(): Promise<RawClient> {
  const c = await RawClient.open(server.ports.mx!);
  expect(await c.reply()).toStartWith("220 mx.test ");
  return c;
}

describe("SMTP smuggling", () => {
  for (
    const [name, end] of [["\\n.\\n", "\n.\n"], ["\\r\\n.\\n", "\r\n.\n"], [
      "\\n.\\r\\n",
      "\n.\r\n",
    ], ["\\r.\\r", "\r.\r"]]
  ) {
    test(`"${name}" does not end DATA and the smuggled message is never delivered`, async () => {
      const before = (await server.inbox("bob@example.com")).length;
      const c = await greeted();
      expect(await c.cmd("EHLO attacker.test")).toStartWith("250-");
      expect(await c.cmd("MAIL FROM:<a@remote.example>")).toStartWith("250 ");
      expect(await c.cmd("RCPT TO:<alice@example.com>")).toStartWith("250 ");
      expect(await c.cmd("DATA")).toStartWith("354 ");
      c.write(
        `Subject: outer\r\n\r\nouter${end}MAIL FROM:<ceo@example.com>\r\nRCPT TO:<bob@example.com>\r\n` +
          "DATA\r\nSubject: smuggled\r\n\r\nsmuggled\r\n.\r\n",
      );
      expect(await c.reply()).toStartWith("550 5.6.0 ");
      // What followed the real end is a command again, and nothing else was answered.
      expect(await c.cmd("NOOP")).toBe("250 2.0.0 Ok\r\n");
      c.close();
      expect((await server.inbox("bob@example.com")).length).toBe(before);
    });
  }
});

describe("STARTTLS", () => {
  test("commands pipelined with STARTTLS are never executed inside TLS", async () => {
    const c = await greeted();
    await c.cmd("EHLO attacker.test");
    c.write("STARTTLS\r\nMAIL FROM:<evil@remote.example>\r\nRCPT TO:<alice@example.com>\r\n");
    expect(await c.reply()).toBe("220 2.0.0 Ready to start TLS\r\n");
    await c.startTls();
    const ehlo = await c.cmd("EHLO attacker.test");
    expect(ehlo).toStartWith("250-mx.test greets attacker.test");
    expect(ehlo).not.toContain("STARTTLS");
    expect(ehlo).toContain("AUTH PLAIN LOGIN");
    expect(await c.cmd("RCPT TO:<alice@example.com>")).toStartWith("503 5.5.1");
    c.close();
  });

  test("AUTH before TLS is refused where plaintext needs TLS", async () => {
    const c = await greeted();
    expect(await c.cmd("EHLO x")).not.toContain("AUTH");
    const plain = Buffer.from("\0alice@example.com\0alice-pw").toString("base64");
    expect(await c.cmd(`AUTH PLAIN ${plain}`)).toStartWith("538 5.7.11");
    c.close();
  });

  test("implicit TLS: greeting inside TLS, AUTH offered, STARTTLS not", async () => {
    const socket = tlsConnect({
      host: "127.0.0.1",
      port: server.ports.smtps!,
      rejectUnauthorized: false,
    });
    await new Promise<void>((resolve, reject) => {
      socket.once("secureConnect", resolve);
      socket.once("error", reject);
    });
    const c = new RawClient(socket);
    expect(await c.reply()).toStartWith("220 mx.test");
    const ehlo = await c.cmd("EHLO client");
    expect(ehlo).toContain("AUTH PLAIN LOGIN");
    expect(ehlo).not.toContain("STARTTLS");
    expect(await c.cmd("MAIL FROM:<alice@example.com>")).toStartWith("530 5.7.0");
    const plain = Buffer.from("\0alice@example.com\0alice-pw").toString("base64");
    expect(await c.cmd(`AUTH PLAIN ${plain}`)).toStartWith("235 2.7.0");
    expect(await c.cmd("MAIL FROM:<alice@example.com>")).toStartWith("250 ");
    expect(await c.cmd("RCPT TO:<bob@example.com>")).toStartWith("250 ");
    expect(await c.cmd("DATA")).toStartWith("354 ");
    expect(await c.cmd("Subject: over 465\r\n\r\nhello\r\n.")).toStartWith("250 2.0.0 Ok");
    c.close();
    const inbox = await server.inbox("bob@example.com");
    expect(inbox.at(-1)!.toString()).toContain("with ESMTPSA id");
  });
});

describe("abuse limits", () => {
  test("no open relay, even with a forged local sender", async () => {
    const c = await greeted();
    await c.cmd("EHLO x");
    expect(await c.cmd("MAIL FROM:<alice@example.com>")).toStartWith("250 ");
    expect(await c.cmd("RCPT TO:<victim@elsewhere.example>")).toBe(
      "554 5.7.1 Relay access denied\r\n",
    );
    expect(await c.cmd("RCPT TO:<victim%elsewhere.example@example.com>")).toStartWith("550 5.1.1");
    c.close();
    expect((await server.client.call("queue.list", {})).length).toBe(0);
  });

  test("a pipelined flood of 5,000 commands is answered completely and in order", async () => {
    const c = await greeted();
    c.write("EHLO flood\r\n" + "NOOP\r\n".repeat(5000) + "QUIT\r\n");
    expect(await c.reply()).toStartWith("250-");
    for (let i = 0; i < 5000; i++) expect(await c.reply()).toBe("250 2.0.0 Ok\r\n");
    expect(await c.reply()).toBe("221 2.0.0 Bye\r\n");
    c.close();
  });

  test("connections beyond limits.connectionsPerIp get 421 4.7.0", async () => {
    const open = await Promise.all([1, 2, 3, 4].map(() => greeted()));
    const extra = await RawClient.open(server.ports.mx!);
    expect(await extra.reply()).toStartWith("421 4.7.0");
    for (const c of [...open, extra]) c.close();
  });
});
