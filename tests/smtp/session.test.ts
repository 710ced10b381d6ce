// The SMTP session state machine over a fake Connection and the in-memory store double.
import { describe, expect, test } from "bun:test";
import { openSession } from "./harness.ts";
import { MemoryStore } from "./memory-store.ts";

const b64 = (s: string) => Buffer.from(s).toString("base64");

function storeWithAlice(): MemoryStore {
  const store = new MemoryStore();
  store.addUser("alice@example.com", "secret");
  store.addUser("bob@example.com", "hunter2");
  return store;
}

describe("greeting and EHLO", () => {
  test("EHLO lists the extensions; AUTH only where plaintext is allowed", async () => {
    const c = await openSession({ connector: { tls: "starttls" } });
    const r = await c.cmd("EHLO client.test");
    expect(r.code).toBe(250);
    for (
      const ext of [
        "PIPELINING",
        "SIZE 52428800",
        "8BITMIME",
        "SMTPUTF8",
        "ENHANCEDSTATUSCODES",
        "CHUNKING",
        "DSN",
        "STARTTLS",
      ]
    ) {
      expect(r.lines).toContain(ext);
    }
    expect(r.text).not.toContain("AUTH"); // not loopback, not TLS: policy tls-or-loopback
    const local = await openSession({ loopback: true, remoteAddress: "127.0.0.1" });
    expect((await local.cmd("EHLO x")).lines).toContain("AUTH PLAIN LOGIN");
    expect((await local.cmd("EHLO x")).text).not.toContain("STARTTLS"); // tls: none
  });

  test("MAIL before HELO/EHLO is a bad sequence", async () => {
    const c = await openSession();
    expect(await c.cmd("MAIL FROM:<a@b.example>")).toMatchObject({ code: 503 });
    expect((await c.cmd("NOOP")).text).toBe("2.0.0 Ok");
    expect((await c.cmd("VRFY bob")).code).toBe(252);
    expect((await c.cmd("HELP")).code).toBe(214);
  });
});

describe("a message over DATA", () => {
  test("dot-stuffing undone, Received: first, Return-Path as local prefix, byte-exact", async () => {
    const c = await openSession({ store: storeWithAlice() });
    await c.cmd("EHLO client.test");
    expect((await c.cmd("MAIL FROM:<sender@remote.example> BODY=8BITMIME")).text).toBe(
      "2.1.0 Sender ok",
    );
    expect((await c.cmd("RCPT TO:<alice@example.com>")).text).toBe("2.1.5 Recipient ok");
    expect((await c.cmd("DATA")).code).toBe(354);
    const body = "Subject: caf\xe9\r\n\r\n..leading dot\r\n.\r\nnot the end\r\nlast\r\n";
    c.send("Subject: caf\xe9\r\n\r\n...leading dot\r\n..\r\nnot the end\r\nlast\r\n.\r\n");
    const done = await c.reply();
    expect(done.code).toBe(250);
    expect(done.text).toMatch(/^2\.0\.0 Ok: queued as smtp-test-1\.1 \(m1\)$/);
    const m = c.store.messages[0]!;
    expect(m.sender).toBe("sender@remote.example");
    expect(m.recipients).toEqual([{ address: "alice@example.com" }]);
    expect(m.bodyType).toBe("8BITMIME");
    const stored = c.store.text();
    expect(
      stored.startsWith(
        "Return-Path: <sender@remote.example>\r\nReceived: from client.test ([192.0.2.10])\r\n\tby mx.test (Posthorn) with ESMTP id smtp-test-1.1\r\n\tfor <alice@example.com>; ",
      ),
    ).toBe(true);
    expect(stored.endsWith("\r\n" + body)).toBe(true);
  });

  test("an empty message and pipelined commands after the final dot", async () => {
    const c = await openSession({ store: storeWithAlice() });
    c.send("EHLO c\r\nMAIL FROM:<>\r\nRCPT TO:<alice@example.com>\r\nDATA\r\n");
    expect((await c.reply()).code).toBe(250);
    expect((await c.reply()).code).toBe(250);
    expect((await c.reply()).code).toBe(250);
    expect((await c.reply()).code).toBe(354);
    c.send(".\r\nQUIT\r\n");
    expect((await c.reply()).code).toBe(250);
    expect((await c.reply()).text).toBe("2.0.0 Bye");
    await c.closed();
    expect(c.store.messages.length).toBe(1);
    expect(c.store.text()).toStartWith("Return-Path: <>\r\nReceived: ");
  });

  test("DATA without recipients, and RCPT before MAIL", async () => {
    const c = await openSession();
    await c.cmd("EHLO c");
    expect(await c.cmd("RCPT TO:<alice@example.com>")).toMatchObject({ code: 503 });
    await c.cmd("MAIL FROM:<a@remote.example>");
    expect((await c.cmd("DATA")).text).toBe("5.5.1 No valid recipients");
  });

  test("the message arrives in chunks of at most ipc.chunkBytes, byte-split anywhere", async () => {
    const c = await openSession({
      store: storeWithAlice(),
      metabase: { ipc: { chunkBytes: 1024 } },
    });
    await c.cmd("EHLO c");
    await c.cmd("MAIL FROM:<a@remote.example>");
    await c.cmd("RCPT TO:<alice@example.com>");
    await c.cmd("DATA");
    const lines: string[] = [];
    for (let i = 0; i < 500; i++) lines.push(`line ${i} ${"x".repeat(i % 90)}`);
    const wire = Buffer.from(lines.join("\r\n") + "\r\n.\r\n");
    for (let at = 0; at < wire.length; at += 7) c.send(wire.subarray(at, at + 7));
    expect((await c.reply()).code).toBe(250);
    expect(c.store.appendCalls).toBeGreaterThan(20);
    expect(c.store.text()).toEndWith("\r\n" + lines.join("\r\n") + "\r\n");
  });
});

describe("SMTP smuggling and bare line endings", () => {
  test("\\n.\\n never ends DATA; the message is refused whole and nothing is stored", async () => {
    const c = await openSession({ store: storeWithAlice() });
    await c.cmd("EHLO c");
    await c.cmd("MAIL FROM:<a@remote.example>");
    await c.cmd("RCPT TO:<alice@example.com>");
    await c.cmd("DATA");
    c.send(
      "Subject: hi\r\n\r\nbody\n.\nMAIL FROM:<admin@example.com>\nRCPT TO:<bob@example.com>\nDATA\n" +
        "smuggled\r\n.\nRSET\r\n\r.\r\nQUIT\r\nend\r\n.\r\nNOOP\r\n",
    );
    const r = await c.reply();
    expect(r.code).toBe(550);
    expect(r.text).toStartWith("5.6.0");
    expect((await c.reply()).text).toBe("2.0.0 Ok"); // the NOOP: the only command after the end
    expect(c.pending()).toBe("");
    expect(c.store.messages.length).toBe(0);
    expect(c.store.uploads.size).toBe(0);
  });

  test("\\r.\\r and a bare CR inside a line are refused too", async () => {
    const c = await openSession({ store: storeWithAlice() });
    await c.cmd("EHLO c");
    await c.cmd("MAIL FROM:<a@remote.example>");
    await c.cmd("RCPT TO:<alice@example.com>");
    await c.cmd("DATA");
    c.send("a\r.\rb\r\n.\r\n");
    expect((await c.reply()).code).toBe(550);
    expect(c.store.messages.length).toBe(0);
  });
});

describe("size limits (RFC 1870)", () => {
  test("SIZE= over the limit is refused at MAIL", async () => {
    const c = await openSession({ connector: { maxMessageBytes: 1000 } });
    await c.cmd("EHLO c");
    const r = await c.cmd("MAIL FROM:<a@remote.example> SIZE=1001");
    expect(r.code).toBe(552);
    expect(r.text).toStartWith("5.3.4");
  });

  test("an oversize body is refused at the end with nothing stored or left reserved", async () => {
    const c = await openSession({ store: storeWithAlice(), connector: { maxMessageBytes: 1000 } });
    await c.cmd("EHLO c");
    await c.cmd("MAIL FROM:<a@remote.example>");
    await c.cmd("RCPT TO:<alice@example.com>");
    await c.cmd("DATA");
    for (let i = 0; i < 100; i++) c.send("x".repeat(98) + "\r\n");
    c.send(".\r\n");
    const r = await c.reply();
    expect(r.code).toBe(552);
    expect(r.text).toStartWith("5.3.4");
    expect(c.store.messages.length).toBe(0);
    expect(c.store.uploads.size).toBe(0);
    // Refused before its first chunk filled: no upload was ever opened in the store.
    expect(c.store.aborted.length).toBe(0);
    // The session goes on.
    expect((await c.cmd("RSET")).code).toBe(250);
  });

  test("an overlong message line is refused", async () => {
    const c = await openSession({
      store: storeWithAlice(),
      metabase: { limits: { dataLineBytes: 1000 } },
    });
    await c.cmd("EHLO c");
    await c.cmd("MAIL FROM:<a@remote.example>");
    await c.cmd("RCPT TO:<alice@example.com>");
    await c.cmd("DATA");
    c.send("y".repeat(5000) + "\r\n.\r\n");
    expect(await c.reply()).toMatchObject({ code: 500 });
    expect(c.store.messages.length).toBe(0);
  });
});

describe("the categorizer at RCPT and relaying", () => {
  test("unknown local user 550 5.1.1, remote refused without relay rights (554 5.7.1)", async () => {
    const c = await openSession({ store: storeWithAlice() });
    await c.cmd("EHLO c");
    await c.cmd("MAIL FROM:<a@remote.example>");
    expect((await c.cmd("RCPT TO:<nobody@example.com>")).text).toBe("5.1.1 No such user here");
    expect((await c.cmd("RCPT TO:<victim@elsewhere.example>")).text).toBe(
      "5.7.1 Relay access denied",
    );
    expect((await c.cmd("RCPT TO:<Postmaster>")).code).toBe(550); // no postmaster account here
  });

  test("a client in relayNetworks may relay", async () => {
    const c = await openSession({ connector: { relayNetworks: ["192.0.2.0/24"] } });
    await c.cmd("EHLO c");
    await c.cmd("MAIL FROM:<a@example.com>");
    expect((await c.cmd("RCPT TO:<x@elsewhere.example>")).code).toBe(250);
    await c.cmd("DATA");
    c.send("hi\r\n.\r\n");
    expect((await c.reply()).text).toContain("(q1)");
  });

  test("maxRecipients gives 452 4.5.3, duplicates are kept once", async () => {
    const store = storeWithAlice();
    const c = await openSession({ store, connector: { maxRecipients: 2 } });
    await c.cmd("EHLO c");
    await c.cmd("MAIL FROM:<a@remote.example>");
    expect((await c.cmd("RCPT TO:<alice@example.com>")).code).toBe(250);
    expect((await c.cmd("RCPT TO:<ALICE@example.com>")).code).toBe(250);
    expect((await c.cmd("RCPT TO:<bob@example.com>")).code).toBe(250);
    expect((await c.cmd("RCPT TO:<bob@example.com>")).text).toBe("4.5.3 Too many recipients");
    await c.cmd("DATA");
    c.send("x\r\n.\r\n");
    expect((await c.reply()).code).toBe(250);
    expect(store.messages[0]!.recipients.map((r) => r.address)).toEqual([
      "alice@example.com",
      "bob@example.com",
    ]);
    // Two recipients: no "for" clause that would reveal one to the other.
    expect(store.text()).not.toContain("\tfor <");
  });

  test("a store failure at RCPT is temporary (451 4.3.0)", async () => {
    const store = storeWithAlice();
    store.failNext.set("recipient.resolve", "unavailable");
    const c = await openSession({ store });
    await c.cmd("EHLO c");
    await c.cmd("MAIL FROM:<a@remote.example>");
    expect((await c.cmd("RCPT TO:<alice@example.com>")).text).toStartWith("4.3.0");
  });

  test("DSN parameters and SMTPUTF8 reach delivery.commit", async () => {
    const store = storeWithAlice();
    store.addUser("jörg@example.com", "x");
    const c = await openSession({ store });
    await c.cmd("EHLO c");
    expect((await c.cmd("MAIL FROM:<jörg@example.com>", "utf8")).text).toStartWith("5.6.7");
    await c.cmd("MAIL FROM:<a@remote.example> RET=HDRS ENVID=ab+2Bc SMTPUTF8");
    const rcpt = "RCPT TO:<jörg@example.com> NOTIFY=FAILURE,DELAY ORCPT=rfc822;j+F6rg@example.com";
    expect((await c.cmd(rcpt, "utf8")).code).toBe(250);
    await c.cmd("DATA");
    c.send("x\r\n.\r\n");
    expect((await c.reply()).code).toBe(250);
    const m = store.messages[0]!;
    expect(m).toMatchObject({ envid: "ab+c", ret: "HDRS", smtputf8: true });
    expect(m.recipients).toEqual([
      {
        address: "jörg@example.com",
        dsnNotify: ["FAILURE", "DELAY"],
        orcpt: "rfc822;j\xf6rg@example.com",
      },
    ]);
    expect(Buffer.from(m.body).toString("utf8")).toContain("with UTF8SMTP id");
  });
});

describe("loops, store failures, limits", () => {
  test("too many Received: headers is a loop (554 5.4.6)", async () => {
    const c = await openSession({ store: storeWithAlice(), metabase: { smtp: { maxHops: 3 } } });
    await c.cmd("EHLO c");
    await c.cmd("MAIL FROM:<a@remote.example>");
    await c.cmd("RCPT TO:<alice@example.com>");
    await c.cmd("DATA");
    c.send("Received: a\r\nreceived: b\r\nRECEIVED: c\r\n\r\nbody\r\n.\r\n");
    expect((await c.reply()).text).toStartWith("5.4.6");
    expect(c.store.messages.length).toBe(0);
    // Two hops are fine, and Received: in the body does not count.
    await c.cmd("MAIL FROM:<a@remote.example>");
    await c.cmd("RCPT TO:<alice@example.com>");
    await c.cmd("DATA");
    c.send("Received: a\r\nReceived: b\r\n\r\nReceived: body\r\n.\r\n");
    expect((await c.reply()).code).toBe(250);
  });

  test("a busy store during the body gives 451 4.3.0 and aborts the upload", async () => {
    const store = storeWithAlice();
    const c = await openSession({ store, metabase: { ipc: { chunkBytes: 1024 } } });
    await c.cmd("EHLO c");
    await c.cmd("MAIL FROM:<a@remote.example>");
    await c.cmd("RCPT TO:<alice@example.com>");
    await c.cmd("DATA");
    store.failNext.set("body.append", "busy");
    c.send(("z".repeat(100) + "\r\n").repeat(50) + ".\r\n");
    expect((await c.reply()).text).toStartWith("4.3.0");
    expect(store.messages.length).toBe(0);
    expect(store.uploads.size).toBe(0);
  });

  test("a failing commit is temporary and nothing is acknowledged", async () => {
    const store = storeWithAlice();
    store.failNext.set("delivery.commit", "internal");
    const c = await openSession({ store });
    await c.cmd("EHLO c");
    await c.cmd("MAIL FROM:<a@remote.example>");
    await c.cmd("RCPT TO:<alice@example.com>");
    await c.cmd("DATA");
    c.send("x\r\n.\r\n");
    expect((await c.reply()).code).toBe(451);
    // A one-chunk message went whole (delivery.commitWhole): no upload to abort.
    expect(store.aborted.length).toBe(0);
    expect(store.uploads.size).toBe(0);
    expect(store.messages.length).toBe(0);
    // A message of several chunks had an upload: the failed commit aborts it.
    store.failNext.set("delivery.commit", "internal");
    await c.cmd("MAIL FROM:<a@remote.example>");
    await c.cmd("RCPT TO:<alice@example.com>");
    await c.cmd("DATA");
    c.send(("y".repeat(998) + "\r\n").repeat(100) + ".\r\n");
    expect((await c.reply()).code).toBe(451);
    expect(store.aborted.length).toBe(1);
    expect(store.uploads.size).toBe(0);
    expect(store.messages.length).toBe(0);
  });

  test("a client hanging up during the commit does not abort it", async () => {
    const store = storeWithAlice();
    let open!: () => void;
    store.commitGate = new Promise((resolve) => (open = resolve));
    const c = await openSession({ store });
    await c.cmd("EHLO c");
    await c.cmd("MAIL FROM:<a@remote.example>");
    await c.cmd("RCPT TO:<alice@example.com>");
    await c.cmd("DATA");
    c.send("x\r\n.\r\n");
    await Bun.sleep(5);
    c.session.onClose("peer");
    open();
    await Bun.sleep(5);
    expect(store.messages.length).toBe(1);
    expect(store.aborted).toEqual([]);
    expect(c.pending()).toBe(""); // nobody to answer
  });

  test("an overlong command line gets 500 5.5.2 and the session continues", async () => {
    const c = await openSession();
    const r = await c.cmd("NOOP " + "a".repeat(5000));
    expect(r.code).toBe(500);
    expect(r.text).toStartWith("5.5.2 Line too long");
    expect((await c.cmd("NOOP")).code).toBe(250);
  });

  test("too many bad commands: 421 4.7.0 and the connection closes; errors are logged", async () => {
    const c = await openSession({ metabase: { smtp: { maxBadCommands: 3 } } });
    expect((await c.cmd("FOO")).code).toBe(500);
    expect((await c.cmd("BAR")).code).toBe(500);
    c.send("BAZ\r\nNOOP\r\n");
    expect((await c.reply()).code).toBe(500);
    expect((await c.reply()).text).toBe("4.7.0 Too many errors, closing connection");
    await c.closed();
    expect(c.pending()).toBe(""); // the NOOP was never answered
    expect(c.logs.filter((l) => l.event === "smtp.error_reply").length).toBe(3);
  });

  test("command timeout: 421 4.4.2 and close", async () => {
    const c = await openSession({ connector: { commandTimeoutSeconds: 0.05 } });
    const r = await c.reply();
    expect(r.code).toBe(421);
    expect(r.text).toStartWith("4.4.2");
    await c.closed();
  });

  test("a pipelined burst is answered in order and bounded by pipelineDepth", async () => {
    const c = await openSession({
      store: storeWithAlice(),
      metabase: { limits: { pipelineDepth: 5 } },
    });
    c.send(
      "EHLO c\r\n" + "NOOP\r\n".repeat(30) +
        "MAIL FROM:<a@remote.example>\r\nRCPT TO:<alice@example.com>\r\nRSET\r\n",
    );
    expect((await c.reply()).code).toBe(250);
    for (let i = 0; i < 30; i++) expect((await c.reply()).text).toBe("2.0.0 Ok");
    expect((await c.reply()).text).toBe("2.1.0 Sender ok");
    expect((await c.reply()).text).toBe("2.1.5 Recipient ok");
    expect((await c.reply()).text).toBe("2.0.0 Ok");
    expect(c.conn.paused).toBe(false);
  });

  test("shutdown while idle says 421 and closes", async () => {
    const c = await openSession();
    c.session.onShutdown();
    expect((await c.reply()).code).toBe(421);
    await c.closed();
  });
});

describe("BDAT (RFC 3030)", () => {
  test("chunks with LAST are stored like DATA, without dot handling", async () => {
    const c = await openSession({ store: storeWithAlice() });
    await c.cmd("EHLO c");
    await c.cmd("MAIL FROM:<a@remote.example>");
    await c.cmd("RCPT TO:<alice@example.com>");
    const part1 = "Subject: t\r\n\r\n.dot stays\r\n";
    const part2 = "line two\r\n.\r\n";
    c.send(`BDAT ${part1.length}\r\n${part1}BDAT ${part2.length} LAST\r\n${part2}`);
    expect((await c.reply()).text).toBe(`2.0.0 ${part1.length} octets received`);
    expect((await c.reply()).code).toBe(250);
    expect(c.store.text()).toEndWith("\r\n" + part1 + part2);
    expect((await c.cmd("DATA")).code).toBe(503); // transaction over
  });

  test("BDAT 0 LAST ends; a chunk without a transaction is read and discarded", async () => {
    const c = await openSession({ store: storeWithAlice() });
    await c.cmd("EHLO c");
    c.send("BDAT 12\r\nQUIT\r\nQUIT\r\n");
    expect((await c.reply()).code).toBe(503);
    expect(c.conn.closed).toBe(false); // the QUITs were message bytes, not commands
    await c.cmd("MAIL FROM:<a@remote.example>");
    await c.cmd("RCPT TO:<alice@example.com>");
    c.send("BDAT 3\r\nab\r");
    expect((await c.reply()).code).toBe(250);
    c.send("BDAT 3\r\n\ncd"); // CRLF split across chunks; "cd" has no CRLF yet
    expect((await c.reply()).code).toBe(250);
    c.send("BDAT 0 LAST\r\n");
    expect((await c.reply()).code).toBe(250);
    expect(c.store.text()).toEndWith("\r\nab\r\ncd\r\n"); // a final CRLF is supplied
  });

  test("an oversize BDAT transaction fails and later chunks get 503", async () => {
    const c = await openSession({ store: storeWithAlice(), connector: { maxMessageBytes: 100 } });
    await c.cmd("EHLO c");
    await c.cmd("MAIL FROM:<a@remote.example>");
    await c.cmd("RCPT TO:<alice@example.com>");
    const big = ("q".repeat(48) + "\r\n").repeat(4);
    c.send(`BDAT ${big.length}\r\n${big}BDAT 5 LAST\r\nabc\r\n`);
    expect((await c.reply()).text).toStartWith("5.3.4");
    expect((await c.reply()).code).toBe(503);
    expect(c.store.messages.length).toBe(0);
  });
});

describe("STARTTLS (RFC 3207)", () => {
  test("commands pipelined after STARTTLS are discarded and the session starts over", async () => {
    const c = await openSession({ store: storeWithAlice(), connector: { tls: "starttls" } });
    await c.cmd("EHLO c");
    c.send("STARTTLS\r\nMAIL FROM:<evil@remote.example>\r\nRCPT TO:<alice@example.com>\r\n");
    expect((await c.reply()).text).toBe("2.0.0 Ready to start TLS");
    await Bun.sleep(5);
    expect(c.pending()).toBe("");
    expect(c.conn.secure).toBe(true);
    // The injected MAIL never happened: RCPT has no transaction, and EHLO is needed again.
    expect((await c.cmd("MAIL FROM:<a@remote.example>")).code).toBe(503);
    const ehlo = await c.cmd("EHLO c");
    expect(ehlo.text).not.toContain("STARTTLS");
    expect(ehlo.lines).toContain("AUTH PLAIN LOGIN");
    expect((await c.cmd("STARTTLS")).code).toBe(503);
  });

  test("STARTTLS on a connector without it is not implemented", async () => {
    const c = await openSession();
    expect((await c.cmd("STARTTLS")).code).toBe(502);
  });
});

describe("AUTH (RFC 4954) and submission", () => {
  const submission = {
    role: "submission" as const,
    auth: "required" as const,
    tls: "starttls" as const,
  };

  test("submission: MAIL needs STARTTLS then AUTH; sender must be the user", async () => {
    const c = await openSession({ store: storeWithAlice(), connector: submission });
    await c.cmd("EHLO c");
    expect((await c.cmd("MAIL FROM:<alice@example.com>")).text).toBe(
      "5.7.0 Must issue a STARTTLS command first",
    );
    expect((await c.cmd(`AUTH PLAIN ${b64("\0alice@example.com\0secret")}`)).text).toStartWith(
      "5.7.11",
    );
    await c.cmd("STARTTLS");
    await c.cmd("EHLO c");
    expect((await c.cmd("MAIL FROM:<alice@example.com>")).text).toBe(
      "5.7.0 Authentication required",
    );
    expect((await c.cmd(`AUTH PLAIN ${b64("\0alice@example.com\0secret")}`)).text).toBe(
      "2.7.0 Authentication successful",
    );
    expect((await c.cmd("AUTH PLAIN")).code).toBe(503);
    expect((await c.cmd("MAIL FROM:<bob@example.com>")).text).toStartWith("5.7.1");
    expect((await c.cmd("MAIL FROM:<Alice@example.com>")).code).toBe(250);
    expect((await c.cmd("RCPT TO:<friend@elsewhere.example>")).code).toBe(250); // may relay
    await c.cmd("DATA");
    c.send("hi\r\n.\r\n");
    expect((await c.reply()).code).toBe(250);
    expect(c.store.text(0)).toContain("with ESMTPSA id");
    expect(c.store.text(0)).toContain("(authenticated as alice@example.com)");
  });

  test("LOGIN with prompts; wrong password 535 5.7.8; throttled 454 4.7.0; cancel 501", async () => {
    const store = storeWithAlice();
    store.failuresBeforeThrottle = 2;
    const c = await openSession({ store, secure: true, connector: submission });
    await c.cmd("EHLO c");
    expect((await c.cmd("AUTH LOGIN")).text).toBe(b64("Username:"));
    expect((await c.cmd(b64("alice@example.com"))).text).toBe(b64("Password:"));
    expect((await c.cmd(b64("wrong"))).text).toBe("5.7.8 Authentication credentials invalid");
    expect((await c.cmd("AUTH PLAIN")).code).toBe(334);
    expect((await c.cmd("*")).text).toBe("5.0.0 Authentication cancelled");
    expect((await c.cmd("AUTH PLAIN !!!")).code).toBe(501);
    expect((await c.cmd(`AUTH PLAIN ${b64("\0alice@example.com\0nope")}`)).code).toBe(535);
    expect((await c.cmd(`AUTH PLAIN ${b64("\0alice@example.com\0secret")}`)).text).toStartWith(
      "4.7.0",
    );
    expect((await c.cmd("AUTH CRAM-MD5")).code).toBe(504);
  });

  test("an AUTH continuation line may be 12288 octets (RFC 4954 §4), commands stay capped", async () => {
    const store = storeWithAlice();
    const c = await openSession({ store, secure: true, connector: submission });
    await c.cmd("EHLO c");
    expect((await c.cmd("AUTH PLAIN")).code).toBe(334);
    // A long response is read whole and judged: PLAIN fields are at most 255 octets (RFC 4616
    // §2), so this one is a 501 syntax error, not a "line too long".
    const long = b64("\0alice@example.com\0" + "p".repeat(9000));
    expect(long.length).toBeGreaterThan(4096);
    const judged = await c.cmd(long);
    expect(judged.code).toBe(501);
    expect(judged.text).not.toStartWith("5.5.6");
    expect((await c.cmd("AUTH PLAIN")).code).toBe(334);
    expect((await c.cmd("x".repeat(13000))).text).toStartWith("5.5.6");
    // Back in command mode the ordinary limit (limits.lineBytes) applies again.
    expect((await c.cmd("NOOP " + "y".repeat(5000))).text).toStartWith("5.5.2");
    expect((await c.cmd("NOOP")).code).toBe(250);
  });

  test("a failed AUTH is answered only after auth.failureDelayMs", async () => {
    const c = await openSession({
      store: storeWithAlice(),
      secure: true,
      metabase: { auth: { failureDelayMs: 150 } },
    });
    await c.cmd("EHLO c");
    c.send(`AUTH PLAIN ${b64("\0alice@example.com\0bad")}\r\n`);
    await Bun.sleep(20);
    expect(c.pending()).toBe(""); // still waiting out the delay
    expect((await c.reply()).code).toBe(535);
  });

  test("submission with optional auth refuses RCPT before AUTH (530)", async () => {
    const c = await openSession({
      store: storeWithAlice(),
      connector: { role: "submission", auth: "optional" },
    });
    await c.cmd("EHLO c");
    await c.cmd("MAIL FROM:<alice@example.com>");
    expect((await c.cmd("RCPT TO:<bob@example.com>")).code).toBe(530);
  });

  test("MX with AUTH: the sender must be owned; a store failure is temporary (451)", async () => {
    const store = storeWithAlice();
    store.aliases.set("sales@example.com", "alice@example.com");
    const c = await openSession({ store, secure: true, connector: { role: "mx" } });
    await c.cmd("EHLO c");
    expect((await c.cmd(`AUTH PLAIN ${b64("\0alice@example.com\0secret")}`)).code).toBe(235);
    expect((await c.cmd("MAIL FROM:<ceo@bank.example>")).text).toBe(
      "5.7.1 Sender address not owned by alice@example.com",
    );
    expect((await c.cmd("MAIL FROM:<sales@example.com>")).code).toBe(250);
    await c.cmd("RSET");
    store.failNext.set("account.ownsAddress", "unavailable");
    expect((await c.cmd("MAIL FROM:<alice@example.com>")).text).toStartWith("4.3.0");
    expect((await c.cmd("MAIL FROM:<alice+x@example.com>")).code).toBe(250);
    expect((await c.cmd("RCPT TO:<friend@elsewhere.example>")).code).toBe(250); // may relay
  });

  test("an authenticated client's From: must be its own, as MAIL FROM must (550 5.7.1)", async () => {
    const store = storeWithAlice();
    store.aliases.set("sales@example.com", "alice@example.com");
    const c = await openSession({ store, secure: true, connector: { role: "submission" } });
    await c.cmd("EHLO c");
    expect((await c.cmd(`AUTH PLAIN ${b64("\0alice@example.com\0secret")}`)).code).toBe(235);
    const send = async (header: string) => {
      await c.cmd("MAIL FROM:<alice@example.com>");
      await c.cmd("RCPT TO:<friend@elsewhere.example>");
      expect((await c.cmd("DATA")).code).toBe(354);
      c.send(`${header}Subject: hi\r\n\r\nhello\r\n.\r\n`);
      return await c.reply();
    };
    const forged = await send("From: The CEO <ceo@example.com>\r\n");
    expect(forged.code).toBe(550);
    expect(forged.text).toBe(
      "5.7.1 From: address ceo@example.com is not owned by alice@example.com",
    );
    expect((await send("From: Alice <alice@example.com>\r\n")).code).toBe(250);
    expect((await send("From: Sales <sales@example.com>\r\n")).code).toBe(250);
    expect((await send("")).code).toBe(250); // no From: at all: the receiver judges it
    // every author counts: a list cannot slip a foreign one in ahead of an owned one
    expect((await send("From: ceo@example.com, <alice@example.com>\r\n")).code).toBe(550);
    // a resend is judged by its Resent-From: (the transport signs for it too)
    expect((await send("Resent-From: alice@example.com\r\nFrom: x@elsewhere.example\r\n")).code)
      .toBe(250);
    // a header longer than the first chunk cannot hide its From: from the check
    const padding = `X-Pad: ${"p".repeat(70)}\r\n`.repeat(1000);
    expect((await send(padding + "From: ceo@example.com\r\n")).code).toBe(550);
    expect(c.store.messages.length).toBe(4);
  });

  test("fromMustMatch: false checks MAIL FROM only; unauthenticated mail is not checked", async () => {
    const store = storeWithAlice();
    const c = await openSession({
      store,
      secure: true,
      connector: { role: "submission", fromMustMatch: false },
    });
    await c.cmd("EHLO c");
    await c.cmd(`AUTH PLAIN ${b64("\0alice@example.com\0secret")}`);
    await c.cmd("MAIL FROM:<alice@example.com>");
    await c.cmd("RCPT TO:<friend@elsewhere.example>");
    await c.cmd("DATA");
    c.send("From: someone@else.example\r\n\r\nhi\r\n.\r\n");
    expect((await c.reply()).code).toBe(250);
    const mx = await openSession({ store: storeWithAlice() });
    await mx.cmd("EHLO c");
    await mx.cmd("MAIL FROM:<x@remote.example>");
    await mx.cmd("RCPT TO:<alice@example.com>");
    await mx.cmd("DATA");
    mx.send("From: ceo@example.com\r\n\r\nhi\r\n.\r\n");
    expect((await mx.reply()).code).toBe(250);
  });

  test("auth none: AUTH is neither offered nor accepted", async () => {
    const c = await openSession({ loopback: true, connector: { auth: "none" } });
    expect((await c.cmd("EHLO c")).text).not.toContain("AUTH");
    expect((await c.cmd("AUTH PLAIN")).code).toBe(502);
  });
});
