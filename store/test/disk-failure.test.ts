// A failed fdatasync of the page file or of the WAL is fatal for the store: the batch is
// refused, nothing afterwards is acknowledged, and the host is told so it can restart the
// store (which then recovers from committed state).
import { expect, test } from "bun:test";
import { StoreError } from "../../ipc/store-api.ts";
import { WalFile } from "../db.ts";
import { PageFile } from "../pagefile.ts";
import { eventually } from "../../tests/helpers.ts";
import { deliver, fixture } from "./helpers.ts";

const eio = () => Promise.reject(Object.assign(new Error("EIO: i/o error"), { code: "EIO" }));

/**
 * Delivers once with working fsyncs, once while `breakSync` makes them fail (then restores
 * them), once more after: the first is acknowledged, neither of the others, and the host
 * heard of it once.
 */
async function deliverAcrossFailedSync(
  durability: "always" | "group",
  inlineBytes: number | undefined,
  breakSync: () => () => void,
) {
  const fatal: Error[] = [];
  const f = fixture({ durability, onFatal: (e) => fatal.push(e), inlineBytes });
  await f.store.addUser("alice@example.com", "pw");
  expect((await deliver(f.client, "before\r\n", ["alice@example.com"])).delivered).toHaveLength(1);
  const restore = breakSync();
  try {
    const failed = await deliver(f.client, "during\r\n", ["alice@example.com"]).catch((e) => e);
    expect(failed).toBeInstanceOf(StoreError);
    expect((failed as StoreError).code).toBe("unavailable");
    expect(fatal).toHaveLength(1);
  } finally {
    restore();
  }
  // The disk "works" again, but this store instance must not trust it.
  const after = await deliver(f.client, "after\r\n", ["alice@example.com"]).catch((e) => e);
  expect((after as StoreError).code).toBe("unavailable");
  return f;
}

test("after a failed fsync no delivery is acknowledged and the host hears of it", async () => {
  // Page-file bodies: an inline body needs no page-file fsync at all (see inline.test.ts).
  const f = await deliverAcrossFailedSync("always", 0, () => {
    const real = PageFile.prototype.datasync;
    PageFile.prototype.datasync = eio;
    return () => PageFile.prototype.datasync = real;
  });
  const acct = await f.client.call("account.get", { address: "alice@example.com" });
  expect(acct?.usedMessages).toBe(1);
  expect((await f.store.verify()).ok).toBe(true);
  await f.done();
});

test("a failed fsync of the WAL after a group commit acknowledges nothing of that batch", async () => {
  // Durable commits fsync the WAL from outside SQLite: the first delivery goes through it.
  const f = await deliverAcrossFailedSync("group", undefined, () => {
    const real = WalFile.prototype.sync;
    WalFile.prototype.sync = eio;
    return () => WalFile.prototype.sync = real;
  });
  await f.done();
});

test("events of a group commit wait for its WAL fsync; a failed fsync publishes none", async () => {
  const f = fixture({ durability: "group", onFatal: () => {} });
  await f.store.addUser("alice@example.com", "pw");
  const events: unknown[] = [];
  f.client.subscribe("mailbox", (e) => events.push(e));
  const real = WalFile.prototype.sync;
  let release: (() => void) | undefined;
  let fail: ((e: Error) => void) | undefined;
  WalFile.prototype.sync = () =>
    new Promise<void>((resolve, reject) => {
      release = resolve;
      fail = reject;
    });
  try {
    const first = deliver(f.client, "one\r\n", ["alice@example.com"]);
    await eventually(() => release !== undefined);
    await Bun.sleep(20); // the COMMIT is done, its fsync pending: nothing may show yet
    expect(events).toEqual([]);
    release!();
    expect((await first).delivered).toHaveLength(1);
    expect(events).toHaveLength(1);

    fail = undefined;
    const second = deliver(f.client, "two\r\n", ["alice@example.com"]).catch((e) => e);
    await eventually(() => fail !== undefined);
    eio().catch(fail!);
    expect(((await second) as StoreError).code).toBe("unavailable");
    expect(events).toHaveLength(1);
  } finally {
    WalFile.prototype.sync = real;
    await f.done();
  }
});
