// Import and export of mbox and Maildir with tricky messages, byte-exact round trips.
import { afterAll, beforeAll, expect, test } from "bun:test";
import * as fs from "node:fs";
import { join } from "node:path";
import { addUser } from "../accounts.ts";
import { Committer } from "../commit.ts";
import { Core } from "../core.ts";
import { importProgress } from "../migrate.ts";
import { Uploads } from "../uploads.ts";
import { dec, type Fixture, fixture, readAll, storeOptions, tempDir } from "./helpers.ts";

let f: Fixture;
const t = tempDir("posthorn-migrate-");
let alice: number;
beforeAll(async () => {
  f = fixture();
  alice = (await f.store.addUser("alice@example.com", "pw")).userId;
});
afterAll(async () => {
  await f.done();
  t.cleanup();
});

const latin1 = (s: string) => Uint8Array.from(s, (c) => c.charCodeAt(0));

function bigAttachment(): string {
  const raw = new Uint8Array(15 * 1024 * 1024);
  for (let i = 0; i < raw.length; i += 65536) crypto.getRandomValues(raw.subarray(i, i + 65536));
  const b64 = Buffer.from(raw).toString("base64").replace(/.{76}/g, "$&\n");
  return "From: big@remote.test\nSubject: big\nMIME-Version: 1.0\n" +
    "Content-Type: multipart/mixed; boundary=XX\n\n--XX\nContent-Type: text/plain\n\nsee attached\n" +
    "--XX\nContent-Type: application/octet-stream\nContent-Transfer-Encoding: base64\n\n" +
    b64 + "\n--XX--\n";
}

test(
  "mbox: From_ quoting, CRLF and LF, 8-bit headers, a 20 MB attachment; exported byte-exact",
  async () => {
    const mbox = Buffer.concat([
      latin1("From alice@remote.test Thu Jan  4 10:00:00 2024\n"),
      latin1(
        "From: a@remote.test\nSubject: quoting\n\nbody\n>From the start\n>>From deeper\n\n>From after a blank line\n\n",
      ),
      latin1("From bob@remote.test Fri Jan  5 11:00:00 2024\r\n"),
      latin1("From: b@remote.test\r\nSubject: crlf\r\n\r\nwindows lines\r\n\r\n"),
      latin1("From c@remote.test Sat Jan  6 12:00:00 2024\n"),
      Buffer.from(
        'From: "Zoë" <c@remote.test>\nSubject: Grüße 8-bit \xe9\nX-Raw: caf\xe9\n\nUTF-8 body: ☃\n\n',
        "binary",
      ),
      Buffer.from("From: =?utf-8?q?Zo=C3=AB?= <d@remote.test>\nSubject: ünïcödé\n\nnaïve\n\n"),
      latin1("From big@remote.test Sun Jan  7 13:00:00 2024\n"),
      latin1(bigAttachment()),
    ].map((b) => new Uint8Array(b)));
    const src = join(t.dir, "in.mbox");
    fs.writeFileSync(src, mbox);
    const report = await f.store.importMbox(src, "alice@example.com", "Imported");
    expect(report.messages).toBe(4);

    const st = await f.client.call("folder.status", { userId: alice, name: "Imported" });
    const list = await f.client.call("message.list", { userId: alice, folderId: st.folderId });
    const first = dec(
      await readAll(
        f.client.stream("message.read", { userId: alice, messageId: list[0]!.messageId }),
      ),
    );
    // stored with CRLF (served as is to POP3/IMAP) and unquoted one level
    expect(first).toBe(
      "From: a@remote.test\r\nSubject: quoting\r\n\r\nbody\r\nFrom the start\r\n>From deeper\r\n\r\nFrom after a blank line\r\n",
    );
    expect(list[3]!.size).toBeGreaterThan(20_000_000);
    expect(list[1]!.internalDate).toBe(Date.parse("Fri Jan  5 11:00:00 2024"));

    const out = join(t.dir, "out.mbox");
    await f.store.exportMbox(out, "alice@example.com", "Imported");
    const back = fs.readFileSync(out);
    expect(back.length).toBe(mbox.length);
    expect(Buffer.compare(back, Buffer.from(mbox))).toBe(0);
    expect((await f.store.verify()).problems).toEqual([]);
  },
  60_000,
);

test("Maildir: folders, flags and files exported byte-exact", async () => {
  const root = join(t.dir, "Maildir");
  const files: Record<string, string> = {
    "cur/1700000000.1.host:2,S": "Subject: seen\n\nread me\n",
    "cur/1700000001.2.host:2,FR": "Subject: flagged\r\n\r\nanswered\r\n",
    "new/1700000002.3.host": "Subject: new\n\n>From not quoted in maildir\n",
    ".Work.2024/cur/1700000003.4.host:2,": "Subject: work\n\nnested folder\n",
  };
  for (const [p, body] of Object.entries(files)) {
    fs.mkdirSync(join(root, p, ".."), { recursive: true });
    fs.writeFileSync(join(root, p), body);
  }
  const report = await f.store.importMaildir(root, "alice@example.com", "Old");
  expect(report.messages).toBe(4);
  const old = await f.client.call("folder.status", { userId: alice, name: "Old" });
  const list = await f.client.call("message.list", { userId: alice, folderId: old.folderId });
  expect(list.map((m) => m.flags)).toEqual([["\\Seen"], ["\\Answered", "\\Flagged"], []]);
  expect((await f.client.call("folder.status", { userId: alice, name: "Old/Work/2024" })).messages)
    .toBe(1);

  const out = join(t.dir, "MaildirOut");
  await f.store.exportMaildir(out, "alice@example.com", "Old");
  for (const [p, body] of Object.entries(files)) {
    if (p.startsWith(".")) continue;
    expect(fs.readFileSync(join(out, p), "utf8")).toBe(body);
  }
});

test("store.import: the total as its last item; a relative path refused; a consumer that stops reading stops the import", async () => {
  const src = join(t.dir, "many.mbox");
  let text = "";
  for (let i = 0; i < 40; i++) {
    text += `From x@remote.test Thu Jan  1 00:00:00 2024\nSubject: n${i}\n\nbody ${i}\n\n`;
  }
  fs.writeFileSync(src, text);
  await f.store.addUser("ida@example.com", "pw");
  const items = [];
  const req = { format: "mbox" as const, path: src, user: "ida@example.com", folder: "Old" };
  for await (const batch of f.client.stream("store.import", req)) items.push(...batch);
  expect(items.at(-1)!.messages).toBe(40);
  const ida = (await f.client.call("account.get", { address: "ida@example.com" }))!.userId;
  expect((await f.client.call("folder.status", { userId: ida, name: "Old" })).messages).toBe(40);
  // The store worker's working directory is not the caller's: only absolute paths.
  const rel = f.client.stream("store.import", { ...req, path: "many.mbox" });
  await expect(readAll(rel as AsyncIterable<never>)).rejects.toMatchObject({ code: "invalid" });

  // Progress after every message (interval 0); leaving after the first report stops the
  // import before the next message: what was stored stays, nothing more comes.
  const own = tempDir("posthorn-import-stop-");
  const core = new Core(storeOptions(own.dir));
  try {
    await addUser(core, "ida@example.com", "pw");
    const ctx = { core, uploads: new Uploads(core), committer: new Committer(core) };
    for await (const batch of importProgress(ctx, "mbox", src, "ida@example.com", "Cut", 0)) {
      expect(batch[0]!.messages).toBeLessThan(40);
      break;
    }
    const n = core.db.query(
      "SELECT count(*) AS n FROM messages m JOIN folders f ON f.id = m.folder_id WHERE f.name = 'Cut'",
    ).get() as { n: number };
    expect(n.n).toBeGreaterThan(0);
    expect(n.n).toBeLessThan(40);
  } finally {
    core.close();
    own.cleanup();
  }
});

test("a message over store.maxImportMessageBytes stops the import with an error; memory stays bounded", async () => {
  const g = fixture({ maxImportMessageBytes: 1 << 20 });
  try {
    await g.store.addUser("max@example.com", "pw");
    const big = "x".repeat(80) + "\n";
    const mbox = join(t.dir, "big.mbox");
    fs.writeFileSync(
      mbox,
      "From a@b.test Thu Jan  1 00:00:00 2024\nSubject: small\n\nok\n\n" +
        "From a@b.test Thu Jan  1 00:00:00 2024\nSubject: big\n\n" + big.repeat(20_000),
    );
    await expect(g.store.importMbox(mbox, "max@example.com")).rejects.toMatchObject({
      code: "invalid",
      message: expect.stringContaining("store.maxImportMessageBytes"),
    });
    // One endless line: refused the same way, not held.
    const line = join(t.dir, "line.mbox");
    fs.writeFileSync(line, "From a@b.test Thu Jan  1 00:00:00 2024\n" + "y".repeat(3 << 20));
    await expect(g.store.importMbox(line, "max@example.com")).rejects.toMatchObject({
      code: "invalid",
    });
    const md = join(t.dir, "bigmaildir");
    for (const sub of ["cur", "new", "tmp"]) fs.mkdirSync(join(md, sub), { recursive: true });
    fs.writeFileSync(join(md, "new", "1.big"), "Subject: big\n\n" + big.repeat(20_000));
    await expect(g.store.importMaildir(md, "max@example.com")).rejects.toMatchObject({
      code: "invalid",
    });
  } finally {
    await g.done();
  }
});
