// Inline bodies: a body up to store.inlineBytes lives in its bodies row, larger ones in the page
// file, side by side. Threshold edges (exactly inlineBytes, one more, a spill mid-upload),
// single-instance storage across both kinds, exact partial reads, verify catching a damaged
// inline blob, backup/restore and compaction with both kinds, the queue's stream, the schema
// migration of an older store, and a batch of only inline bodies doing no page-file fdatasync.
import { Database } from "bun:sqlite";
import { afterEach, describe, expect, test } from "bun:test";
import * as fs from "node:fs";
import { join } from "node:path";
import { createDirectStoreClient } from "../../ipc/store-client.ts";
import { Core, DB_FILE } from "../core.ts";
import { Uploads } from "../uploads.ts";
import { openStore, restoreStore } from "../mod.ts";
import { PageFile } from "../pagefile.ts";
import { deliver, enc, type Fixture, fixture, readAll, storeOptions, tempDir } from "./helpers.ts";

const INLINE = 4096;
const PREFIX = "Return-Path: <s@remote.test>\r\n";

/** The fixture the running test opened, closed after it. */
let current: Fixture | null = null;
afterEach(async () => {
  await current?.done();
  current = null;
});

/** A message of exactly `size` bytes whose content depends on `tag` (no accidental dedupe). */
function body(size: number, tag: string): Uint8Array {
  const head = `Subject: ${tag}\r\n\r\n`;
  const out = new Uint8Array(size);
  const h = enc(head);
  out.set(h.subarray(0, Math.min(size, h.length)));
  for (let i = h.length; i < size; i++) out[i] = 97 + ((i * 7 + tag.length) % 26);
  return out;
}

/** How each body is stored, straight from the database. */
function layout(dir: string) {
  const db = new Database(join(dir, DB_FILE), { readonly: true });
  try {
    return db.query(
      "SELECT id, size, refcount, extents, length(inline) AS inlineLen FROM bodies ORDER BY id",
    ).all() as {
      id: number;
      size: number;
      refcount: number;
      extents: string;
      inlineLen: number | null;
    }[];
  } finally {
    db.close();
  }
}

async function setup(over: Parameters<typeof fixture>[0] = {}) {
  const f = fixture({ inlineBytes: INLINE, pageBytes: 512, chunkBytes: 1024, ...over });
  current = f;
  const alice = await f.store.addUser("alice@example.com", "pw");
  await f.store.addUser("bob@example.com", "pw");
  const inbox = await f.client.call("folder.status", { userId: alice.userId, name: "INBOX" });
  return { f, userId: alice.userId, folderId: inbox.folderId };
}

/** Like `deliver`, but with no size hint: the store cannot know the size in advance. */
async function deliverUnhinted(fx: Fixture, b: Uint8Array, prefix?: string) {
  const { uploadId } = await fx.client.call("body.begin", {});
  for (let i = 0; i < b.length; i += 1000) {
    await fx.client.call("body.append", { uploadId, chunk: b.subarray(i, i + 1000) });
  }
  const res = await fx.client.call("delivery.commit", {
    uploadId,
    sender: "s@remote.test",
    recipients: [{ address: "alice@example.com" }],
    localPrefix: prefix ? enc(prefix) : undefined,
  });
  return res.delivered[0]!.messageId;
}

async function readMessage(fx: Fixture, userId: number, messageId: number, range = {}) {
  return await readAll(fx.client.stream("message.read", { userId, messageId, ...range }));
}

describe("inline bodies", () => {
  test("threshold edges: exactly inlineBytes inline, one more in pages, a spill mid-upload", async () => {
    const { f, userId } = await setup();
    const exact = body(INLINE, "exact");
    const over = body(INLINE + 1, "over");
    const spill = body(INLINE * 3 + 17, "spill");
    const small = body(300, "small");
    const empty = new Uint8Array(0);
    // No size hint, 1000-byte appends: "over" spills on its last byte, "spill" in its fifth
    // append; "exact" fills the buffer to the byte and stays inline.
    const ids: number[] = [];
    for (const b of [exact, over, spill, small]) ids.push(await deliverUnhinted(f, b, PREFIX));
    // A size hint over the threshold goes straight to pages, even if the body turns out small.
    const { uploadId } = await f.client.call("body.begin", { sizeHint: INLINE * 10 });
    await f.client.call("body.append", { uploadId, chunk: body(100, "hinted") });
    const hinted = await f.client.call("delivery.commit", {
      uploadId,
      sender: "s@remote.test",
      recipients: [{ address: "alice@example.com" }],
    });
    ids.push(hinted.delivered[0]!.messageId);
    ids.push((await deliver(f.client, empty, ["alice@example.com"])).delivered[0]!.messageId);

    const rows = layout(f.dir);
    expect(rows.map((r) => [r.size, r.inlineLen, JSON.parse(r.extents).length > 0])).toEqual([
      [INLINE, INLINE, false],
      [INLINE + 1, null, true],
      [INLINE * 3 + 17, null, true],
      [300, 300, false],
      [100, null, true],
      [0, 0, false],
    ]);
    const want = [exact, over, spill, small];
    for (let i = 0; i < want.length; i++) {
      const got = await readMessage(f, userId, ids[i]!);
      expect(Buffer.from(got)).toEqual(Buffer.concat([enc(PREFIX), want[i]!]));
    }
    expect(Buffer.from(await readMessage(f, userId, ids[4]!))).toEqual(
      Buffer.from(body(100, "hinted")),
    );
    expect((await readMessage(f, userId, ids[5]!)).length).toBe(0);
    // message.list sizes: prefix + body, whichever way the body is stored.
    const list = await f.client.call("message.list", {
      userId,
      folderId: (await f.client.call("folder.status", { userId, name: "INBOX" })).folderId,
    });
    expect(list.slice(0, 4).map((m) => m.size)).toEqual(want.map((w) => w.length + PREFIX.length));
    expect((await f.store.verify()).problems).toEqual([]);
  });

  test("only page-file bodies grow the page file; inline ones never touch it", async () => {
    const { f } = await setup();
    for (let i = 0; i < 20; i++) {
      await deliver(f.client, body(2000, `s${i}`), ["alice@example.com"]);
    }
    expect((await f.client.call("store.stats", {})).pageFileBytes).toBe(0);
    await deliver(f.client, body(5000, "big"), ["alice@example.com"]);
    expect((await f.client.call("store.stats", {})).pageFileBytes).toBeGreaterThan(0);
  });

  test("single-instance storage across both kinds; the last reference frees no pages", async () => {
    const { f, userId, folderId } = await setup();
    const small = body(1500, "shared");
    // Stored inline, then the threshold drops to 0: the same content is shared, not re-stored.
    await deliver(f.client, small, ["alice@example.com", "bob@example.com"]);
    f.store.reconfigure(storeOptions(f.dir, { inlineBytes: 0, pageBytes: 512, chunkBytes: 1024 }));
    await deliver(f.client, small, ["alice@example.com"]);
    // Stored in pages (threshold 0), then the threshold rises: shared again.
    const mid = body(2500, "pages-first");
    await deliver(f.client, mid, ["alice@example.com"]);
    f.store.reconfigure(
      storeOptions(f.dir, { inlineBytes: INLINE, pageBytes: 512, chunkBytes: 1024 }),
    );
    await deliver(f.client, mid, ["bob@example.com"]);
    let rows = layout(f.dir);
    expect(rows.map((r) => [r.size, r.refcount, r.inlineLen])).toEqual([
      [1500, 3, 1500],
      [2500, 2, null],
    ]);
    expect((await f.store.verify()).problems).toEqual([]);

    // Expunge every reference to the inline body: its row goes, the page file does not change.
    const before = await f.client.call("store.stats", {});
    const mine = await f.client.call("message.list", { userId, folderId });
    await f.client.call("mailbox.expunge", {
      userId,
      folderId,
      uids: mine.filter((m) => m.size === 1500).map((m) => m.uid),
    });
    const bob = (await f.client.call("account.get", { address: "bob@example.com" }))!;
    const bobInbox = await f.client.call("folder.status", { userId: bob.userId, name: "INBOX" });
    const bobs = await f.client.call("message.list", {
      userId: bob.userId,
      folderId: bobInbox.folderId,
    });
    await f.client.call("mailbox.expunge", {
      userId: bob.userId,
      folderId: bobInbox.folderId,
      uids: bobs.filter((m) => m.size === 1500).map((m) => m.uid),
    });
    const after = await f.client.call("store.stats", {});
    expect(after.bodies).toBe(1);
    expect(after.freePages).toBe(before.freePages);
    expect(after.pageFileBytes).toBe(before.pageFileBytes);
    rows = layout(f.dir);
    expect(rows.map((r) => r.size)).toEqual([2500]);
    expect((await f.store.verify()).problems).toEqual([]);
  });

  test("partial reads of an inline body with a prefix are exact; chunks are full", async () => {
    const { f, userId } = await setup();
    const b = body(3000, "partial");
    const { delivered } = await deliver(f.client, b, ["alice@example.com"], {
      prefix: PREFIX,
      chunk: 333,
    });
    const messageId = delivered[0]!.messageId;
    expect(layout(f.dir)[0]!.inlineLen).toBe(3000);
    const whole = Buffer.concat([enc(PREFIX), b]);
    const chunks: Uint8Array[] = [];
    for await (const c of f.client.stream("message.read", { userId, messageId })) chunks.push(c);
    expect(Buffer.concat(chunks)).toEqual(whole);
    expect(chunks.slice(0, -1).every((c) => c.length === 1024)).toBe(true);
    const seam = PREFIX.length;
    for (const offset of [0, 1, seam - 1, seam, seam + 1, 1023, 1024, 1025, whole.length - 1]) {
      for (const length of [0, 1, 2, 700, 1024, 1500, 5000, undefined]) {
        const got = await readMessage(f, userId, messageId, { offset, length });
        const end = length === undefined ? whole.length : offset + length;
        expect(Buffer.from(got)).toEqual(whole.subarray(offset, end));
      }
    }
    expect((await readMessage(f, userId, messageId, { offset: 1e6 })).length).toBe(0);
    // readMany: a message within one chunk comes whole in one buffer.
    const tiny = body(900, "tiny");
    const tinyId = (await deliver(f.client, tiny, ["alice@example.com"], { prefix: PREFIX }))
      .delivered[0]!.messageId;
    const many = await f.client.call("message.readMany", { userId, messageIds: [tinyId] });
    expect(Buffer.from((many[0] as { bytes: Uint8Array }).bytes)).toEqual(
      Buffer.concat([enc(PREFIX), tiny]),
    );
  });

  test("queue.read streams an inline body to the transport", async () => {
    const { f } = await setup();
    const b = body(2222, "remote");
    const res = await deliver(f.client, b, ["far@remote.test"]);
    const queueId = res.queued[0]!.queueId;
    expect(layout(f.dir)[0]!.inlineLen).toBe(2222);
    expect(Buffer.from(await readAll(f.client.stream("queue.read", { queueId })))).toEqual(
      Buffer.from(b),
    );
    await f.client.call("queue.done", { queueId });
    expect((await f.client.call("store.stats", {})).bodies).toBe(0);
    expect((await f.store.verify()).problems).toEqual([]);
  });

  test("verify catches a damaged inline blob, a wrong length and a wrong refcount", async () => {
    const { f } = await setup();
    await deliver(f.client, body(1000, "one"), ["alice@example.com"]);
    await deliver(f.client, body(1000, "two"), ["alice@example.com"]);
    await deliver(f.client, body(1000, "three"), ["alice@example.com"]);
    expect((await f.store.verify()).ok).toBe(true);
    await f.store.close();
    const db = new Database(join(f.dir, DB_FILE));
    // One flipped byte, same length: only the hash can tell.
    const one = (db.query("SELECT inline FROM bodies WHERE id = 1").get() as { inline: Uint8Array })
      .inline;
    const damaged = new Uint8Array(one);
    damaged[500]! ^= 1;
    db.query("UPDATE bodies SET inline = ? WHERE id = 1").run(damaged);
    db.query("UPDATE bodies SET inline = ? WHERE id = 2").run(new Uint8Array(999));
    db.exec("UPDATE bodies SET refcount = 4 WHERE id = 3");
    db.close();
    const again = openStore(storeOptions(f.dir));
    const report = await again.verify();
    expect(report.ok).toBe(false);
    const text = report.problems.join("\n");
    expect(text).toContain("body 1: sha256 mismatch (inline)");
    expect(text).toContain("body 2: 999 inline bytes for 1000 bytes");
    expect(text).toContain("body 3: refcount 4 but 1 references");
    await again.close();
    // The fixture's store is closed already: clean up by hand.
    fs.rmSync(f.dir, { recursive: true, force: true });
    current = null;
  });

  test("backup and restore carry both kinds; compact moves only page-file bodies", async () => {
    const { f, userId, folderId } = await setup();
    const bodies: Uint8Array[] = [];
    for (let i = 0; i < 12; i++) {
      bodies.push(body(i % 2 === 0 ? 1200 + i : 6000 + i, `b${i}`));
      await deliver(f.client, bodies[i]!, ["alice@example.com"], { prefix: PREFIX });
    }
    const kinds = layout(f.dir).map((r) => r.inlineLen !== null);
    expect(kinds).toEqual(bodies.map((_, i) => i % 2 === 0));

    // Expunge the first eight: the page-file bodies left sit behind a hole.
    const list = await f.client.call("message.list", { userId, folderId });
    await f.client.call("mailbox.expunge", {
      userId,
      folderId,
      uids: list.slice(0, 8).map((m) => m.uid),
    });
    const res = f.store.compact();
    expect(res.after).toBeLessThan(res.before);
    expect(res.after).toBe(2 * Math.ceil(6010 / 512));
    expect((await f.store.verify()).problems).toEqual([]);

    const b = tempDir("posthorn-inline-backup-");
    const restored = tempDir("posthorn-inline-restored-");
    try {
      const manifest = await f.store.backup(join(b.dir, "bk"));
      expect(manifest.bodies).toBe(4);
      restoreStore(join(b.dir, "bk"), restored.dir);
      const again = openStore(storeOptions(restored.dir, { inlineBytes: INLINE }));
      const client = createDirectStoreClient(again.service, "restored");
      try {
        expect((await again.verify()).problems).toEqual([]);
        const left = await client.call("message.list", { userId, folderId });
        expect(left).toHaveLength(4);
        for (let i = 0; i < 4; i++) {
          const got = await readAll(
            client.stream("message.read", { userId, messageId: left[i]!.messageId }),
          );
          expect(Buffer.from(got)).toEqual(Buffer.concat([enc(PREFIX), bodies[8 + i]!]));
        }
      } finally {
        client.close();
        await again.close();
      }
    } finally {
      b.cleanup();
      restored.cleanup();
    }
  });

  test("a store from before inline bodies opens, migrates, and serves both kinds", async () => {
    const t = tempDir("posthorn-inline-old-");
    try {
      const old = openStore(storeOptions(t.dir, { inlineBytes: 0 }));
      const oc = createDirectStoreClient(old.service, "old");
      const alice = await old.addUser("alice@example.com", "pw");
      const first = body(700, "old");
      const m1 = (await deliver(oc, first, ["alice@example.com"])).delivered[0]!.messageId;
      oc.close();
      await old.close();
      // Back to schema version 3: no inline column.
      const db = new Database(join(t.dir, DB_FILE));
      db.exec(
        "ALTER TABLE bodies DROP COLUMN inline; DROP TABLE fts_pending; PRAGMA user_version = 3",
      );
      db.close();

      const store = openStore(storeOptions(t.dir, { inlineBytes: INLINE }));
      const client = createDirectStoreClient(store.service, "new");
      try {
        expect(Buffer.from(
          await readAll(
            client.stream("message.read", { userId: alice.userId, messageId: m1 }),
          ),
        )).toEqual(Buffer.from(first));
        const second = body(700, "new");
        const m2 = (await deliver(client, second, ["alice@example.com"])).delivered[0]!.messageId;
        expect(Buffer.from(
          await readAll(
            client.stream("message.read", { userId: alice.userId, messageId: m2 }),
          ),
        )).toEqual(Buffer.from(second));
        expect(layout(t.dir).map((r) => r.inlineLen)).toEqual([null, 700]);
        expect((await store.verify()).problems).toEqual([]);
      } finally {
        client.close();
        await store.close();
      }
    } finally {
      t.cleanup();
    }
  });

  test("a batch of only inline bodies does no page-file fdatasync", async () => {
    const real = PageFile.prototype.datasync;
    let syncs = 0;
    PageFile.prototype.datasync = function (this: PageFile) {
      syncs++;
      return real.call(this);
    };
    try {
      const { f } = await setup({ durability: "group" });
      await Promise.all(
        Array.from(
          { length: 16 },
          (_, i) => deliver(f.client, body(1000 + i, `g${i}`), ["alice@example.com"]),
        ),
      );
      // Inline bodies and pure-metadata commits: the WAL's fsync is the only one.
      expect(syncs).toBe(0);
      await deliver(f.client, body(INLINE + 1, "paged"), ["alice@example.com"]);
      expect(syncs).toBe(1);
      // A mixed batch syncs the page file once, before its commit.
      syncs = 0;
      await Promise.all([
        deliver(f.client, body(100, "m1"), ["alice@example.com"]),
        deliver(f.client, body(INLINE * 2, "m2"), ["alice@example.com"]),
        deliver(f.client, body(200, "m3"), ["alice@example.com"]),
      ]);
      expect(syncs).toBeGreaterThanOrEqual(1);
      expect(syncs).toBeLessThanOrEqual(3);
      expect((await f.store.verify()).problems).toEqual([]);
    } finally {
      PageFile.prototype.datasync = real;
    }
  });

  test("uploads stay in memory until they cross the threshold, then spill to pages", async () => {
    const { f } = await setup();
    // Three uploads in flight, all still inline: nothing in the page file yet.
    const ups: number[] = [];
    for (let i = 0; i < 3; i++) {
      const { uploadId } = await f.client.call("body.begin", { sizeHint: 0 });
      ups.push(uploadId);
      for (let k = 0; k < 4; k++) {
        await f.client.call("body.append", { uploadId, chunk: body(1000, `u${i}${k}`) });
      }
    }
    expect((await f.client.call("store.stats", {})).pageFileBytes).toBe(0);
    // The fourth kilobyte-and-more crosses the threshold: this one spills, the others wait.
    await f.client.call("body.append", { uploadId: ups[0]!, chunk: body(1000, "x") });
    expect((await f.client.call("store.stats", {})).pageFileBytes).toBeGreaterThan(0);
    for (const uploadId of ups) await f.client.call("body.abort", { uploadId });
    expect((await f.store.verify()).problems).toEqual([]);
  });

  test("an upload's inline buffer never grows past inlineBytes", () => {
    const t = tempDir("posthorn-inline-mem-");
    const core = new Core(storeOptions(t.dir, { inlineBytes: INLINE, pageBytes: 512 }));
    try {
      const uploads = new Uploads(core);
      const id = uploads.begin("p", 0);
      const sizes: number[] = [];
      for (let i = 0; i < 6; i++) {
        uploads.append(id, "p", new Uint8Array(700).fill(65 + i));
        sizes.push(uploads.inlineBufferBytes());
      }
      expect(sizes.every((n) => n <= INLINE)).toBe(true);
      expect(sizes[4]).toBeGreaterThanOrEqual(3500); // 3500 bytes: still inline
      expect(sizes[5]).toBe(0); // 4200 bytes: spilled, the buffer dropped
      // A hint over the threshold: no buffer at all.
      uploads.begin("p", INLINE + 1);
      expect(uploads.inlineBufferBytes()).toBe(0);
      uploads.abortAll();
    } finally {
      core.close();
      t.cleanup();
    }
  });
});
