// Folders, flags with modseq, copy/move, search, public folders, ACLs, news, meta, append.
import { afterEach, beforeEach, describe, expect, test } from "bun:test";
import { dec, deliver, enc, type Fixture, fixture, message, readAll } from "./helpers.ts";

let f: Fixture;
let alice: number, bob: number;
beforeEach(async () => {
  f = fixture();
  alice = (await f.store.addUser("alice@example.com", "pw")).userId;
  bob = (await f.store.addUser("bob@example.com", "pw")).userId;
});
afterEach(() => f.done());

const status = (userId: number, name: string) => f.client.call("folder.status", { userId, name });

describe("folders", () => {
  test("defaults, create with parents, rename with children, delete", async () => {
    const names = (await f.client.call("folder.list", { userId: alice })).map((x) => x.name);
    expect(names).toEqual(["Drafts", "INBOX", "Junk", "Sent", "Trash"]);
    expect((await status(alice, "Sent")).specialUse).toBe("\\Sent");
    expect((await status(alice, "inbox")).name).toBe("INBOX"); // only INBOX ignores case
    await expect(status(alice, "sent")).rejects.toMatchObject({ code: "not_found" });
    await f.client.call("folder.create", { userId: alice, name: "Work/2024/Q1" });
    const work = await status(alice, "Work/2024");
    await f.client.call("folder.rename", { userId: alice, from: "Work", to: "Job" });
    expect((await status(alice, "Job/2024")).uidValidity).toBe(work.uidValidity);
    await expect(status(alice, "Work/2024")).rejects.toMatchObject({ code: "not_found" });
    await expect(f.client.call("folder.create", { userId: alice, name: "Job" })).rejects
      .toMatchObject({ code: "exists" });
    await f.client.call("folder.delete", { userId: alice, name: "Job/2024/Q1" });
    await expect(f.client.call("folder.delete", { userId: alice, name: "INBOX" })).rejects
      .toMatchObject({ code: "invalid" });
  });

  test("flags, modseq, UNCHANGEDSINCE, copy and move, expunge events", async () => {
    const events: string[] = [];
    f.client.subscribe("mailbox", (e) => events.push(`${e.kind}:${e.uids.join(",")}`));
    for (let i = 0; i < 3; i++) {
      await deliver(f.client, message(`m${i}`, `body ${i}`), ["alice@example.com"]);
    }
    const inbox = await status(alice, "INBOX");
    expect(inbox).toMatchObject({ messages: 3, unseen: 3, uidNext: 4 });
    const r1 = await f.client.call("message.setFlags", {
      userId: alice,
      folderId: inbox.folderId,
      uids: [1, 2],
      mode: "add",
      flags: ["\\seen", "$Work"],
    });
    expect(r1.updated).toEqual([1, 2]);
    expect(r1.modseq).toBeGreaterThan(inbox.highestModseq);
    const r2 = await f.client.call("message.setFlags", {
      userId: alice,
      folderId: inbox.folderId,
      uids: [1, 3],
      mode: "remove",
      flags: ["\\Seen"],
      unchangedSince: inbox.highestModseq,
    });
    expect(r2.failed).toEqual([1]); // changed since
    const list = await f.client.call("message.list", { userId: alice, folderId: inbox.folderId });
    expect(list.map((m) => m.flags)).toEqual([["$Work", "\\Seen"], ["$Work", "\\Seen"], []]);
    expect((await status(alice, "INBOX")).unseen).toBe(1);

    const moved = await f.client.call("message.copy", {
      userId: alice,
      fromFolderId: inbox.folderId,
      uids: [1, 3],
      toFolder: "Trash",
      move: true,
    });
    expect(moved.mapping).toEqual([[1, 1], [3, 2]]);
    expect((await status(alice, "INBOX")).messages).toBe(1);
    expect((await status(alice, "Trash")).messages).toBe(2);
    expect((await f.client.call("store.stats", {})).bodies).toBe(3);
    expect(events).toContain("expunge:1,3");
    expect(events).toContain("flags:1,2");
    const acct = await f.client.call("account.get", { address: "alice@example.com" });
    expect(acct!.usedMessages).toBe(3);
    expect((await f.store.verify()).problems).toEqual([]);
  });

  test("full-text search finds words in headers and body, with diacritics folded", async () => {
    await deliver(f.client, message("Quarterly report", "the café numbers"), ["alice@example.com"]);
    await deliver(f.client, message("Lunch", "sandwich"), ["alice@example.com"]);
    const inbox = await status(alice, "INBOX");
    const q = (text: string) =>
      f.client.call("message.search", { userId: alice, folderId: inbox.folderId, text });
    expect(await q("quarterly")).toEqual([1]);
    expect(await q("cafe")).toEqual([1]);
    expect(await q("sandwich")).toEqual([2]);
    expect(await q("nothing-here")).toEqual([]);
  });

  test("message.meta and partial reads", async () => {
    const msg = "Subject: parts\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n" +
      "Content-Type: text/plain\r\n\r\nhello\r\n--b--\r\n";
    await deliver(f.client, msg, ["alice@example.com"], { prefix: "X-P: 1\r\n" });
    const inbox = await status(alice, "INBOX");
    const [m] = await f.client.call("message.list", { userId: alice, folderId: inbox.folderId });
    const meta = await f.client.call("message.meta", { userId: alice, messageId: m!.messageId });
    expect(meta.envelope.subject).toBe("parts");
    expect(meta.prefixBytes).toBe(8);
    const part = meta.structure.children[0]!;
    const bytes = await readAll(f.client.stream("message.read", {
      userId: alice,
      messageId: m!.messageId,
      offset: meta.prefixBytes + part.bodyStart,
      length: part.end - part.bodyStart,
    }));
    expect(dec(bytes)).toBe("hello");
  });

  test("APPEND files an upload with flags and date", async () => {
    const inbox = await status(alice, "Drafts");
    const { uploadId } = await f.client.call("body.begin", {});
    await f.client.call("body.append", { uploadId, chunk: enc("Subject: draft\r\n\r\nx\r\n") });
    const res = await f.client.call("message.append", {
      userId: alice,
      folderId: inbox.folderId,
      uploadId,
      flags: ["\\Draft"],
      internalDate: 1_000_000,
    });
    expect(res).toMatchObject({ uid: 1, uidValidity: inbox.uidValidity });
    const [m] = await f.client.call("message.list", { userId: alice, folderId: inbox.folderId });
    expect(m).toMatchObject({ flags: ["\\Draft"], internalDate: 1_000_000 });
  });
});

describe("sharing", () => {
  test("delegate access via ACL; others see nothing", async () => {
    await deliver(f.client, message("private", "p"), ["alice@example.com"]);
    const inbox = await status(alice, "INBOX");
    await expect(f.client.call("message.list", { userId: bob, folderId: inbox.folderId })).rejects
      .toMatchObject({ code: "not_found" });
    await f.client.call("acl.set", {
      userId: alice,
      folderId: inbox.folderId,
      identifier: "bob@example.com",
      rights: "lrs",
    });
    const shared = await f.client.call("folder.shared", { userId: bob });
    expect(shared.map((s) => `${s.owner}/${s.name}`)).toEqual(["alice@example.com/INBOX"]);
    const list = await f.client.call("message.list", { userId: bob, folderId: inbox.folderId });
    expect(list).toHaveLength(1);
    await f.client.call("message.setFlags", {
      userId: bob,
      folderId: inbox.folderId,
      uids: [1],
      mode: "add",
      flags: ["\\Seen"],
    });
    await expect(
      f.client.call("mailbox.expunge", { userId: bob, folderId: inbox.folderId, uids: [1] }),
    )
      .rejects.toMatchObject({ code: "denied" });
    expect(await f.client.call("acl.myRights", { userId: bob, folderId: inbox.folderId })).toBe(
      "lrs",
    );
  });

  test("public folders with a posting address and a newsgroup; anonymous read", async () => {
    f.store.admin.createPublicFolder("News/ts", {
      address: "ts-list@example.com",
      newsgroup: "comp.lang.typescript",
      anyone: "lrp",
      anonymous: "lr",
    });
    expect(await f.client.call("recipient.resolve", { address: "ts-list@example.com" }))
      .toMatchObject({ kind: "public" });
    await deliver(f.client, message("first post", "hi all"), ["ts-list@example.com"]);
    await deliver(f.client, message("second post", "again"), ["ts-list@example.com"]);
    const groups = await f.client.call("news.groups", { userId: null });
    expect(groups).toMatchObject([{ name: "comp.lang.typescript", low: 1, high: 2, count: 2 }]);
    expect(groups[0]!.postingAllowed).toBe(false); // anonymous may read, not post
    const over = await f.client.call("news.overview", {
      userId: null,
      group: "comp.lang.typescript",
      from: 1,
      to: 10,
    });
    expect(over.map((o) => [o.article, o.subject, o.msgid])).toEqual([
      [1, "first post", "<firstpost@remote.test>"],
      [2, "second post", "<secondpost@remote.test>"],
    ]);
    const art = await f.client.call("news.article", {
      userId: null,
      msgid: "<secondpost@remote.test>",
    });
    expect(art).toMatchObject({ group: "comp.lang.typescript", article: 2 });
    const text = dec(
      await readAll(f.client.stream("message.read", { userId: null, messageId: art!.messageId })),
    );
    expect(text).toContain("Subject: second post");

    const { uploadId } = await f.client.call("body.begin", {});
    await f.client.call("body.append", { uploadId, chunk: enc(message("posted", "via nntp")) });
    const posted = await f.client.call("news.post", {
      userId: bob,
      uploadId,
      newsgroups: ["comp.lang.typescript", "no.such.group"],
    });
    expect(posted.posted).toEqual([{ group: "comp.lang.typescript", article: 3 }]);
    const pub = await f.client.call("public.list", { userId: null });
    expect(pub.map((p) => p.name)).toEqual(["Public/News/ts"]);
    expect((await f.store.verify()).problems).toEqual([]);
  });
});
