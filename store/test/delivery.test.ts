// Delivery, reading, listing, locking and expunging through the StoreService contract.
import { afterEach, beforeEach, describe, expect, test } from "bun:test";
import { FOLDER_MESSAGES_BATCH, StoreError } from "../../ipc/store-api.ts";
import { dec, deliver, enc, type Fixture, fixture, message, readAll } from "./helpers.ts";

let f: Fixture;
beforeEach(async () => {
  // Page-file bodies: pages, extents and their reuse are under test here (inline.test.ts
  // covers bodies stored in their rows, and both kinds side by side).
  f = fixture({ inlineBytes: 0 });
  await f.store.addUser("alice@example.com", "pw-alice");
  await f.store.addUser("bob@example.com", "pw-bob");
});
afterEach(() => f.done());

async function userId(address: string) {
  return (await f.client.call("account.get", { address }))!.userId;
}

async function inbox(address: string) {
  const uid = await userId(address);
  const st = await f.client.call("folder.status", { userId: uid, name: "INBOX" });
  return { userId: uid, folderId: st.folderId, folder: st };
}

describe("delivery", () => {
  test("body.begin may carry the first chunk and delivery.commit the last, byte-exact", async () => {
    const body = enc(message("carried", "z".repeat(9000)));
    const { uploadId } = await f.client.call("body.begin", { chunk: body.subarray(0, 4000) });
    await f.client.call("body.append", { uploadId, chunk: body.subarray(4000, 8000) });
    const res = await f.client.call("delivery.commit", {
      uploadId,
      chunk: body.subarray(8000),
      sender: "s@remote.test",
      recipients: [{ address: "alice@example.com" }],
    });
    const { userId: uid } = await inbox("alice@example.com");
    const bytes = await readAll(
      f.client.stream("message.read", { userId: uid, messageId: res.delivered[0]!.messageId }),
    );
    expect(dec(bytes)).toBe(dec(body));
  });

  test("delivery.commitWhole: a one-chunk message in one call, byte-exact; nothing left on refusal", async () => {
    const body = enc(message("whole", "y".repeat(3000)));
    const res = await f.client.call("delivery.commitWhole", {
      body,
      sender: "s@remote.test",
      recipients: [{ address: "alice@example.com" }, { address: "bob@example.com" }],
      localPrefix: enc("Return-Path: <s@remote.test>\r\n"),
    });
    expect(res.failed).toEqual([]);
    expect(res.delivered.map((d) => d.address)).toEqual(["alice@example.com", "bob@example.com"]);
    const { userId: uid } = await inbox("alice@example.com");
    const bytes = await readAll(
      f.client.stream("message.read", { userId: uid, messageId: res.delivered[0]!.messageId }),
    );
    expect(dec(bytes)).toBe("Return-Path: <s@remote.test>\r\n" + dec(body));

    // Refusals: no recipients; far larger than a chunk (that needs an upload). Neither leaves a
    // reservation behind: the store verifies clean and the page file holds one body only.
    const none = await f.client.call("delivery.commitWhole", {
      body,
      sender: "s@remote.test",
      recipients: [],
    }).catch((e) => e);
    expect((none as StoreError).code).toBe("invalid");
    const big = await f.client.call("delivery.commitWhole", {
      body: new Uint8Array(4 * 64 * 1024 + 1),
      sender: "s@remote.test",
      recipients: [{ address: "alice@example.com" }],
    }).catch((e) => e);
    expect((big as StoreError).code).toBe("invalid");
    expect((await f.store.verify()).problems).toEqual([]);
    expect((await f.client.call("store.stats", {})).bodies).toBe(1);
  });

  test("a body streamed in chunks reads back byte-exact with the local prefix", async () => {
    const body = message("hello", "x".repeat(5000));
    const res = await deliver(f.client, body, ["alice@example.com"], {
      chunk: 333,
      prefix: "Return-Path: <s@remote.test>\r\n",
    });
    expect(res.failed).toEqual([]);
    expect(res.delivered).toHaveLength(1);
    const { userId: uid, folderId } = await inbox("alice@example.com");
    const list = await f.client.call("message.list", { userId: uid, folderId });
    expect(list).toHaveLength(1);
    const bytes = await readAll(
      f.client.stream("message.read", { userId: uid, messageId: list[0]!.messageId }),
    );
    expect(dec(bytes)).toBe("Return-Path: <s@remote.test>\r\n" + body);
    expect(list[0]!.size).toBe(bytes.length);
    expect(list[0]!.uniqueId).toMatch(/^[\x21-\x7e]{1,70}$/);
  });

  test("folder.messages lists what message.list does, in batches, for a folder of any size", async () => {
    const a = await inbox("alice@example.com");
    const n = FOLDER_MESSAGES_BATCH * 2 + 7;
    for (let i = 0; i < n; i++) {
      await deliver(f.client, message(`m${i}`, "x"), ["alice@example.com"]);
    }
    const sizes: number[] = [];
    const streamed = [];
    for await (const batch of f.client.stream("folder.messages", a)) {
      sizes.push(batch.length);
      streamed.push(...batch);
    }
    expect(sizes).toEqual([FOLDER_MESSAGES_BATCH, FOLDER_MESSAGES_BATCH, 7]);
    expect(streamed).toEqual(await f.client.call("message.list", a));
    const since = streamed[FOLDER_MESSAGES_BATCH + 2]!.uid;
    const rest = [];
    for await (const batch of f.client.stream("folder.messages", { ...a, sinceUid: since })) {
      rest.push(...batch);
    }
    expect(rest).toEqual(streamed.filter((m) => m.uid > since));
    // In one thread the consumer gets the store's own arrays (the ring gives copies): one it
    // empties as it goes must not cut the listing short or shift where the next batch starts.
    const taken = [];
    for await (const batch of f.client.stream("folder.messages", a)) taken.push(...batch.splice(0));
    expect(taken).toEqual(streamed);
    // Someone else's folder without a right to read it: an error, and nothing listed.
    const bob = await userId("bob@example.com");
    const denied = await (async () => {
      try {
        for await (const _ of f.client.stream("folder.messages", { ...a, userId: bob })) break;
      } catch (e) {
        return e as StoreError;
      }
      return null;
    })();
    expect(denied).toBeInstanceOf(StoreError);
  });

  test("chunks are bounded by chunkBytes", async () => {
    const body = enc("y".repeat(200_000));
    await deliver(f.client, body, ["alice@example.com"], { chunk: 65536 });
    const { userId: uid, folderId } = await inbox("alice@example.com");
    const [m] = await f.client.call("message.list", { userId: uid, folderId });
    let max = 0, total = 0;
    for await (
      const c of f.client.stream("message.read", { userId: uid, messageId: m!.messageId })
    ) {
      max = Math.max(max, c.length);
      total += c.length;
    }
    expect(total).toBe(200_000);
    expect(max).toBeLessThanOrEqual(64 * 1024);
  });

  test("one body for many recipients is stored once (single instance)", async () => {
    const res = await deliver(f.client, message("multi", "same"), [
      "alice@example.com",
      "bob@example.com",
      "carol@remote.test",
    ]);
    expect(res.delivered.map((d) => d.address).sort()).toEqual([
      "alice@example.com",
      "bob@example.com",
    ]);
    expect(res.queued).toHaveLength(1);
    const stats = await f.client.call("store.stats", {});
    expect(stats.bodies).toBe(1);
    expect(stats.messages).toBe(2);
    const q = await f.client.call("queue.list", {});
    expect(q[0]!.nextHop).toBe("remote.test");
    expect(q[0]!.recipient).toBe("carol@remote.test");
    expect(dec(await readAll(f.client.stream("queue.read", { queueId: q[0]!.queueId }))))
      .toBe(message("multi", "same"));
  });

  test("refcounts: the last reference frees the pages; identical bodies are shared", async () => {
    const body = message("ref", "z".repeat(3000));
    await deliver(f.client, body, ["alice@example.com", "bob@example.com"]);
    await deliver(f.client, body, ["alice@example.com"]); // dedupe by content
    let stats = await f.client.call("store.stats", {});
    expect(stats.bodies).toBe(1);
    const a = await inbox("alice@example.com");
    const b = await inbox("bob@example.com");
    const la = await f.client.call("message.list", a);
    await f.client.call("mailbox.expunge", { ...a, uids: la.map((m) => m.uid) });
    stats = await f.client.call("store.stats", {});
    expect(stats.bodies).toBe(1);
    const freeBefore = stats.freePages;
    const lb = await f.client.call("message.list", b);
    await f.client.call("mailbox.expunge", { ...b, uids: lb.map((m) => m.uid) });
    stats = await f.client.call("store.stats", {});
    expect(stats.bodies).toBe(0);
    expect(stats.freePages).toBeGreaterThan(freeBefore);
    expect((await f.store.verify()).problems).toEqual([]);
    // freed pages are reused by the next body
    const pagesBefore = (await f.client.call("store.stats", {})).pageFileBytes;
    await deliver(f.client, message("again", "w".repeat(3000)), ["bob@example.com"]);
    expect((await f.client.call("store.stats", {})).pageFileBytes).toBe(pagesBefore);
    expect((await f.store.verify()).ok).toBe(true);
  });

  test("unknown local recipients fail, others still succeed", async () => {
    const res = await deliver(f.client, message("u", "u"), [
      "nobody@example.com",
      "alice@example.com",
    ]);
    expect(res.failed).toMatchObject([
      { address: "nobody@example.com", code: "not_found", reason: "no such user here" },
    ]);
    expect(res.delivered).toHaveLength(1);
    // The failure is queued for a bounce (5.1.1), so it is not lost in a log line.
    const [q] = await f.client.call("queue.list", {});
    expect(q).toMatchObject({
      queueId: res.failed[0]!.bounceQueueId,
      recipient: "nobody@example.com",
      failedStatus: "5.1.1",
      lastError: "no such user here",
    });
  });

  test("an aborted upload returns its pages", async () => {
    const { uploadId } = await f.client.call("body.begin", {});
    await f.client.call("body.append", { uploadId, chunk: enc("a".repeat(10_000)) });
    await f.client.call("body.abort", { uploadId });
    await expect(f.client.call("body.append", { uploadId, chunk: enc("b") })).rejects.toThrow(
      StoreError,
    );
    expect((await f.store.verify()).ok).toBe(true);
  });

  test("a reader keeps its body's pages even if the message is expunged meanwhile", async () => {
    const body = "R".repeat(100_000);
    await deliver(f.client, body, ["alice@example.com"]);
    const a = await inbox("alice@example.com");
    const [m] = await f.client.call("message.list", a);
    const it = f.client.stream("message.read", { userId: a.userId, messageId: m!.messageId })[
      Symbol.asyncIterator
    ]();
    const first = await it.next();
    await f.client.call("mailbox.expunge", { ...a, uids: [m!.uid] });
    await deliver(f.client, "S".repeat(100_000), ["bob@example.com"]); // would reuse the pages
    let got = dec(first.value as Uint8Array);
    for (let r = await it.next(); !r.done; r = await it.next()) got += dec(r.value);
    expect(got).toBe(body);
    expect((await f.store.verify()).ok).toBe(true);
  });

  test("message.read refuses another user's message", async () => {
    await deliver(f.client, "secret", ["alice@example.com"]);
    const a = await inbox("alice@example.com");
    const b = await inbox("bob@example.com");
    const [m] = await f.client.call("message.list", a);
    await expect(
      readAll(f.client.stream("message.read", { userId: b.userId, messageId: m!.messageId })),
    ).rejects.toMatchObject({ code: "not_found" });
  });
});

describe("POP3 maildrop", () => {
  test("a second lock is in_use; unlock and peerGone release", async () => {
    const a = await inbox("alice@example.com");
    await deliver(f.client, message("p", "p"), ["alice@example.com"]);
    const lock = await f.client.call("mailbox.lock", {
      userId: a.userId,
      folder: "INBOX",
      owner: "s1",
    });
    // the maildrop: uids below the lock's uidNext (one message so far)
    expect(lock.folder.uidNext).toBe(2);
    expect(lock.folder.messages).toBe(1);
    await expect(
      f.client.call("mailbox.lock", { userId: a.userId, folder: "INBOX", owner: "s2" }),
    ).rejects.toMatchObject({ code: "in_use" });
    await f.client.call("mailbox.unlock", { lockId: lock.lockId });
    // By owner: only that session's lock goes.
    await f.client.call("mailbox.lock", { userId: a.userId, folder: "INBOX", owner: "s2" });
    await f.client.call("mailbox.unlock", { owner: "s9" });
    await expect(
      f.client.call("mailbox.lock", { userId: a.userId, folder: "INBOX", owner: "s3" }),
    ).rejects.toMatchObject({ code: "in_use" });
    await f.client.call("mailbox.unlock", { owner: "s2" });
    await f.client.call("mailbox.lock", { userId: a.userId, folder: "INBOX", owner: "s3" });
    f.store.service.peerGone("test");
    const again = await f.client.call("mailbox.lock", {
      userId: a.userId,
      folder: "INBOX",
      owner: "s4",
    });
    const [first] = await f.client.call("message.list", a);
    const res = await f.client.call("mailbox.expunge", {
      userId: a.userId,
      folderId: again.folder.folderId,
      uids: [first!.uid],
    });
    expect(res.expunged).toEqual([first!.uid]);
    expect(await f.client.call("message.list", a)).toEqual([]);
  });
});

describe("quotas", () => {
  test("a delivery over the byte or message quota fails with code quota", async () => {
    f.store.updateUser("alice@example.com", { quotaBytes: 5000, quotaMessages: 2 });
    expect((await deliver(f.client, "a".repeat(3000), ["alice@example.com"])).delivered)
      .toHaveLength(1);
    const over = await deliver(f.client, "b".repeat(3000), [
      "alice@example.com",
      "bob@example.com",
    ]);
    expect(over.failed).toMatchObject([{ address: "alice@example.com", code: "quota" }]);
    expect(over.delivered.map((d) => d.address)).toEqual(["bob@example.com"]);
    await deliver(f.client, "c", ["alice@example.com"]);
    const third = await deliver(f.client, "d", ["alice@example.com"]);
    expect(third.failed[0]!.code).toBe("quota");
    const acct = await f.client.call("account.get", { address: "alice@example.com" });
    expect(acct!.usedMessages).toBe(2);
    expect(acct!.usedBytes).toBe(3001);
    expect((await f.store.verify()).ok).toBe(true);
  });
});

describe("recipients that fail while others succeed (bounce entries)", () => {
  async function commit(
    recipients: { address: string; dsnNotify?: string[]; orcpt?: string }[],
    sender: string,
    body = message("partial", "p".repeat(2000)),
  ) {
    const { uploadId } = await f.client.call("body.begin", {});
    await f.client.call("body.append", { uploadId, chunk: enc(body) });
    return await f.client.call("delivery.commit", {
      uploadId,
      sender,
      recipients,
      localPrefix: enc(`Return-Path: <${sender}>\r\n`),
      envid: "ENV-1",
      ret: "HDRS",
    });
  }

  test("an over-quota recipient is queued failed (5.2.2) with the DSN parameters and the body", async () => {
    f.store.updateUser("bob@example.com", { quotaBytes: 100 });
    const body = message("partial", "p".repeat(2000));
    const res = await commit(
      [
        { address: "alice@example.com" },
        { address: "bob@example.com", dsnNotify: ["FAILURE"], orcpt: "rfc822;Bob@Example.com" },
      ],
      "sender@remote.test",
      body,
    );
    expect(res.delivered.map((d) => d.address)).toEqual(["alice@example.com"]);
    expect(res.failed).toHaveLength(1);
    expect(res.failed[0]).toMatchObject({ address: "bob@example.com", code: "quota" });
    const queue = await f.client.call("queue.list", {});
    expect(queue).toHaveLength(1);
    expect(queue[0]).toMatchObject({
      queueId: res.failed[0]!.bounceQueueId,
      sender: "sender@remote.test",
      recipient: "bob@example.com",
      failedStatus: "5.2.2",
      lastError: "mailbox is over its storage quota",
      dsnNotify: ["FAILURE"],
      orcpt: "rfc822;Bob@Example.com",
      envid: "ENV-1",
      dsnRet: "HDRS",
    });
    // The bounce can return the content: the entry holds its own body reference.
    const returned = await readAll(f.client.stream("queue.read", { queueId: queue[0]!.queueId }));
    expect(dec(returned)).toBe(body);
    expect((await f.store.verify()).problems).toEqual([]);
    await f.client.call("queue.fail", { queueId: queue[0]!.queueId, error: "bounced" });
    expect((await f.store.verify()).problems).toEqual([]);
    const a = await inbox("alice@example.com");
    expect(await f.client.call("message.list", a)).toHaveLength(1);
  });

  test("the null sender and an all-failed message leave no bounce entry", async () => {
    f.store.updateUser("bob@example.com", { quotaBytes: 100 });
    const fromNull = await commit([
      { address: "alice@example.com" },
      { address: "bob@example.com" },
    ], "");
    expect(fromNull.delivered).toHaveLength(1);
    expect(fromNull.failed[0]).toMatchObject({ address: "bob@example.com", code: "quota" });
    expect(fromNull.failed[0]!.bounceQueueId).toBeUndefined();
    const allFailed = await commit([
      { address: "bob@example.com" },
      { address: "nobody@example.com" },
    ], "sender@remote.test");
    expect(allFailed.delivered).toEqual([]);
    expect(allFailed.failed.map((x) => x.bounceQueueId)).toEqual([undefined, undefined]);
    expect(await f.client.call("queue.list", {})).toEqual([]);
    expect((await f.store.verify()).problems).toEqual([]);
  });
});

describe("recipient.resolve reports the quota room (checked at RCPT)", () => {
  test("no quota: no roomBytes; under quota: bytes left; full by bytes or count: 0", async () => {
    const resolve = (address: string) => f.client.call("recipient.resolve", { address });
    const first = await resolve("alice@example.com");
    expect(first.kind === "local" && first.roomBytes).toBeUndefined();
    f.store.updateUser("alice@example.com", { quotaBytes: 5000, quotaMessages: 2 });
    expect(await resolve("alice@example.com")).toMatchObject({ roomBytes: 5000 });
    await deliver(f.client, "a".repeat(3000), ["alice@example.com"]);
    expect(await resolve("alice@example.com")).toMatchObject({ roomBytes: 2000 });
    await deliver(f.client, "b", ["alice@example.com"]);
    expect(await resolve("alice@example.com")).toMatchObject({ roomBytes: 0 }); // 2 messages
    // A list delivers if any member has room: the roomiest member counts.
    f.store.addListMember("team@example.com", "alice@example.com");
    f.store.addListMember("team@example.com", "bob@example.com");
    const team = await resolve("team@example.com");
    expect(team.kind === "local" && team.roomBytes).toBeUndefined(); // bob has no quota
  });
});
