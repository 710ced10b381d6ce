// POP3 at the protocol level with a raw client: every command, bad input, states, the lock,
// DELE+RSET, DELE+QUIT, a dropped connection, store failures, throttled auth.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { MemoryStore } from "./memory-store.ts";
import { RawClient, startPop3, type TestServer } from "./harness.ts";
import { eventually } from "../helpers.ts";

const b64 = (s: string) => Buffer.from(s).toString("base64");
let store: MemoryStore;
let server: TestServer;

const MSG1 = "From: a@example.com\r\nSubject: one\r\n\r\nHello\r\n.dot line\r\nbye\r\n";
const MSG2 = "Subject: two\r\n\r\nline1\r\nline2\r\nline3\r\n";

beforeAll(async () => {
  store = new MemoryStore();
  store.addUser("alice@example.com", "pw alice");
  store.addUser("bob@example.com", "bobpw");
  store.addUser("carol@example.com", "carolpw");
  store.chunkBytes = 7; // cut messages everywhere: dot-stuffing must not care
  store.deliver("alice@example.com", MSG1);
  store.deliver("alice@example.com", MSG2);
  for (let i = 0; i < 3; i++) {
    store.deliver("bob@example.com", `Subject: b${i}\r\n\r\nbody ${i}\r\n`);
  }
  server = await startPop3(store.service());
});
afterAll(async () => {
  await server.close();
});

async function login(user: string, pass: string): Promise<RawClient> {
  const c = await RawClient.connect(server.port);
  expect(await c.line()).toStartWith("+OK");
  expect(await c.command(`USER ${user}`)).toStartWith("+OK");
  expect(await c.command(`PASS ${pass}`)).toStartWith("+OK");
  return c;
}

describe("POP3 protocol", () => {
  test("CAPA lists the extensions, STLS and plaintext mechanisms on loopback", async () => {
    const c = await RawClient.connect(server.port);
    await c.line();
    expect(await c.command("CAPA")).toBe("+OK Capability list follows");
    const caps = await c.multiline();
    for (const cap of ["TOP", "UIDL", "USER", "SASL PLAIN LOGIN", "RESP-CODES", "AUTH-RESP-CODE"]) {
      expect(caps).toContain(cap);
    }
    expect(caps).toContain("PIPELINING");
    expect(caps).toContain("STLS");
    c.end();
  });

  test("every transaction command on a live maildrop", async () => {
    const c = await login("alice@example.com", "pw alice"); // password with a space
    expect(await c.command("STAT")).toBe(`+OK 2 ${MSG1.length + MSG2.length}`);
    expect(await c.command("LIST")).toStartWith("+OK");
    expect(await c.multiline()).toEqual([`1 ${MSG1.length}`, `2 ${MSG2.length}`]);
    expect(await c.command("LIST 2")).toBe(`+OK 2 ${MSG2.length}`);
    expect(await c.command("UIDL")).toStartWith("+OK");
    const uidl = await c.multiline();
    expect(uidl).toHaveLength(2);
    expect(await c.command("UIDL 1")).toBe(`+OK ${uidl[0]}`);
    expect(await c.command("RETR 1")).toBe(`+OK ${MSG1.length} octets`);
    const body = await c.multiline();
    expect(body).toContain("..dot line"); // dot-stuffed on the wire
    expect(body.map((l) => l.startsWith(".") ? l.slice(1) : l).join("\r\n") + "\r\n").toBe(MSG1);
    expect(await c.command("TOP 2 1")).toStartWith("+OK");
    expect(await c.multiline()).toEqual(["Subject: two", "", "line1"]);
    expect(await c.command("TOP 2 0")).toStartWith("+OK");
    expect(await c.multiline()).toEqual(["Subject: two", ""]);
    expect(await c.command("NOOP")).toBe("+OK");
    expect(await c.command("CAPA")).toStartWith("+OK");
    expect(await c.multiline()).not.toContain("USER");
    expect(await c.command("QUIT")).toStartWith("+OK");
    await c.untilClosed();
  });

  test("bad input gets -ERR and the session goes on", async () => {
    const c = await RawClient.connect(server.port);
    await c.line();
    expect(await c.command("FROB")).toStartWith("-ERR");
    expect(await c.command("")).toStartWith("-ERR");
    expect(await c.command("STAT")).toStartWith("-ERR"); // wrong state
    expect(await c.command("PASS x")).toStartWith("-ERR"); // PASS before USER
    expect(await c.command("X".repeat(10_000))).toStartWith("-ERR Line too long");
    // RFC 1939 §7: PASS only immediately after USER; anything between starts over.
    expect(await c.command("USER bob@example.com")).toStartWith("+OK");
    expect(await c.command("CAPA")).toStartWith("+OK");
    await c.multiline();
    expect(await c.command("PASS bobpw")).toBe("-ERR Send USER first");
    expect(await c.command("USER bob@example.com")).toStartWith("+OK");
    expect(await c.command("PASS bobpw")).toStartWith("+OK");
    for (const bad of ["RETR", "RETR 0", "RETR x", "RETR 99", "LIST 1 2", "TOP 1", "TOP 1 -1"]) {
      expect(await c.command(bad)).toStartWith("-ERR");
    }
    expect(await c.command("USER bob@example.com")).toStartWith("-ERR"); // wrong state
    expect(await c.command("RETR 1\x00")).toStartWith("-ERR");
    expect(await c.command("STAT")).toStartWith("+OK 3 ");
    c.end();
  });

  test("pipelined commands are answered in order", async () => {
    const c = await RawClient.connect(server.port);
    await c.line();
    c.send("USER bob@example.com\r\nPASS bobpw\r\nSTAT\r\nRETR 1\r\nNOOP\r\nQUIT\r\n");
    expect(await c.line()).toStartWith("+OK");
    expect(await c.line()).toStartWith("+OK Logged in");
    expect(await c.line()).toStartWith("+OK 3");
    expect(await c.line()).toStartWith("+OK");
    expect(await c.multiline()).toEqual(["Subject: b0", "", "body 0"]);
    expect(await c.line()).toBe("+OK");
    expect(await c.line()).toStartWith("+OK");
    await c.untilClosed();
  });

  test("the maildrop lock: a second session gets [IN-USE]; a drop releases it", async () => {
    const a = await login("bob@example.com", "bobpw");
    const b = await RawClient.connect(server.port);
    await b.line();
    await b.command("USER bob@example.com");
    expect(await b.command("PASS bobpw")).toStartWith("-ERR [IN-USE]");
    expect(await a.command("DELE 1")).toStartWith("+OK");
    a.socket.terminate(); // dropped: nothing committed, lock released
    await a.untilClosed();
    await Bun.sleep(30);
    await b.command("USER bob@example.com");
    expect(await b.command("PASS bobpw")).toStartWith("+OK");
    expect(await b.command("STAT")).toStartWith("+OK 3 ");
    b.end();
  });

  test("DELE + RSET keeps everything; DELE + QUIT removes", async () => {
    const c = await login("carol@example.com", "carolpw");
    await c.command("QUIT");
    store.deliver("carol@example.com", "Subject: c1\r\n\r\n1\r\n");
    store.deliver("carol@example.com", "Subject: c2\r\n\r\n2\r\n");
    const d = await login("carol@example.com", "carolpw");
    expect(await d.command("DELE 1")).toBe("+OK Message 1 deleted");
    expect(await d.command("DELE 1")).toStartWith("-ERR"); // already marked
    expect(await d.command("RETR 1")).toStartWith("-ERR");
    expect(await d.command("STAT")).toStartWith("+OK 1 ");
    expect(await d.command("LIST")).toStartWith("+OK");
    expect((await d.multiline()).map((l) => l.split(" ")[0])).toEqual(["2"]);
    expect(await d.command("RSET")).toStartWith("+OK");
    expect(await d.command("STAT")).toStartWith("+OK 2 ");
    expect(await d.command("DELE 2")).toStartWith("+OK");
    expect(await d.command("QUIT")).toStartWith("+OK");
    await d.untilClosed();
    const e = await login("carol@example.com", "carolpw");
    expect(await e.command("LIST")).toStartWith("+OK 1 ");
    expect(await e.multiline()).toHaveLength(1);
    expect(await e.command("TOP 1 0")).toStartWith("+OK");
    expect(await e.multiline()).toEqual(["Subject: c1", ""]);
    e.end();
  });

  test("AUTH PLAIN with an initial response, with a challenge, and cancelled", async () => {
    const c = await RawClient.connect(server.port);
    await c.line();
    expect(await c.command("AUTH")).toBe("+OK");
    expect(await c.multiline()).toEqual(["PLAIN", "LOGIN"]);
    expect(await c.command("AUTH CRAM-MD5")).toStartWith("-ERR");
    expect(await c.command("AUTH PLAIN")).toBe("+ ");
    expect(await c.command("*")).toStartWith("-ERR");
    expect(await c.command("AUTH PLAIN")).toBe("+ ");
    expect(await c.command("!!notbase64")).toStartWith("-ERR");
    expect(await c.command(`AUTH PLAIN ${b64("other\0bob@example.com\0bobpw")}`)).toStartWith(
      "-ERR [AUTH]",
    );
    expect(await c.command(`AUTH PLAIN ${b64("\0bob@example.com\0wrong")}`)).toStartWith(
      "-ERR [AUTH]",
    );
    expect(await c.command("AUTH PLAIN")).toBe("+ ");
    expect(await c.command(b64("\0bob@example.com\0bobpw"))).toStartWith("+OK");
    expect(await c.command("STAT")).toStartWith("+OK");
    c.end();
  });

  test("AUTH LOGIN: prompts, initial response, cancel, bad password", async () => {
    const c = await RawClient.connect(server.port);
    await c.line();
    // draft-murchison-sasl-login: "Username:" then "Password:", each base64
    expect(await c.command("AUTH LOGIN")).toBe(`+ ${b64("Username:")}`);
    expect(await c.command("*")).toBe("-ERR Authentication cancelled");
    expect(await c.command("AUTH LOGIN")).toBe(`+ ${b64("Username:")}`);
    expect(await c.command(b64("bob@example.com"))).toBe(`+ ${b64("Password:")}`);
    expect(await c.command(b64("wrong"))).toStartWith("-ERR [AUTH]");
    expect(await c.command("AUTH LOGIN")).toBe(`+ ${b64("Username:")}`);
    expect(await c.command("!!")).toStartWith("-ERR Malformed AUTH LOGIN response");
    expect(await c.command(`AUTH LOGIN ${b64("bob@example.com")}`)).toBe(`+ ${b64("Password:")}`);
    expect(await c.command(b64("bobpw"))).toStartWith("+OK");
    expect(await c.command("STAT")).toStartWith("+OK");
    c.end();
  });

  test("bad credentials: [AUTH]; throttled: [AUTH]; store busy: [SYS/TEMP]", async () => {
    const c = await RawClient.connect(server.port);
    await c.line();
    await c.command("USER bob@example.com");
    expect(await c.command("PASS nope")).toBe("-ERR [AUTH] Invalid user name or password");
    store.throttled = true;
    await c.command("USER bob@example.com");
    expect(await c.command("PASS bobpw")).toStartWith("-ERR [AUTH] Too many failed logins");
    store.throttled = false;
    store.failNext.set("auth.verify", "busy");
    await c.command("USER bob@example.com");
    expect(await c.command("PASS bobpw")).toStartWith("-ERR [SYS/TEMP]");
    store.failNext.set("mailbox.lock", "unavailable");
    await c.command("USER bob@example.com");
    const unlocked = store.unlockedByOwner.length;
    expect(await c.command("PASS bobpw")).toStartWith("-ERR [SYS/TEMP]");
    // The store may take a lock after the call failed on our side: the session lets go of
    // whatever it holds, by owner.
    await eventually(() => store.unlockedByOwner.length === unlocked + 1);
    // Locked, but the listing fails: a temporary error, and the lock is let go (the next
    // login would be "in use" otherwise).
    store.failNext.set("folder.messages", "unavailable");
    await c.command("USER bob@example.com");
    expect(await c.command("PASS bobpw")).toStartWith("-ERR [SYS/TEMP]");
    await c.command("USER bob@example.com");
    expect(await c.command("PASS bobpw")).toStartWith("+OK");
    store.failNext.set("message.read", "busy");
    expect(await c.command("RETR 1")).toStartWith("-ERR [SYS/TEMP]");
    expect(await c.command("RETR 1")).toStartWith("+OK");
    await c.multiline();
    expect(server.log.records.some((r) => r.event === "auth.failed")).toBe(true);
    c.end();
  });
});

describe("POP3 login, the peer leaving", () => {
  test("mid-listing: the listing stops at the batch in hand and the lock is let go", async () => {
    const dave = store.addUser("dave@example.com", "davepw");
    for (let i = 0; i < 10; i++) {
      store.deliver("dave@example.com", `Subject: d${i}\r\n\r\n${i}\r\n`);
    }
    let open!: () => void;
    store.listingGate = new Promise<void>((r) => open = r);
    store.listedBatches = 0;
    try {
      const c = await RawClient.connect(server.port);
      await c.line();
      expect(await c.command("USER dave@example.com")).toStartWith("+OK");
      c.send("PASS davepw\r\n");
      await eventually(() => store.listedBatches === 1); // locked, listing, held at batch 2
      expect(store.locks.has(dave.userId)).toBe(true);
      // Open the gate only once this session has heard that its peer left.
      const port = c.socket.localPort;
      const conn = server.log.records.find((r) => r.event === "connection.open" && r.port === port)
        ?.conn;
      expect(conn).toBeDefined();
      c.end();
      await eventually(() =>
        server.log.records.some((r) => r.event === "session.closed" && r.conn === conn)
      );
      open();
      await eventually(() => !store.locks.has(dave.userId));
      expect(store.listedBatches).toBe(2); // the batch on its way, then no more of the 5
    } finally {
      store.listingGate = null;
      open();
    }
  });
});

describe("POP3 plaintext policy", () => {
  test("auth.plaintext=tls refuses USER and AUTH PLAIN without TLS", async () => {
    const strict = await startPop3(store.service(), { auth: { plaintext: "tls" } });
    try {
      const c = await RawClient.connect(strict.port);
      await c.line();
      expect(await c.command("CAPA")).toStartWith("+OK");
      const caps = await c.multiline();
      expect(caps).not.toContain("USER");
      expect(caps).toContain("STLS");
      expect(await c.command("USER bob@example.com")).toStartWith("-ERR [AUTH]");
      expect(await c.command(`AUTH PLAIN ${b64("\0bob@example.com\0bobpw")}`)).toStartWith(
        "-ERR [AUTH]",
      );
      c.end();
    } finally {
      await strict.close();
    }
  });
});

describe("POP3 shutdown", () => {
  test("close(grace) ends idle sessions without committing and releases their locks", async () => {
    const s2 = new MemoryStore();
    s2.addUser("zed@example.com", "zedpw");
    s2.deliver("zed@example.com", "Subject: z\r\n\r\nz\r\n");
    const srv = await startPop3(s2.service());
    const c = await RawClient.connect(srv.port);
    await c.line();
    await c.command("USER zed@example.com");
    expect(await c.command("PASS zedpw")).toStartWith("+OK");
    expect(await c.command("DELE 1")).toStartWith("+OK");
    expect(s2.locks.size).toBe(1);
    await srv.close();
    await c.untilClosed();
    await Bun.sleep(20);
    expect(s2.locks.size).toBe(0);
    expect(s2.users.get("zed@example.com")!.messages).toHaveLength(1); // DELE not committed
  });
});

describe("POP3 lock owners", () => {
  test("a failed lock's unlock-by-owner never releases another session's lock", async () => {
    // Two listeners of one worker (pop3 and pop3s, or a listener re-bound for a renewed
    // certificate) number their connections from 1 each: connection ids repeat on one binding.
    const s = new MemoryStore();
    s.addUser("amy@example.com", "amypw");
    s.addUser("ben@example.com", "benpw");
    const one = await startPop3(s.service());
    const two = await startPop3(s.service());
    try {
      const a = await RawClient.connect(one.port);
      await a.line();
      await a.command("USER amy@example.com");
      expect(await a.command("PASS amypw")).toStartWith("+OK");
      const b = await RawClient.connect(two.port);
      await b.line();
      s.failNext.set("mailbox.lock", "unavailable");
      await b.command("USER ben@example.com");
      expect(await b.command("PASS benpw")).toStartWith("-ERR [SYS/TEMP]");
      await eventually(() => s.unlockedByOwner.length === 1);
      // Amy's session still holds her maildrop (RFC 1939 §8): a second login is refused.
      const c = await RawClient.connect(one.port);
      await c.line();
      await c.command("USER amy@example.com");
      expect(await c.command("PASS amypw")).toStartWith("-ERR [IN-USE]");
      for (const x of [a, b, c]) x.end();
    } finally {
      await one.close();
      await two.close();
    }
  });
});
