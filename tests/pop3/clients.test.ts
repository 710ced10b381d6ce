// POP3 against real, independent clients: Python's poplib (plain, STLS, pop3s, AUTH PLAIN) and
// curl (pop3:// with STLS, pop3s://), including a 20 MB message compared byte for byte.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { createHash } from "node:crypto";
import { MemoryStore } from "./memory-store.ts";
import { curl, python, startPop3, type TestServer } from "./harness.ts";

let store: MemoryStore;
let server: TestServer;
let big: Uint8Array;

const SMALL = "From: x@example.com\r\nSubject: hi\r\n\r\nfirst\r\n.\r\n..two dots\r\nlast\r\n";

/** A 20 MB message whose lines often start with dots, with CRLF endings throughout. */
function bigMessage(): Uint8Array {
  const parts: string[] = ["Subject: big\r\n\r\n"];
  let n = 0;
  let i = 0;
  while (n < 20 * 1024 * 1024) {
    const line = (i % 7 === 0 ? "." : "") + `line ${i} ` + "x".repeat(i % 97) + "\r\n";
    parts.push(line);
    n += line.length;
    i++;
  }
  return new TextEncoder().encode(parts.join(""));
}

const sha = (b: Uint8Array) => createHash("sha256").update(b).digest("hex");

beforeAll(async () => {
  store = new MemoryStore();
  store.addUser("alice@example.com", "secret");
  store.addUser("bob@example.com", "bobsecret");
  store.addUser("dave@example.com", "davesecret");
  store.deliver("alice@example.com", SMALL);
  store.deliver("alice@example.com", "Subject: second\r\n\r\nsecond body\r\n");
  big = bigMessage();
  store.deliver("bob@example.com", big);
  for (let i = 0; i < 3; i++) store.deliver("dave@example.com", `Subject: d${i}\r\n\r\nd${i}\r\n`);
  server = await startPop3(store.service(), { auth: { failureDelayMs: 0 } });
});
afterAll(async () => {
  await server.close();
});

const PY_PRELUDE = `
import poplib, ssl, json, os, base64, hashlib
port = int(os.environ["PORT"])
ctx = ssl.create_default_context()
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
out = {}
`;

describe("poplib", () => {
  test("every command over plaintext on loopback", async () => {
    const out = JSON.parse(
      await python(
        PY_PRELUDE + `
p = poplib.POP3("127.0.0.1", port)
out["welcome"] = p.getwelcome().decode()
out["capa"] = sorted(p.capa().keys())
p.user("alice@example.com")
p.pass_("secret")
out["stat"] = list(p.stat())
out["list"] = [l.decode() for l in p.list()[1]]
out["uidl"] = [l.decode() for l in p.uidl()[1]]
out["uidl1"] = p.uidl(1).decode()
resp, lines, octets = p.retr(1)
out["retr"] = (b"\\r\\n".join(lines) + b"\\r\\n").decode()
out["octets"] = octets
out["top"] = [l.decode() for l in p.top(1, 1)[1]]
out["noop"] = p.noop().decode()
out["dele"] = p.dele(2).decode()
out["stat_after_dele"] = list(p.stat())
out["rset"] = p.rset().decode()
out["stat_after_rset"] = list(p.stat())
out["quit"] = p.quit().decode()
print(json.dumps(out))
`,
        { PORT: String(server.port) },
      ),
    );
    expect(out.welcome).toStartWith("+OK");
    expect(out.capa).toEqual(expect.arrayContaining(["TOP", "UIDL", "USER", "STLS", "SASL"]));
    expect(out.stat).toEqual([2, SMALL.length + 32]);
    expect(out.list).toEqual([`1 ${SMALL.length}`, "2 32"]);
    expect(out.uidl).toHaveLength(2);
    expect(out.uidl1).toBe(`+OK ${out.uidl[0]}`);
    expect(out.retr).toBe(SMALL); // poplib un-stuffs: byte-exact round trip
    expect(out.top).toEqual(["From: x@example.com", "Subject: hi", "", "first"]);
    expect(out.dele).toStartWith("+OK");
    expect(out.stat_after_dele[0]).toBe(1);
    expect(out.stat_after_rset[0]).toBe(2);
    expect(out.quit).toStartWith("+OK");
  });

  test("STLS then login; pop3s; AUTH PLAIN with an initial response", async () => {
    const out = JSON.parse(
      await python(
        PY_PRELUDE + `
p = poplib.POP3("127.0.0.1", port)
out["stls"] = p.stls(context=ctx).decode()
out["capa_after"] = sorted(p.capa().keys())
p.user("alice@example.com")
p.pass_("secret")
out["tls_stat"] = list(p.stat())
p.quit()
s = poplib.POP3_SSL("127.0.0.1", int(os.environ["TLSPORT"]), context=ctx)
ir = base64.b64encode(b"\\0alice@example.com\\0secret").decode()
out["auth"] = s._shortcmd("AUTH PLAIN " + ir).decode()
out["ssl_retr"] = (b"\\r\\n".join(s.retr(1)[1]) + b"\\r\\n").decode()
s.quit()
print(json.dumps(out))
`,
        { PORT: String(server.port), TLSPORT: String(server.tlsPort) },
      ),
    );
    expect(out.stls).toStartWith("+OK");
    expect(out.capa_after).not.toContain("STLS"); // RFC 2595: not offered once TLS is on
    expect(out.tls_stat[0]).toBe(2);
    expect(out.auth).toStartWith("+OK");
    expect(out.ssl_retr).toBe(SMALL);
  });

  test("the lock, DELE+QUIT, and a dropped connection committing nothing", async () => {
    const out = JSON.parse(
      await python(
        PY_PRELUDE + `
a = poplib.POP3("127.0.0.1", port)
a.user("dave@example.com"); a.pass_("davesecret")
b = poplib.POP3("127.0.0.1", port)
b.user("dave@example.com")
try:
    b.pass_("davesecret")
    out["second"] = "logged in"
except poplib.error_proto as e:
    out["second"] = e.args[0].decode()
a.dele(1)
a.sock.close()  # dropped without QUIT: DELE is forgotten
a.file.close()
import time; time.sleep(0.1)
b.user("dave@example.com"); b.pass_("davesecret")
out["after_drop"] = list(b.stat())
b.dele(1); b.dele(3)
b.quit()
c = poplib.POP3("127.0.0.1", port)
c.user("dave@example.com"); c.pass_("davesecret")
out["after_quit"] = [l.decode() for l in c.top(1, 0)[1]]
out["count"] = c.stat()[0]
c.quit()
print(json.dumps(out))
`,
        { PORT: String(server.port) },
      ),
    );
    expect(out.second).toStartWith("-ERR [IN-USE]");
    expect(out.after_drop[0]).toBe(3);
    expect(out.count).toBe(1);
    expect(out.after_quit).toEqual(["Subject: d1", ""]);
  });
});

describe("curl", () => {
  test("pop3:// with STLS required: LIST and a 20 MB RETR, byte-exact", async () => {
    const list = await curl([
      "--ssl-reqd",
      "-k",
      "-u",
      "bob@example.com:bobsecret",
      `pop3://127.0.0.1:${server.port}/`,
    ]);
    expect(list.stderr).toBe("");
    expect(new TextDecoder().decode(list.stdout).trim()).toBe(`1 ${big.length}`);
    const retr = await curl([
      "--ssl-reqd",
      "-k",
      "-u",
      "bob@example.com:bobsecret",
      `pop3://127.0.0.1:${server.port}/1`,
    ]);
    expect(retr.code).toBe(0);
    expect(retr.stdout.length).toBe(big.length);
    expect(sha(retr.stdout)).toBe(sha(big));
  });

  test("pop3s:// with AUTH PLAIN (SASL-IR), and bad credentials", async () => {
    const retr = await curl([
      "-k",
      "--sasl-ir",
      "--login-options",
      "AUTH=PLAIN",
      "-u",
      "alice@example.com:secret",
      `pop3s://127.0.0.1:${server.tlsPort}/1`,
    ]);
    expect(retr.stderr).toBe("");
    expect(new TextDecoder().decode(retr.stdout)).toBe(SMALL);
    const bad = await curl([
      "-k",
      "-u",
      "alice@example.com:wrong",
      `pop3s://127.0.0.1:${server.tlsPort}/1`,
    ]);
    expect(bad.code).not.toBe(0);
  });

  test("curl with AUTH=LOGIN, with and without the initial response", async () => {
    for (const ir of [[], ["--sasl-ir"]]) {
      const retr = await curl([
        "-k",
        ...ir,
        "--login-options",
        "AUTH=LOGIN",
        "-u",
        "alice@example.com:secret",
        `pop3s://127.0.0.1:${server.tlsPort}/1`,
      ]);
      expect(retr.stderr).toBe("");
      expect(new TextDecoder().decode(retr.stdout)).toBe(SMALL);
    }
  });

  test("curl's DELE request (-X DELE) then a new session no longer lists it", async () => {
    store.addUser("erin@example.com", "erinpw");
    store.deliver("erin@example.com", "Subject: e1\r\n\r\n1\r\n");
    store.deliver("erin@example.com", "Subject: e2\r\n\r\n2\r\n");
    const dele = await curl([
      "-u",
      "erin@example.com:erinpw",
      "-X",
      "DELE",
      "-I", // no transfer
      `pop3://127.0.0.1:${server.port}/1`,
    ]);
    expect(dele.code).toBe(0);
    const list = await curl(["-u", "erin@example.com:erinpw", `pop3://127.0.0.1:${server.port}/`]);
    expect(new TextDecoder().decode(list.stdout).trim().split("\r\n")).toHaveLength(1);
  });
});
