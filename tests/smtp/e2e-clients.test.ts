// End to end with clients nobody here wrote: nodemailer and Python's smtplib submit through
// STARTTLS + AUTH on a submission connector; swaks talks to an MX connector. Real store.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import nodemailer from "nodemailer";
import { startServer, type TestServer, withoutTrace } from "./server.ts";

let server: TestServer;

/** Runs a client program without blocking this process's event loop (the server lives here). */
async function exec(cmd: string[], input?: string) {
  const proc = Bun.spawn(cmd, {
    stdin: input === undefined ? "ignore" : new Blob([input]),
    stdout: "pipe",
    stderr: "pipe",
  });
  const timer = setTimeout(() => proc.kill(), 50_000);
  const [stdout, stderr, status] = await Promise.all([
    new Response(proc.stdout).text(),
    new Response(proc.stderr).text(),
    proc.exited,
  ]);
  clearTimeout(timer);
  return { stdout, stderr, status };
}

beforeAll(async () => {
  server = await startServer({
    auth: { plaintext: "tls" },
    smtp: {
      connectors: [
        {
          name: "mx",
          port: 0,
          role: "mx",
          tls: "starttls",
          auth: "optional",
          maxMessageBytes: 1024 * 1024,
        },
        {
          name: "submission",
          port: 0,
          role: "submission",
          tls: "starttls",
          auth: "required",
          maxMessageBytes: 30 * 1024 * 1024,
        },
      ],
    },
  }, [["alice@example.com", "alice-pw"], ["bob@example.com", "bob-pw"]]);
});

afterAll(async () => {
  await server.close();
});

function transport(user = "alice@example.com", pass = "alice-pw") {
  return nodemailer.createTransport({
    host: "127.0.0.1",
    port: server.ports.submission,
    secure: false,
    requireTLS: true,
    tls: { rejectUnauthorized: false },
    auth: { user, pass },
  });
}

describe("nodemailer on submission (STARTTLS + AUTH)", () => {
  test("a 20 MB attachment with 8-bit headers arrives byte-exact", async () => {
    // Raw RFC 5322 bytes, so what we compare is exactly what went on the wire.
    const attachment = Buffer.alloc(20 * 1024 * 1024);
    let seed = 7;
    for (let i = 0; i < attachment.length; i++) {
      seed = (seed * 1103515245 + 12345) & 0x7fffffff;
      attachment[i] = seed >> 16;
    }
    const b64 = attachment.toString("base64").replace(/.{76}/g, "$&\r\n");
    const raw = Buffer.concat([
      Buffer.from(
        "From: Alice <alice@example.com>\r\nTo: Bob <bob@example.com>\r\n" +
          "Subject: Grüße aus Köln — 日本語\r\nMIME-Version: 1.0\r\n" +
          'Content-Type: multipart/mixed; boundary="b1"\r\n\r\n--b1\r\n' +
          "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n" +
          "Ünïcödé body\r\n.leading dot line\r\n--b1\r\n" +
          'Content-Type: application/octet-stream; name="big.bin"\r\n' +
          "Content-Transfer-Encoding: base64\r\n\r\n",
        "utf8",
      ),
      Buffer.from(b64 + "\r\n--b1--\r\n", "latin1"),
    ]);
    const info = await transport().sendMail({
      envelope: { from: "alice@example.com", to: ["bob@example.com"] },
      raw,
    });
    expect(info.accepted).toEqual(["bob@example.com"]);
    expect(info.response).toMatch(/^250 2\.0\.0 Ok: queued as /);
    const [stored] = await server.inbox("bob@example.com");
    expect(stored).toBeDefined();
    const text = stored!.subarray(0, 600).toString("latin1");
    expect(text).toStartWith("Return-Path: <alice@example.com>\r\nReceived: from ");
    expect(text).toContain("with ESMTPSA id");
    // RFC 8314 §4.3: the trace says which TLS was used.
    expect(text).toMatch(/\(using TLSv1\.[23] with cipher [A-Z0-9_-]+\)/);
    expect(withoutTrace(stored!).equals(raw)).toBe(true);
  }, 60_000);

  test("a wrong password is refused with 535 5.7.8", async () => {
    const err = await transport("alice@example.com", "nope").sendMail({
      from: "alice@example.com",
      to: "bob@example.com",
      text: "x",
    }).then(() => null, (e: { responseCode?: number; response?: string }) => e);
    expect(err?.responseCode).toBe(535);
    expect(err?.response).toContain("5.7.8");
  });

  test("sending as someone else is refused (553 5.7.1)", async () => {
    const err = await transport().sendMail({
      envelope: { from: "bob@example.com", to: ["bob@example.com"] },
      raw: "Subject: spoof\r\n\r\nx\r\n",
    }).then(() => null, (e: { responseCode?: number }) => e);
    expect(err?.responseCode).toBe(553);
  });
});

const PYTHON = `
import smtplib, ssl, sys
port = int(sys.argv[1])
ctx = ssl.create_default_context()
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
s = smtplib.SMTP("127.0.0.1", port, timeout=20)
s.ehlo("python.test")
assert "starttls" in s.esmtp_features and "auth" not in s.esmtp_features, s.esmtp_features
s.starttls(context=ctx)
s.ehlo("python.test")
assert "PLAIN" in s.esmtp_features["auth"] and "LOGIN" in s.esmtp_features["auth"]
try:
    s.login("alice@example.com", "wrong")
    print("LOGIN-ACCEPTED-WRONG")
except smtplib.SMTPAuthenticationError as e:
    print("AUTHFAIL", e.smtp_code)
s.login("alice@example.com", "alice-pw")
refused = s.sendmail("alice@example.com", ["bob@example.com", "carol@remote.example"],
    "Subject: from python\\r\\n\\r\\nHello from smtplib\\r\\n.dot\\r\\n")
print("REFUSED", refused)
s.quit()
print("DONE")
`;

describe("Python smtplib on submission", () => {
  test("STARTTLS, AUTH failure then success, a message to a local and a remote recipient", async () => {
    const before = (await server.inbox("bob@example.com")).length;
    const run = await exec(["python3", "-c", PYTHON, String(server.ports.submission)]);
    expect(run.stderr).toBe("");
    expect(run.stdout).toContain("AUTHFAIL 535");
    expect(run.stdout).toContain("REFUSED {}");
    expect(run.stdout).toContain("DONE");
    const inbox = await server.inbox("bob@example.com");
    expect(inbox.length).toBe(before + 1);
    expect(withoutTrace(inbox.at(-1)!).toString()).toBe(
      "Subject: from python\r\n\r\nHello from smtplib\r\n.dot\r\n",
    );
    const queued = await server.client.call("queue.list", {});
    expect(queued.map((q) => q.recipient)).toContain("carol@remote.example");
  });
});

const haveSwaks = Bun.which("swaks") !== null;
if (!haveSwaks) console.warn("SKIP swaks tests: swaks is not installed (apt-get install -y swaks)");

describe.skipIf(!haveSwaks)("swaks on the MX connector", () => {
  const run = (args: string[], input?: string) =>
    exec(["swaks", "--server", "127.0.0.1", "--port", String(server.ports.mx), ...args], input);

  test("delivers to a local user, with PIPELINING and with STARTTLS", async () => {
    const before = (await server.inbox("alice@example.com")).length;
    const plain = await run([
      "--from",
      "someone@remote.example",
      "--to",
      "alice@example.com",
      "--pipeline",
    ]);
    expect(plain.status).toBe(0);
    expect(plain.stdout).toMatch(/<-\s+250 2\.0\.0 Ok: queued as/);
    const tls = await run([
      "--from",
      "someone@remote.example",
      "--to",
      "alice@example.com",
      "--tls",
    ]);
    expect(tls.stdout).toContain("220 2.0.0 Ready to start TLS");
    expect(tls.status).toBe(0);
    const inbox = await server.inbox("alice@example.com");
    expect(inbox.length).toBe(before + 2);
    expect(inbox.at(-1)!.toString()).toContain("with ESMTPS id");
  });

  test("open relay refused; unknown user refused", async () => {
    const relay = await run([
      "--from",
      "spammer@remote.example",
      "--to",
      "victim@elsewhere.example",
    ]);
    expect(relay.status).not.toBe(0);
    expect(relay.stdout).toContain("554 5.7.1 Relay access denied");
    const unknown = await run(["--from", "a@remote.example", "--to", "nobody@example.com"]);
    expect(unknown.stdout).toContain("550 5.1.1");
  });

  test("an oversize message is refused with nothing stored", async () => {
    const before = (await server.inbox("alice@example.com")).length;
    // 2 MB against the MX connector's 1 MB limit, streamed from swaks' stdin.
    const body = ("x".repeat(999) + "\n").repeat(2048);
    const r = await run(
      ["--from", "a@remote.example", "--to", "alice@example.com", "--body", "-"],
      body,
    );
    expect(r.stdout).toContain("552 5.3.4");
    expect((await server.inbox("alice@example.com")).length).toBe(before);
  }, 60_000);
});
