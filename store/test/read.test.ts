// message.read, the read path: chunks are filled across the prefix/body seam and across the
// extents of a fragmented body, straight from the pages; every byte range is exact; a small
// message is a single chunk; another user's message stays not_found. message.readMany answers
// each message like message.read would, or with that message's own error.
import { Database } from "bun:sqlite";
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { join } from "node:path";
import { DB_FILE } from "../core.ts";
import { deliver, enc, type Fixture, fixture, message, readAll } from "./helpers.ts";

const CHUNK = 1000;
const PREFIX = "Return-Path: <s@remote.test>\r\n";
let f: Fixture;
let userId: number;
let folderId: number;

beforeAll(async () => {
  // Every body in the page file: fragmented extents are the case under test (inline bodies are
  // read in inline.test.ts).
  f = fixture({ pageBytes: 512, chunkBytes: CHUNK, inlineBytes: 0 });
  userId = (await f.store.addUser("alice@example.com", "pw")).userId;
  await f.store.addUser("bob@example.com", "pw");
  folderId = (await f.client.call("folder.status", { userId, name: "INBOX" })).folderId;
});
afterAll(() => f.done());

async function latest(): Promise<number> {
  const list = await f.client.call("message.list", { userId, folderId });
  return list[list.length - 1]!.messageId;
}

describe("message.read", () => {
  test("a fragmented body with a prefix: every range is exact, chunks are full", async () => {
    // Punch holes in the page file so the next body lands in several extents.
    for (let i = 0; i < 8; i++) {
      await deliver(f.client, message(`filler ${i}`, `${i}`.repeat(700)), ["alice@example.com"]);
    }
    const fillers = await f.client.call("message.list", { userId, folderId });
    await f.client.call("mailbox.expunge", {
      userId,
      folderId,
      uids: fillers.filter((_, i) => i % 2 === 0).map((m) => m.uid),
    });
    const body = message("fragmented", [...Array(200).keys()].map((i) => `line ${i}`).join("\r\n"));
    await deliver(f.client, body, ["alice@example.com"], { prefix: PREFIX, chunk: 333 });
    const messageId = await latest();
    const db = new Database(join(f.dir, DB_FILE), { readonly: true });
    const row = db.query(
      "SELECT b.extents FROM messages m JOIN bodies b ON b.id = m.body_id WHERE m.id = ?",
    ).get(messageId) as { extents: string };
    db.close();
    expect(JSON.parse(row.extents).length).toBeGreaterThan(1); // the case under test

    const whole = enc(PREFIX + body);
    const chunks: Uint8Array[] = [];
    for await (const c of f.client.stream("message.read", { userId, messageId })) chunks.push(c);
    expect(Buffer.concat(chunks)).toEqual(Buffer.from(whole));
    // Every chunk but the last is full: the prefix and the extents do not cut chunks short.
    expect(chunks.slice(0, -1).every((c) => c.length === CHUNK)).toBe(true);

    const seam = PREFIX.length;
    const cuts = [0, 1, seam - 1, seam, seam + 1, 511, 512, 513, 999, 1000, 1001, whole.length - 1];
    for (const offset of cuts) {
      for (const length of [0, 1, 2, 600, 1000, 1500, 5000, undefined]) {
        const got = await readAll(
          f.client.stream("message.read", { userId, messageId, offset, length }),
        );
        const end = length === undefined ? whole.length : offset + length;
        expect(Buffer.from(got)).toEqual(Buffer.from(whole.subarray(offset, end)));
      }
    }
    expect(
      (await readAll(f.client.stream("message.read", { userId, messageId, offset: 1e6 }))).length,
    ).toBe(0);
  });

  test("a small message with its prefix is one chunk", async () => {
    const body = message("small", "hello");
    await deliver(f.client, body, ["alice@example.com"], { prefix: PREFIX });
    const messageId = await latest();
    const chunks: Uint8Array[] = [];
    for await (const c of f.client.stream("message.read", { userId, messageId })) chunks.push(c);
    expect(chunks.length).toBe(1);
    expect(new TextDecoder().decode(chunks[0]!)).toBe(PREFIX + body);
  });

  test("readMany: whole messages in order, each failure its own, bad requests refused", async () => {
    const list = await f.client.call("message.list", { userId, folderId });
    const ids = list.map((m) => m.messageId);
    const big = ids.find((_, i) => list[i]!.size > CHUNK)!; // the fragmented one
    const bob = (await f.client.call("account.get", { address: "bob@example.com" }))!.userId;
    const asked = [...ids, 999_999];
    const answers = await f.client.call("message.readMany", { userId, messageIds: asked });
    expect(answers.length).toBe(asked.length);
    for (const [i, messageId] of asked.entries()) {
      const a = answers[i]!;
      if (messageId === 999_999) expect(a).toMatchObject({ code: "not_found" });
      else if (messageId === big) expect(a).toMatchObject({ code: "invalid" }); // stream it
      else {
        const streamed = await readAll(f.client.stream("message.read", { userId, messageId }));
        expect("bytes" in a && Buffer.from(a.bytes)).toEqual(Buffer.from(streamed));
      }
    }
    const theirs = await f.client.call("message.readMany", { userId: bob, messageIds: ids });
    expect(theirs.every((a) => "code" in a && a.code === "not_found")).toBe(true);
    for (const messageIds of [[-1], Array(257).fill(ids[0]), "1" as never]) {
      const err = await f.client.call("message.readMany", { userId, messageIds }).catch((e) => e);
      expect(err.code).toBe("invalid");
    }
  });

  test("another user's message, or none, is not_found", async () => {
    const messageId = await latest();
    const bob = (await f.client.call("account.get", { address: "bob@example.com" }))!.userId;
    for (const req of [{ userId: bob, messageId }, { userId, messageId: 999_999 }]) {
      const err = await readAll(f.client.stream("message.read", req)).catch((e) => e);
      expect(err.code).toBe("not_found");
    }
  });
});
