// verify catching damage, backup under write load, restore, compact.
import { Database } from "bun:sqlite";
import { expect, test } from "bun:test";
import * as fs from "node:fs";
import { join } from "node:path";
import { createDirectStoreClient } from "../../ipc/store-client.ts";
import { DB_FILE, PAGE_FILE } from "../core.ts";
import { openStore, restoreStore } from "../mod.ts";
import { deliver, fixture, readAll, storeOptions, tempDir } from "./helpers.ts";

test("verify reports a damaged page, a wrong refcount and a page both free and used", async () => {
  const f = fixture({ inlineBytes: 0 }); // page-file bodies: the pages are what is damaged
  await f.store.addUser("alice@example.com", "pw");
  await deliver(f.client, "A".repeat(2000), ["alice@example.com"]);
  await deliver(f.client, "B".repeat(2000), ["alice@example.com"]);
  expect((await f.store.verify()).ok).toBe(true);
  await f.store.close();

  const fd = fs.openSync(join(f.dir, PAGE_FILE), "r+");
  fs.writeSync(fd, new Uint8Array([0x21]), 0, 1, 10); // inside the first body
  fs.closeSync(fd);
  const db = new Database(join(f.dir, DB_FILE));
  db.exec("UPDATE bodies SET refcount = 7 WHERE id = 2");
  db.exec("INSERT INTO free_extents(start, count) VALUES (5, 1)"); // page 5 belongs to body 2
  db.close();

  const again = openStore(storeOptions(f.dir));
  const report = await again.verify();
  expect(report.ok).toBe(false);
  expect(report.problems.join("\n")).toContain("body 1: sha256 mismatch");
  expect(report.problems.join("\n")).toContain("body 2: refcount 7 but 1 references");
  expect(report.problems.join("\n")).toContain("are also free");
  await again.close();
  fs.rmSync(f.dir, { recursive: true, force: true });
});

test("a backup taken under write load restores to a store that verifies", async () => {
  const f = fixture({ durability: "group", groupCommitMs: 1 });
  await f.store.addUser("alice@example.com", "pw");
  const alice = (await f.client.call("account.get", { address: "alice@example.com" }))!;
  const inbox = await f.client.call("folder.status", { userId: alice.userId, name: "INBOX" });
  for (let i = 0; i < 40; i++) {
    await deliver(f.client, `seed ${i} ` + "s".repeat(i * 20_000), ["alice@example.com"]);
  }
  let stop = false;
  let during = 0;
  const load = (async () => {
    // Deliveries and expunges keep running (freeing and reusing pages) during the backup.
    for (let i = 0; !stop; i++, during++) {
      await deliver(f.client, `load ${i} ` + "L".repeat((i * 7919) % 40_000), [
        "alice@example.com",
      ]);
      if (i % 2 === 0) {
        const list = await f.client.call("message.list", {
          userId: alice.userId,
          folderId: inbox.folderId,
        });
        await f.client.call("mailbox.expunge", {
          userId: alice.userId,
          folderId: inbox.folderId,
          uids: [list[0]!.uid],
        });
      }
    }
  })();
  const b = tempDir("posthorn-backup-");
  const manifest = await f.store.backup(join(b.dir, "snap"));
  const ranDuring = during;
  stop = true;
  await load;
  expect(ranDuring).toBeGreaterThan(0);
  expect(manifest.messages).toBeGreaterThan(0);
  expect((await f.store.verify()).ok).toBe(true);
  await f.done();

  const target = join(b.dir, "restored");
  restoreStore(join(b.dir, "snap"), target);
  const restored = openStore(storeOptions(target));
  const report = await restored.verify();
  expect(report.problems).toEqual([]);
  expect(report.messages).toBe(manifest.messages);
  const client = createDirectStoreClient(restored.service);
  const list = await client.call("message.list", {
    userId: alice.userId,
    folderId: inbox.folderId,
  });
  expect(list).toHaveLength(manifest.messages);
  // Ids handed out after the backup will be handed out again: UIDLs and UIDVALIDITY move on.
  expect(list.every((m) => m.uniqueId.startsWith("P1-"))).toBe(true);
  const after = await client.call("folder.status", { userId: alice.userId, name: "INBOX" });
  expect(after.uidValidity).toBeGreaterThan(inbox.uidValidity);
  for (const m of list) {
    const bytes = await readAll(
      client.stream("message.read", { userId: alice.userId, messageId: m.messageId }),
    );
    expect(bytes.length).toBe(m.size);
  }
  client.close();
  await restored.close();
  b.cleanup();
});

test("restore refuses a store that is in use", async () => {
  const f = fixture();
  const b = tempDir();
  await f.store.backup(join(b.dir, "snap"));
  expect(() => restoreStore(join(b.dir, "snap"), f.dir)).toThrow(/in use/);
  await f.done();
  b.cleanup();
});

test("compact moves bodies into holes and shrinks the file", async () => {
  const f = fixture({ inlineBytes: 0 }); // page-file bodies (inline.test.ts mixes both kinds)
  await f.store.addUser("alice@example.com", "pw");
  const alice = (await f.client.call("account.get", { address: "alice@example.com" }))!;
  const inbox = await f.client.call("folder.status", { userId: alice.userId, name: "INBOX" });
  const bodies: string[] = [];
  for (let i = 0; i < 10; i++) {
    bodies.push(`body ${i} ` + String.fromCharCode(65 + i).repeat(5000));
    await deliver(f.client, bodies[i]!, ["alice@example.com"]);
  }
  const list = await f.client.call("message.list", {
    userId: alice.userId,
    folderId: inbox.folderId,
  });
  // expunge the first eight: the last two sit at the end of the file behind a big hole
  await f.client.call("mailbox.expunge", {
    userId: alice.userId,
    folderId: inbox.folderId,
    uids: list.slice(0, 8).map((m) => m.uid),
  });
  const before = (await f.client.call("store.stats", {})).pageFileBytes;
  const res = f.store.compact();
  expect(res.after).toBeLessThan(res.before);
  const after = (await f.client.call("store.stats", {})).pageFileBytes;
  expect(after).toBeLessThan(before / 3);
  expect((await f.store.verify()).problems).toEqual([]);
  const left = await f.client.call("message.list", {
    userId: alice.userId,
    folderId: inbox.folderId,
  });
  const texts = await Promise.all(left.map(async (m) =>
    new TextDecoder().decode(
      await readAll(
        f.client.stream("message.read", { userId: alice.userId, messageId: m.messageId }),
      ),
    )
  ));
  expect(texts).toEqual(bodies.slice(8));
  // the store keeps working after compaction, and survives a reopen
  await deliver(f.client, "after compact", ["alice@example.com"]);
  await f.store.close();
  const again = openStore(storeOptions(f.dir));
  expect((await again.verify()).problems).toEqual([]);
  await again.close();
  fs.rmSync(f.dir, { recursive: true, force: true });
});
