// queue.report and queue.settle: a DSN and the queue entries it reports on change in one
// transaction (both or neither), and a transaction's outcomes are settled in one call.
import { Database } from "bun:sqlite";
import { afterEach, beforeEach, describe, expect, test } from "bun:test";
import { join } from "node:path";
import type { QueueSettlement } from "../../ipc/store-api.ts";
import { StoreError } from "../../ipc/store-api.ts";
import { DB_FILE } from "../core.ts";
import { dec, deliver, enc, type Fixture, fixture, message, readAll } from "./helpers.ts";

let f: Fixture;
let queued: number[];
beforeEach(async () => {
  f = fixture();
  await f.store.addUser("alice@example.com", "pw-alice");
  // Alice's message for two remote recipients: two queue entries sharing one body.
  const res = await deliver(f.client, message("out", "to the world"), [
    "x@remote.test",
    "y@remote.test",
  ], { sender: "alice@example.com" });
  queued = res.queued.map((q) => q.queueId);
  expect(queued).toHaveLength(2);
});
afterEach(() => f.done());

/** Upload a (pretend) DSN; returns its upload id. */
async function upload(text: string): Promise<number> {
  const { uploadId } = await f.client.call("body.begin", {});
  await f.client.call("body.append", { uploadId, chunk: enc(text) });
  return uploadId;
}

async function aliceInbox(): Promise<string[]> {
  const userId = (await f.client.call("account.get", { address: "alice@example.com" }))!.userId;
  const st = await f.client.call("folder.status", { userId, name: "INBOX" });
  const list = await f.client.call("message.list", { userId, folderId: st.folderId });
  const out: string[] = [];
  for (const m of list) {
    out.push(
      dec(await readAll(f.client.stream("message.read", { userId, messageId: m.messageId }))),
    );
  }
  return out;
}

const ids = async () => (await f.client.call("queue.list", {})).map((e) => e.queueId);

async function report(entries: QueueSettlement[], text = "DSN\r\n", to = "alice@example.com") {
  return await f.client.call("queue.report", {
    uploadId: await upload(text),
    to,
    localPrefix: enc("Return-Path: <>\r\n"),
    entries,
  });
}

async function rejection(p: Promise<unknown>): Promise<StoreError> {
  const err = await p.then(() => null, (e) => e);
  expect(err).toBeInstanceOf(StoreError);
  return err as StoreError;
}

describe("queue.report", () => {
  test("a bounce lands in the sender's mailbox and removes its entry, in one call", async () => {
    const [x, y] = queued;
    const res = await report([{ queueId: x!, outcome: "failed", error: "550 gone" }], "BOUNCE\r\n");
    expect(res.settled).toEqual([x!]);
    expect(res.delivered.map((d) => d.address)).toEqual(["alice@example.com"]);
    expect(await aliceInbox()).toEqual(["Return-Path: <>\r\nBOUNCE\r\n"]);
    expect(await ids()).toEqual([y!]);
    expect((await f.store.verify()).problems).toEqual([]);
  });

  test("a report for entries already settled is refused and stores nothing: no second bounce", async () => {
    const [x] = queued;
    await report([{ queueId: x!, outcome: "failed", error: "550 gone" }]);
    const before = await f.client.call("store.stats", {});
    const err = await rejection(report([{ queueId: x!, outcome: "failed", error: "550 gone" }]));
    expect(err.code).toBe("not_found");
    expect(await aliceInbox()).toHaveLength(1);
    const after = await f.client.call("store.stats", {});
    expect(after.bodies).toBe(before.bodies);
    expect(after.messages).toBe(before.messages);
    expect((await f.store.verify()).problems).toEqual([]);
  });

  test("a failure between the DSN and the queue update leaves neither; the retry sends one", async () => {
    const [x, y] = queued;
    const before = await f.client.call("store.stats", {});
    // Make the queue update fail inside the store's transaction, after the DSN was written.
    const side = new Database(join(f.dir, DB_FILE));
    side.exec("PRAGMA busy_timeout = 5000");
    side.exec(
      "CREATE TRIGGER fail_queue_delete BEFORE DELETE ON queue BEGIN SELECT RAISE(ABORT, 'injected'); END",
    );
    try {
      const err = await rejection(
        report([
          { queueId: x!, outcome: "failed", error: "550 gone" },
          { queueId: y!, outcome: "failed", error: "550 gone" },
        ]),
      );
      expect(err.code).toBe("internal");
      expect(await aliceInbox()).toEqual([]);
      expect(await ids()).toEqual([x!, y!]);
      const after = await f.client.call("store.stats", {});
      expect(after.bodies).toBe(before.bodies);
      expect(after.messages).toBe(before.messages);
      expect(after.freePages).toBe(before.freePages); // the DSN's pages went back
    } finally {
      side.exec("DROP TRIGGER fail_queue_delete");
      side.close();
    }
    const res = await report(
      [
        { queueId: x!, outcome: "failed", error: "550 gone" },
        { queueId: y!, outcome: "failed", error: "550 gone" },
      ],
      "BOUNCE\r\n",
    );
    expect(res.settled).toEqual([x!, y!]);
    expect(await aliceInbox()).toEqual(["Return-Path: <>\r\nBOUNCE\r\n"]);
    expect(await ids()).toEqual([]);
    expect((await f.store.verify()).problems).toEqual([]);
  });

  test("a delay notice defers its entry and marks it notified; a second notice is refused", async () => {
    const [x, y] = queued;
    const at = Date.now() + 60_000;
    const delayed = {
      queueId: x!,
      outcome: "deferred",
      error: "421 busy",
      nextAttemptAt: at,
    } as const;
    const res = await report([delayed], "DELAY\r\n");
    expect(res.settled).toEqual([x!]);
    const e = (await f.client.call("queue.list", {})).find((q) => q.queueId === x)!;
    expect(e).toMatchObject({ attempts: 1, lastError: "421 busy", nextAttemptAt: at });
    expect(e.delayNotified).toBe(true);
    expect((await rejection(report([delayed]))).code).toBe("not_found");
    expect(await aliceInbox()).toEqual(["Return-Path: <>\r\nDELAY\r\n"]);
    expect(await ids()).toEqual([x!, y!]);
  });

  test("a relayed report marks its entries done; an entry gone meanwhile is skipped", async () => {
    const [x, y] = queued;
    await f.client.call("queue.delete", { queueId: y! });
    const res = await report([{ queueId: x!, outcome: "done" }, { queueId: y!, outcome: "done" }]);
    expect(res.settled).toEqual([x!]);
    expect(await ids()).toEqual([]);
    expect(await aliceInbox()).toHaveLength(1);
  });

  test("another sender's entry, a null recipient or a bad list: invalid, nothing stored", async () => {
    const [x, y] = queued;
    const fail = { queueId: x!, outcome: "failed", error: "e" } as const;
    const codes = [
      (await rejection(report([fail], "DSN\r\n", "mallory@example.com"))).code,
      (await rejection(report([fail], "DSN\r\n", ""))).code,
      (await rejection(report([]))).code,
      (await rejection(report([fail, fail]))).code,
      (await rejection(report([{ queueId: y!, outcome: "lost" } as unknown as QueueSettlement])))
        .code,
    ];
    expect(codes).toEqual(["invalid", "invalid", "invalid", "invalid", "invalid"]);
    expect(await ids()).toEqual([x!, y!]);
    expect(await aliceInbox()).toEqual([]);
  });

  test("a report to a remote sender is queued with the null sender, with its entry settled", async () => {
    const res = await deliver(f.client, message("in", "relay me"), ["far@other.test"], {
      sender: "bob@remote.test",
    });
    const id = res.queued[0]!.queueId;
    const r = await report(
      [{ queueId: id, outcome: "failed", error: "550 gone" }],
      "DSN\r\n",
      "bob@remote.test",
    );
    expect(r.queued.map((q) => q.address)).toEqual(["bob@remote.test"]);
    const q = await f.client.call("queue.list", {});
    const bounce = q.find((e) => e.queueId === r.queued[0]!.queueId)!;
    expect(bounce.sender).toBe(""); // RFC 5321 §4.5.5: never bounced in turn
    expect(q.some((e) => e.queueId === id)).toBe(false);
    // The returned body is what was uploaded, without the local-only prefix.
    expect(dec(await readAll(f.client.stream("queue.read", { queueId: bounce.queueId })))).toBe(
      "DSN\r\n",
    );
  });
});

describe("queue.settle", () => {
  test("done, failed and deferred in one call; gone entries skipped; bodies released", async () => {
    const [x, y] = queued;
    const more = await deliver(f.client, message("again", "third"), ["z@remote.test"], {
      sender: "alice@example.com",
    });
    const z = more.queued[0]!.queueId;
    const at = Date.now() + 1000;
    const res = await f.client.call("queue.settle", {
      entries: [
        { queueId: x!, outcome: "done" },
        { queueId: y!, outcome: "failed", error: "550 no" },
        { queueId: z, outcome: "deferred", error: "451 later", nextAttemptAt: at },
        { queueId: 999_999, outcome: "done" },
      ],
    });
    expect(res.settled).toEqual([x!, y!, z]);
    const q = await f.client.call("queue.list", {});
    expect(q.map((e) => [e.queueId, e.attempts, e.lastError, e.nextAttemptAt])).toEqual([
      [z, 1, "451 later", at],
    ]);
    expect(q[0]!.delayNotified).toBe(false);
    expect((await f.client.call("store.stats", {})).bodies).toBe(1); // x and y's body is freed
    expect((await f.store.verify()).problems).toEqual([]);
  });

  test("bad settlements are refused as a whole", async () => {
    const [x] = queued;
    const bad = [
      [],
      [{ queueId: -1, outcome: "done" }],
      [{ queueId: x!, outcome: "deferred", error: "e", nextAttemptAt: Number.NaN }],
      [{ queueId: x!, outcome: "done" }, { queueId: x!, outcome: "done" }],
    ] as QueueSettlement[][];
    for (const entries of bad) {
      expect((await rejection(f.client.call("queue.settle", { entries }))).code).toBe("invalid");
    }
    expect(await ids()).toEqual(queued);
  });
});
