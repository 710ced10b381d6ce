// POP3 over the real store (store/mod.ts, SQLite + page file): messages delivered through the
// store API and through the SMTP engine show up byte-exact in poplib; UIDL survives a restart;
// DELE+QUIT removes for good; the lock holds across sessions.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createDirectStoreClient, type StoreClient } from "../../ipc/store-client.ts";
import { memoryLogger, silentLogger } from "../../log/mod.ts";
import { Metabase } from "../../metabase/schema.ts";
import type { BoundListener } from "../../protocols/engine.ts";
import { pop3Engine } from "../../protocols/pop3/mod.ts";
import { smtpEngine } from "../../protocols/smtp/mod.ts";
import { openStore, type Store } from "../../store/mod.ts";
import { python, testTls } from "./harness.ts";

const dir = mkdtempSync(join(tmpdir(), "posthorn-pop3-store-"));
const config = Metabase.parse({
  server: { hostname: "localhost" },
  auth: { plaintext: "tls-or-loopback", failureDelayMs: 0 },
  domains: [{ name: "example.com" }],
  smtp: { connectors: [{ name: "mx", port: 0, tls: "none", role: "mx" }] },
  pop3: { listeners: [{ name: "pop3", port: 0, tls: "starttls" }] },
});

function open(): Store {
  return openStore({
    dir,
    durability: "off",
    groupCommitMs: 0,
    pageBytes: config.store.pageBytes,
    quotaBytes: null,
    quotaMessages: null,
    domains: config.domains,
    auth: config.auth,
    log: silentLogger,
    chunkBytes: config.ipc.chunkBytes,
    argon2: { memoryCost: 256, timeCost: 1 },
  });
}

let store: Store;
let client: StoreClient & { close(): void };
let listeners: BoundListener[] = [];
let pop3Port = 0;
let smtpPort = 0;

async function start(): Promise<void> {
  store = open();
  client = createDirectStoreClient(store.service, "pop3-real");
  const ctx = {
    config: () => config,
    tls: testTls,
    store: client,
    log: memoryLogger("real"),
    workerIndex: 0,
  };
  const pop3 = await pop3Engine.listen(config.pop3.listeners[0]!, ctx);
  const smtp = await smtpEngine.listen(config.smtp.connectors[0]!, ctx);
  listeners = [pop3, smtp];
  pop3Port = pop3.port;
  smtpPort = smtp.port;
}

async function stop(): Promise<void> {
  await Promise.all(listeners.map((l) => l.close(200)));
  client.close();
  await store.close();
}

async function deliver(to: string, body: string | Uint8Array): Promise<void> {
  const { uploadId } = await client.call("body.begin", {});
  const bytes = typeof body === "string" ? new TextEncoder().encode(body) : body;
  for (let i = 0; i < bytes.length; i += 65536) {
    await client.call("body.append", { uploadId, chunk: bytes.subarray(i, i + 65536) });
  }
  const res = await client.call("delivery.commit", {
    uploadId,
    sender: "sender@example.org",
    recipients: [{ address: to }],
  });
  expect(res.delivered).toHaveLength(1);
}

const PY = `
import poplib, json, os, smtplib
port = int(os.environ["PORT"])
def session(user, pw):
    p = poplib.POP3("127.0.0.1", port)
    p.user(user); p.pass_(pw)
    return p
out = {}
`;

const MSG =
  "From: s@example.org\r\nTo: alice@example.com\r\nSubject: real\r\n\r\n.leading dot\r\nend\r\n";

beforeAll(async () => {
  await start();
  await store.addUser("alice@example.com", "alicepw");
  await store.addUser("bob@example.com", "bobpw");
  await deliver("alice@example.com", MSG);
  await deliver("alice@example.com", "Subject: two\r\n\r\nsecond\r\n");
});
afterAll(async () => {
  await stop();
  rmSync(dir, { recursive: true, force: true });
});

describe("POP3 over the real store", () => {
  test("RETR is byte-exact and LIST sizes match the bytes sent", async () => {
    const out = JSON.parse(
      await python(
        PY + `
p = session("alice@example.com", "alicepw")
out["list"] = [l.decode() for l in p.list()[1]]
resp, lines, octets = p.retr(1)
out["retr"] = (b"\\r\\n".join(lines) + b"\\r\\n").decode()
out["uidl"] = [l.decode() for l in p.uidl()[1]]
p.quit()
print(json.dumps(out))
`,
        { PORT: String(pop3Port) },
      ),
    );
    expect(out.retr).toBe(MSG);
    expect(out.list[0]).toBe(`1 ${MSG.length}`);
    expect(out.uidl).toHaveLength(2);
    // UIDL is stable across a restart of the whole server and store.
    await stop();
    await start();
    const again = JSON.parse(
      await python(
        PY + `
p = session("alice@example.com", "alicepw")
out["uidl"] = [l.decode() for l in p.uidl()[1]]
p.quit()
print(json.dumps(out))
`,
        { PORT: String(pop3Port) },
      ),
    );
    expect(again.uidl).toEqual(out.uidl);
  });

  test("the lock, DELE+QUIT, and a drop that commits nothing", async () => {
    await deliver("bob@example.com", "Subject: b1\r\n\r\n1\r\n");
    await deliver("bob@example.com", "Subject: b2\r\n\r\n2\r\n");
    const out = JSON.parse(
      await python(
        PY + `
a = session("bob@example.com", "bobpw")
try:
    session("bob@example.com", "bobpw"); out["second"] = "in"
except poplib.error_proto as e:
    out["second"] = e.args[0].decode()
a.dele(1)
a.sock.close(); a.file.close()
import time; time.sleep(0.2)
b = session("bob@example.com", "bobpw")
out["after_drop"] = b.stat()[0]
b.dele(1); b.quit()
c = session("bob@example.com", "bobpw")
out["after_quit"] = b"\\r\\n".join(c.retr(1)[1]).decode()
out["count"] = c.stat()[0]
c.quit()
print(json.dumps(out))
`,
        { PORT: String(pop3Port) },
      ),
    );
    expect(out.second).toStartWith("-ERR [IN-USE]");
    expect(out.after_drop).toBe(2);
    expect(out.count).toBe(1);
    expect(out.after_quit).toBe("Subject: b2\r\n\r\n2");
  });

  test("mail that arrives during a session is not in its maildrop, and is in the next", async () => {
    await store.addUser("dora@example.com", "dorapw");
    await deliver("dora@example.com", "Subject: c1\r\n\r\n1\r\n");
    const out = JSON.parse(
      await python(
        PY + `
s = session("dora@example.com", "dorapw")
before = s.stat()[0]
m = smtplib.SMTP("127.0.0.1", int(os.environ["SMTP"]))
m.sendmail("x@example.org", ["dora@example.com"], b"Subject: c2\\r\\n\\r\\n2\\r\\n")
m.quit()
out["during"] = [before, s.stat()[0], len(s.uidl()[1])]
s.quit()
t = session("dora@example.com", "dorapw")
out["next"] = t.stat()[0]
t.quit()
print(json.dumps(out))
`,
        { PORT: String(pop3Port), SMTP: String(smtpPort) },
      ),
    );
    expect(out.during).toEqual([1, 1, 1]); // RFC 1939 §8: the maildrop as locked
    expect(out.next).toBe(2);
  });

  test("a message delivered by SMTP shows up over POP3", async () => {
    const out = JSON.parse(
      await python(
        PY + `
s = smtplib.SMTP("127.0.0.1", int(os.environ["SMTP"]))
s.sendmail("sender@example.org", ["bob@example.com"], b"Subject: via smtp\\r\\n\\r\\nhello from smtp\\r\\n")
s.quit()
p = session("bob@example.com", "bobpw")
n = p.stat()[0]
out["last"] = b"\\r\\n".join(p.retr(n)[1]).decode()
p.quit()
print(json.dumps(out))
`,
        { PORT: String(pop3Port), SMTP: String(smtpPort) },
      ),
    );
    expect(out.last).toContain("Subject: via smtp");
    expect(out.last).toContain("hello from smtp");
  });

  test("a 20 MB message stored in the page file comes back byte-exact (curl)", async () => {
    const line = "0123456789".repeat(9) + "\r\n";
    const big = new TextEncoder().encode(
      "Subject: big\r\n\r\n" + ("." + line).repeat(Math.ceil(20 * 1024 * 1024 / (line.length + 1))),
    );
    await store.addUser("carol@example.com", "carolpw");
    await deliver("carol@example.com", big);
    const proc = Bun.spawn([
      "curl",
      "-s",
      "-S",
      "-u",
      "carol@example.com:carolpw",
      `pop3://127.0.0.1:${pop3Port}/1`,
    ], { stdout: "pipe", stderr: "pipe" });
    const got = await new Response(proc.stdout).bytes();
    expect(await proc.exited).toBe(0);
    expect(got.length).toBe(big.length);
    expect(Buffer.from(got).equals(Buffer.from(big))).toBe(true);
  });
});
