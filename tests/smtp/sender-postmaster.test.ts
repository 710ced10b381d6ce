// End to end over real sockets, the two review findings of issue 5: an authenticated session
// may only send as an address its account owns, whatever the connector (RFC 6409 §6.1), and
// mail to postmaster is always accepted (RFC 5321 §4.5.1).
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { RawClient } from "./raw-client.ts";
import { startServer, type TestServer } from "./server.ts";

let server: TestServer;

beforeAll(async () => {
  server = await startServer({
    domains: [{ name: "example.com" }, { name: "example.net" }],
    smtp: {
      connectors: [
        { name: "mx", port: 0, role: "mx", tls: "none", auth: "optional" },
        { name: "sub", port: 0, role: "submission", tls: "none", auth: "required" },
      ],
    },
  }, [["alice@example.com", "alice-pw"], ["bob@example.com", "bob-pw"]]);
  server.store.addAlias("sales@example.com", "alice@example.com");
  server.store.addListMember("team@example.com", "alice@example.com");
});

afterAll(async () => {
  await server.close();
});

const plain = (user: string, password: string) =>
  Buffer.from(`\0${user}\0${password}`).toString("base64");

async function session(connector: "mx" | "sub", login?: string): Promise<RawClient> {
  const c = await RawClient.open(server.ports[connector]!);
  expect(await c.reply()).toStartWith("220 ");
  expect(await c.cmd("EHLO client.test")).toStartWith("250-");
  if (login) {
    expect(await c.cmd(`AUTH PLAIN ${plain(login, `${login.split("@")[0]}-pw`)}`))
      .toStartWith("235 2.7.0");
  }
  return c;
}

/** One whole transaction; the final reply to the message. */
async function send(c: RawClient, from: string, to: string, subject: string): Promise<string> {
  expect(await c.cmd(`MAIL FROM:<${from}>`)).toStartWith("250 ");
  expect(await c.cmd(`RCPT TO:<${to}>`)).toStartWith("250 ");
  expect(await c.cmd("DATA")).toStartWith("354 ");
  return (await c.cmd(`Subject: ${subject}\r\n\r\nbody\r\n.`))!;
}

const returnPaths = async (address: string) =>
  (await server.inbox(address)).map((m) => m.toString("latin1").split("\r\n")[0]);

describe("an authenticated session sends only as its own addresses (RFC 6409 §6.1)", () => {
  test("on the MX connector: a foreign sender is refused 553 and relays nothing", async () => {
    const c = await session("mx", "alice@example.com");
    for (const forged of ["ceo@bank.example", "bob@example.com", "team@example.com"]) {
      expect(await c.cmd(`MAIL FROM:<${forged}>`)).toBe(
        "553 5.7.1 Sender address not owned by alice@example.com\r\n",
      );
      // No transaction was opened, so nothing can be relayed.
      expect(await c.cmd("RCPT TO:<victim@remote.example>")).toStartWith("503 5.5.1");
    }
    c.close();
    expect((await server.client.call("queue.list", {})).length).toBe(0);
    const refused = server.logs.filter((r) => r.event === "smtp.sender_refused");
    expect(refused.map((r) => r.sender)).toEqual(
      expect.arrayContaining(["ceo@bank.example", "bob@example.com", "team@example.com"]),
    );
  });

  test("on the MX connector: own address, plus-address, alias and <> are accepted", async () => {
    const before = (await server.inbox("bob@example.com")).length;
    const c = await session("mx", "alice@example.com");
    expect(await send(c, "alice@example.com", "bob@example.com", "own")).toStartWith("250 ");
    expect(await send(c, "alice+news@example.com", "bob@example.com", "plus")).toStartWith("250 ");
    expect(await send(c, "Sales@example.com", "bob@example.com", "alias")).toStartWith("250 ");
    expect(await send(c, "", "bob@example.com", "a read receipt")).toStartWith("250 ");
    c.close();
    expect((await returnPaths("bob@example.com")).slice(before)).toEqual([
      "Return-Path: <alice@example.com>",
      "Return-Path: <alice+news@example.com>",
      "Return-Path: <Sales@example.com>",
      "Return-Path: <>",
    ]);
  });

  test("on the submission connector: the same rule (an alias too, a stranger never)", async () => {
    const c = await session("sub", "bob@example.com");
    expect(await c.cmd("MAIL FROM:<sales@example.com>")).toStartWith("553 5.7.1");
    expect(await c.cmd("MAIL FROM:<alice@example.com>")).toStartWith("553 5.7.1");
    expect(await send(c, "bob+x@example.com", "alice@example.com", "sub")).toStartWith("250 ");
    c.close();
    const s = await session("sub", "alice@example.com");
    expect(await send(s, "sales@example.com", "bob@example.com", "sub alias")).toStartWith("250 ");
    s.close();
  });

  test("unauthenticated mail on MX is unchanged: any sender, local recipients only", async () => {
    const c = await session("mx");
    expect(await c.cmd("MAIL FROM:<ceo@bank.example>")).toStartWith("250 ");
    expect(await c.cmd("RCPT TO:<victim@remote.example>")).toBe(
      "554 5.7.1 Relay access denied\r\n",
    );
    expect(await c.cmd("RCPT TO:<alice@example.com>")).toStartWith("250 ");
    expect(await c.cmd("DATA")).toStartWith("354 ");
    expect(await c.cmd("Subject: inbound\r\n\r\nhi\r\n.")).toStartWith("250 ");
    c.close();
    expect((await returnPaths("alice@example.com")).at(-1)).toBe("Return-Path: <ceo@bank.example>");
  });
});

describe("postmaster (RFC 5321 §4.5.1)", () => {
  test("with and without a domain, any case: accepted and delivered", async () => {
    const before = (await server.inbox("alice@example.com")).length;
    const c = await session("mx");
    expect(await c.cmd("MAIL FROM:<reporter@remote.example>")).toStartWith("250 ");
    // No server.postmaster and no postmaster@ user: the domain's first user (alice) gets it.
    for (
      const to of ["Postmaster", "postmaster", "postmaster@example.com", "POSTMASTER@example.com"]
    ) {
      expect(await c.cmd(`RCPT TO:<${to}>`)).toStartWith("250 ");
    }
    // example.net has no user, and no postmaster is configured: refused as before.
    expect(await c.cmd("RCPT TO:<postmaster@example.net>")).toBe("550 5.1.1 No such user here\r\n");
    expect(await c.cmd("DATA")).toStartWith("354 ");
    expect(await c.cmd("Subject: to the postmaster\r\n\r\nhi\r\n.")).toStartWith("250 ");
    c.close();
    const got = (await server.inbox("alice@example.com")).slice(before);
    expect(got).toHaveLength(1); // one copy: all four name the same postmaster
    expect(got[0]!.toString("latin1")).toContain("Subject: to the postmaster");
    expect(server.store.domainsWithoutPostmaster()).toEqual(["example.net"]);
  });

  test("server.postmaster, applied by a live reconfigure, takes every unheld postmaster@", async () => {
    server.store.reconfigure({ ...server.storeOptions, postmaster: "bob@example.com" });
    try {
      const before = (await server.inbox("bob@example.com")).length;
      const c = await session("mx");
      expect(await send(c, "r@remote.example", "postmaster@example.net", "net")).toStartWith(
        "250 ",
      );
      expect(await send(c, "r@remote.example", "Postmaster", "bare")).toStartWith("250 ");
      c.close();
      const subjects = (await server.inbox("bob@example.com")).slice(before)
        .map((m) => /Subject: (\w+)/.exec(m.toString("latin1"))![1]);
      expect(subjects).toEqual(["net", "bare"]);
      expect(server.store.domainsWithoutPostmaster()).toEqual([]);
    } finally {
      server.store.reconfigure(server.storeOptions);
    }
  });
});
