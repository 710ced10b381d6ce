// Who may send as what (account.ownsAddress, RFC 6409 §6.1) and where postmaster@ goes
// (RFC 5321 §4.5.1: metabase server.postmaster, else the catch-all, else the first user).
import { afterEach, describe, expect, setSystemTime, test } from "bun:test";
import { memoryLogger } from "../../log/mod.ts";
import type { StoreOptions } from "../mod.ts";
import { deliver, type Fixture, fixture, storeOptions } from "./helpers.ts";

let f: Fixture | null = null;
afterEach(async () => {
  setSystemTime();
  await f?.done();
  f = null;
});

const domains = [
  { name: "example.com", catchAll: null },
  { name: "example.org", catchAll: null },
];

/** The fixture's options with changes, for a live `reconfigure`. */
const options = (over: Partial<StoreOptions> = {}) => storeOptions(f!.dir, { domains, ...over });

async function withUsers(over: Partial<StoreOptions> = {}): Promise<Fixture> {
  f = fixture({ domains, ...over });
  // Creation order matters for the postmaster fallback: bob first in example.org.
  setSystemTime(new Date("2026-01-01T00:00:00Z"));
  await f.store.addUser("alice@example.com", "pw");
  setSystemTime(new Date("2026-01-02T00:00:00Z"));
  await f.store.addUser("bob@example.org", "pw");
  setSystemTime(new Date("2026-01-03T00:00:00Z"));
  await f.store.addUser("carol@example.org", "pw");
  setSystemTime();
  return f;
}

describe("account.ownsAddress", () => {
  test("own address, plus-addresses and aliases that reach the user alone", async () => {
    const f = await withUsers();
    const alice = (await f.client.call("account.get", { address: "alice@example.com" }))!;
    const owns = (address: string) =>
      f.client.call("account.ownsAddress", { userId: alice.userId, address });
    f.store.addAlias("sales@example.com", "alice@example.com");
    f.store.addAlias("info@example.org", "sales@example.com"); // alias of an alias
    f.store.addAlias("tagged@example.com", "alice+work@example.com");
    f.store.addAlias("both@example.com", "alice@example.com");
    f.store.addAlias("both@example.com", "bob@example.org");
    f.store.addAlias("away@example.com", "alice@elsewhere.test");
    f.store.addAlias("fwd@example.com", "alice@example.com");
    f.store.addAlias("fwd@example.com", "archive@elsewhere.test");
    f.store.addListMember("solo-list@example.com", "alice@example.com");
    f.store.addAlias("via-list@example.com", "solo-list@example.com");
    f.store.addAlias("loop1@example.com", "loop2@example.com");
    f.store.addAlias("loop2@example.com", "loop1@example.com");
    f.store.addAlias("loop2@example.com", "alice@example.com");
    f.store.addAlias("pure1@example.com", "pure2@example.com");
    f.store.addAlias("pure2@example.com", "pure1@example.com");

    expect(await owns("alice@example.com")).toBe(true);
    expect(await owns("<Alice@EXAMPLE.com>")).toBe(true);
    expect(await owns("alice+news@example.com")).toBe(true);
    expect(await owns("sales@example.com")).toBe(true);
    expect(await owns("sales+q3@example.com")).toBe(true);
    expect(await owns("info@example.org")).toBe(true);
    expect(await owns("tagged@example.com")).toBe(true);
    expect(await owns("loop1@example.com")).toBe(true); // the loop adds nobody else

    expect(await owns("bob@example.org")).toBe(false); // another user's mailbox
    expect(await owns("both@example.com")).toBe(false); // reaches bob too
    expect(await owns("away@example.com")).toBe(false); // forwards elsewhere
    expect(await owns("fwd@example.com")).toBe(false);
    expect(await owns("solo-list@example.com")).toBe(false); // a list is not its members'
    expect(await owns("solo-list+x@example.com")).toBe(false);
    expect(await owns("via-list@example.com")).toBe(false);
    expect(await owns("pure1@example.com")).toBe(false); // reaches nobody
    expect(await owns("nobody@example.com")).toBe(false);
    expect(await owns("ceo@bank.example")).toBe(false);
    expect(await owns("not an address")).toBe(false);
    expect(await owns("")).toBe(false);
  });

  test("catch-all, implicit postmaster, public folder, disabled or unknown account", async () => {
    const f = await withUsers({
      domains: [{ name: "example.com", catchAll: "alice@example.com" }, domains[1]!],
    });
    const alice = (await f.client.call("account.get", { address: "alice@example.com" }))!;
    const owns = (address: string, userId = alice.userId) =>
      f.client.call("account.ownsAddress", { userId, address });
    f.store.admin.createPublicFolder("Support", { address: "support@example.com" });
    // Mail to these reaches alice, but none is an identity she holds.
    expect(await f.client.call("recipient.resolve", { address: "random@example.com" }))
      .toMatchObject({ kind: "local", via: "catchall" });
    expect(await owns("random@example.com")).toBe(false);
    expect(await f.client.call("recipient.resolve", { address: "postmaster@example.com" }))
      .toMatchObject({ kind: "local", userIds: [alice.userId] });
    expect(await owns("postmaster@example.com")).toBe(false);
    expect(await owns("support@example.com")).toBe(false);
    // An explicit postmaster alias is an alias like any other.
    f.store.addAlias("postmaster@example.com", "alice@example.com");
    expect(await owns("postmaster@example.com")).toBe(true);

    expect(await owns("alice@example.com", 9999)).toBe(false);
    f.store.updateUser("alice@example.com", { disabled: true });
    expect(await owns("alice@example.com")).toBe(false);
    await expect(
      f.client.call("account.ownsAddress", { userId: -1, address: "alice@example.com" }),
    ).rejects.toMatchObject({ code: "invalid" });
  });
});

describe("postmaster (RFC 5321 §4.5.1)", () => {
  const resolve = (address: string) => f!.client.call("recipient.resolve", { address });
  const userId = async (address: string) =>
    (await f!.client.call("account.get", { address }))!.userId;

  test("no setting: the domain's first enabled user in creation order; bare <postmaster>", async () => {
    await withUsers();
    const alice = await userId("alice@example.com");
    const bob = await userId("bob@example.org");
    const carol = await userId("carol@example.org");
    expect(await resolve("postmaster@example.com")).toMatchObject({
      kind: "local",
      address: "postmaster@example.com",
      userIds: [alice],
    });
    expect(await resolve("PostMaster@Example.ORG")).toMatchObject({ userIds: [bob] });
    // Bare <postmaster>, any case: the primary (first) domain's postmaster.
    expect(await resolve("postmaster")).toMatchObject({
      address: "postmaster@example.com",
      userIds: [alice],
    });
    expect(await resolve("<Postmaster>")).toMatchObject({ userIds: [alice] });
    // A disabled first user is skipped.
    f!.store.updateUser("bob@example.org", { disabled: true });
    expect(await resolve("postmaster@example.org")).toMatchObject({ userIds: [carol] });
    // A real postmaster@ wins over the rule; so does the domain's catch-all.
    f!.store.addAlias("postmaster@example.org", "bob@example.org");
    expect(await resolve("postmaster@example.org")).toMatchObject({ userIds: [bob], via: "alias" });
    f!.store.reconfigure(options({
      domains: [{ name: "example.com", catchAll: "catch@example.com" }, domains[1]!],
    }));
    await f!.store.addUser("catch@example.com", "pw");
    expect(await resolve("postmaster@example.com")).toMatchObject({ via: "catchall" });
  });

  test("server.postmaster takes every unheld postmaster@, applies on reload, may be remote", async () => {
    await withUsers();
    const carol = await userId("carol@example.org");
    f!.store.reconfigure(options({ postmaster: "Carol@example.org" }));
    expect(await resolve("postmaster@example.com")).toMatchObject({ userIds: [carol] });
    expect(await resolve("postmaster")).toMatchObject({ userIds: [carol] });
    f!.store.addAlias("postmaster@example.org", "bob@example.org");
    expect(await resolve("postmaster@example.org")).not.toMatchObject({ userIds: [carol] });

    const res = await deliver(f!.client, "Subject: abuse report\r\n\r\nhi\r\n", ["postmaster"]);
    expect(res.delivered).toHaveLength(1);
    const inbox = await f!.client.call("folder.status", { userId: carol, name: "INBOX" });
    expect(inbox.messages).toBe(1);

    f!.store.reconfigure(options({ postmaster: "admin@isp.example" }));
    expect(await resolve("postmaster@example.com")).toMatchObject({
      kind: "local",
      userIds: [],
      forward: ["admin@isp.example"],
    });
    // With no local domain at all, bare <postmaster> still reaches the configured one.
    f!.store.reconfigure(options({ domains: [], postmaster: "admin@isp.example" }));
    expect(await resolve("postmaster")).toMatchObject({ kind: "remote" });
    f!.store.reconfigure(options({ domains: [], postmaster: null }));
    expect(await resolve("postmaster")).toMatchObject({ kind: "unknown" });
  });

  test("domains nobody's postmaster can reach are listed, and logged at open and reload", async () => {
    const log = memoryLogger("store");
    const all = [...domains, { name: "empty.test", catchAll: null }];
    await withUsers({ log, domains: all });
    const warnings = () => log.records.filter((r) => r.event === "store.no_postmaster");
    // At open no user existed yet: every domain was unreachable.
    expect(warnings()).toHaveLength(1);
    expect(warnings()[0]).toMatchObject({
      level: "warn",
      domains: ["example.com", "example.org", "empty.test"],
    });
    expect(f!.store.domainsWithoutPostmaster()).toEqual(["empty.test"]);
    expect(await resolve("postmaster@empty.test")).toMatchObject({ kind: "unknown" });
    f!.store.reconfigure(options({ domains: all, log }));
    expect(warnings()).toHaveLength(2);
    expect(warnings()[1]).toMatchObject({ domains: ["empty.test"] });
    f!.store.reconfigure(options({ domains: all, log, postmaster: "bob@example.org" }));
    expect(f!.store.domainsWithoutPostmaster()).toEqual([]);
    expect(warnings()).toHaveLength(2);
  });
});
