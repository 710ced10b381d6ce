// Accounts, authentication and recipient resolution.
import { afterEach, beforeEach, describe, expect, setSystemTime, test } from "bun:test";
import { deliver, type Fixture, fixture } from "./helpers.ts";

let f: Fixture;
beforeEach(async () => {
  f = fixture({
    domains: [
      { name: "example.com", catchAll: "alice@example.com" },
      { name: "example.org", catchAll: null },
    ],
  });
  await f.store.addUser("alice@example.com", "pw-alice", { displayName: "Alice" });
  await f.store.addUser("bob@example.com", "pw-bob");
});
afterEach(() => f.done());

const verify = (username: string, password: string, remoteIp = "10.0.0.1") =>
  f.client.call("auth.verify", { username, password, remoteIp, protocol: "pop3" });

describe("auth.verify", () => {
  test("right and wrong passwords; local part alone when unambiguous", async () => {
    const ok = await verify("alice@example.com", "pw-alice");
    expect(ok).toMatchObject({ ok: true, account: { address: "alice@example.com" } });
    expect(await verify("ALICE@Example.COM", "pw-alice")).toMatchObject({ ok: true });
    expect(await verify("alice", "pw-alice")).toMatchObject({ ok: true });
    expect(await verify("alice@example.com", "nope")).toEqual({
      ok: false,
      reason: "bad_credentials",
    });
    expect(await verify("ghost@example.com", "x")).toEqual({
      ok: false,
      reason: "bad_credentials",
    });
  });

  test("a local part held in two domains needs the full address", async () => {
    await f.store.addUser("alice@example.org", "pw-other");
    expect(await verify("alice", "pw-alice")).toMatchObject({ ok: false });
    expect(await verify("alice@example.org", "pw-other")).toMatchObject({ ok: true });
  });

  test("failures per IP are throttled; other IPs carry on", async () => {
    for (let i = 0; i < 5; i++) await verify("bob@example.com", "wrong", "10.9.9.9");
    expect(await verify("bob@example.com", "pw-bob", "10.9.9.9")).toEqual({
      ok: false,
      reason: "throttled",
    });
    expect(await verify("bob@example.com", "pw-bob", "10.9.9.8")).toMatchObject({ ok: true });
  });

  test("a parallel burst of guesses cannot outrun the per-IP limit", async () => {
    const results = await Promise.all(
      Array.from({ length: 18 }, () => verify("bob@example.com", "wrong", "10.7.7.7")),
    );
    const hashed = results.filter((r) => !r.ok && r.reason === "bad_credentials").length;
    expect(hashed).toBeLessThanOrEqual(5); // failuresPerMinute in the fixture
    expect(results.filter((r) => !r.ok && r.reason === "throttled").length).toBe(18 - hashed);
  });

  test("failures per account are throttled from any IP, and the lock expires", async () => {
    const start = Date.now();
    try {
      // A known client of bob's, before the attack.
      expect(await verify("bob@example.com", "pw-bob", "192.0.2.1")).toMatchObject({ ok: true });
      // 10 failures (auth.accountFailuresPerMinute default), each from its own IP: no IP
      // reaches its own limit of 5.
      for (let i = 0; i < 10; i++) {
        expect(await verify("bob@example.com", "guess", `10.2.0.${i}`)).toEqual({
          ok: false,
          reason: "bad_credentials",
        });
      }
      // Throttled for the account from a fresh IP, even with the right password, and under
      // the local part alone.
      expect(await verify("bob@example.com", "pw-bob", "10.3.0.1")).toEqual({
        ok: false,
        reason: "throttled",
      });
      expect(await verify("bob", "pw-bob", "10.3.0.2")).toEqual({ ok: false, reason: "throttled" });
      // Other accounts are untouched; bob's known client is not locked out.
      expect(await verify("alice@example.com", "pw-alice", "10.3.0.3")).toMatchObject({ ok: true });
      expect(await verify("bob@example.com", "pw-bob", "192.0.2.1")).toMatchObject({ ok: true });
      // A minute after the failures the lock has lifted by itself.
      setSystemTime(new Date(start + 61_000));
      expect(await verify("bob@example.com", "pw-bob", "10.3.0.1")).toMatchObject({ ok: true });
    } finally {
      setSystemTime();
    }
  });

  test("names that are no account are throttled alike (no enumeration)", async () => {
    for (let i = 0; i < 10; i++) await verify("ghost@example.com", "x", `10.4.0.${i}`);
    expect(await verify("ghost@example.com", "x", "10.4.1.1")).toEqual({
      ok: false,
      reason: "throttled",
    });
  });

  test("a changed password invalidates the cached credential", async () => {
    expect(await verify("bob@example.com", "pw-bob")).toMatchObject({ ok: true });
    await f.store.setPassword("bob@example.com", "new-pw");
    expect(await verify("bob@example.com", "pw-bob")).toMatchObject({ ok: false });
    expect(await verify("bob@example.com", "new-pw")).toMatchObject({ ok: true });
  });

  test("disabled accounts say so", async () => {
    f.store.updateUser("bob@example.com", { disabled: true });
    expect(await verify("bob@example.com", "pw-bob")).toEqual({ ok: false, reason: "disabled" });
  });

  test("many logins at once all finish (hashes capped in flight)", async () => {
    const results = await Promise.all(
      Array.from({ length: 12 }, (_, i) => verify("alice@example.com", "pw-alice", `10.1.0.${i}`)),
    );
    expect(results.every((r) => r.ok)).toBe(true);
  });
});

describe("recipient.resolve", () => {
  const resolve = (address: string) => f.client.call("recipient.resolve", { address });

  test("mailbox, plus-address, catch-all, remote, unknown", async () => {
    const alice = (await f.client.call("account.get", { address: "alice@example.com" }))!;
    expect(await resolve("<Alice@Example.com>")).toEqual({
      kind: "local",
      address: "alice@example.com",
      userIds: [alice.userId],
      via: "mailbox",
    });
    expect(await resolve("bob+lists@example.com")).toMatchObject({ kind: "local", via: "plus" });
    expect(await resolve("whoever@example.com")).toMatchObject({
      kind: "local",
      via: "catchall",
      userIds: [alice.userId],
    });
    expect(await resolve("x@elsewhere.test")).toEqual({
      kind: "remote",
      address: "x@elsewhere.test",
      domain: "elsewhere.test",
    });
    expect(await resolve("nobody@example.org")).toEqual({
      kind: "unknown",
      address: "nobody@example.org",
    });
    expect(await resolve("not an address")).toMatchObject({ kind: "unknown" });
    expect(await f.client.call("domain.isLocal", { domain: "EXAMPLE.org" })).toBe(true);
  });

  test("aliases and lists expand, loops are cut, remote members are queued", async () => {
    f.store.addAlias("sales@example.org", "bob@example.com");
    f.store.addListMember("team@example.org", "alice@example.com");
    f.store.addListMember("team@example.org", "sales@example.org");
    f.store.addListMember("team@example.org", "partner@remote.test");
    f.store.addAlias("loop1@example.org", "loop2@example.org");
    f.store.addAlias("loop2@example.org", "loop1@example.org");
    expect(await resolve("sales@example.org")).toMatchObject({ kind: "local", via: "alias" });
    const team = await resolve("team@example.org");
    expect(team).toMatchObject({ kind: "local", via: "list", forward: ["partner@remote.test"] });
    expect((team as { userIds: number[] }).userIds).toHaveLength(2);
    expect(await resolve("loop1@example.org")).toMatchObject({ kind: "unknown" });

    const res = await deliver(f.client, "Subject: t\r\n\r\nhi\r\n", ["team@example.org"]);
    expect(res.delivered).toHaveLength(1);
    expect((await f.client.call("queue.list", {})).map((q) => q.recipient)).toEqual([
      "partner@remote.test",
    ]);
    expect((await f.client.call("store.stats", {})).messages).toBe(2);
  });

  test("hot reload of domains", async () => {
    expect(await resolve("a@new.test")).toMatchObject({ kind: "remote" });
    f.store.setDomains([{ name: "new.test", catchAll: null }]);
    expect(await resolve("a@new.test")).toMatchObject({ kind: "unknown" });
    expect(await resolve("alice@example.com")).toMatchObject({ kind: "remote" });
  });

  test("removing a user removes their mail and frees bodies", async () => {
    await deliver(f.client, "Subject: x\r\n\r\nbye\r\n", ["bob@example.com"]);
    f.store.removeUser("bob@example.com");
    expect(f.store.listUsers().map((u) => u.address)).toEqual(["alice@example.com"]);
    expect((await f.client.call("store.stats", {})).bodies).toBe(0);
    expect((await f.store.verify()).ok).toBe(true);
  });
});
