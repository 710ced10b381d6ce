// Tests of the queue runner end to end inside the transport: an in-memory store double, scripted
// SMTP servers on 127.0.0.1, a fake DNS, and a clock the tests move.
import { afterEach, describe, expect, test } from "bun:test";
import { memoryLogger } from "../log/mod.ts";
import { Metabase, type MetabaseInput } from "../metabase/schema.ts";
import type { EngineContext } from "../protocols/engine.ts";
import { startTransport } from "./mod.ts";
import type { MxRecord } from "./routing.ts";
import { QueueRunner } from "./runner.ts";
import {
  type FakeSmtpOptions,
  type FakeSmtpServer,
  fakeSmtpServer,
  selfSignedCert,
} from "./testing/fake-smtp.ts";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { MemoryStore } from "./testing/memory-store.ts";

const dec = new TextDecoder();
const MSG =
  "From: alice@here.test\r\nSubject: test\r\nMessage-ID: <m1@here.test>\r\n\r\nHello.\r\n.dot line\r\n";
let servers: FakeSmtpServer[] = [];
let runners: { stop(): Promise<void> }[] = [];
afterEach(async () => {
  await Promise.all(runners.map((r) => r.stop()));
  servers.forEach((s) => s.stop());
  servers = [];
  runners = [];
});

function server(opts: FakeSmtpOptions = {}): FakeSmtpServer {
  const s = fakeSmtpServer(opts);
  servers.push(s);
  return s;
}

function config(port: number, extra: MetabaseInput["smtp"] = {}): Metabase {
  return Metabase.parse({
    server: { hostname: "posthorn.test" },
    smtp: {
      routes: [{ domain: "there.test", host: "127.0.0.1", port, tls: "none" }],
      ...extra,
      queue: { pollSeconds: 3600, retryBaseSeconds: 60, retryMaxSeconds: 3600, ...extra.queue },
    },
  });
}

function setup(
  mb: Metabase,
  opts: { dns?: Record<string, MxRecord[] | string>; smtpPort?: number } = {},
) {
  const clock = { now: 1_800_000_000_000 };
  const store = new MemoryStore(["here.test"], () => clock.now);
  const log = memoryLogger("t");
  const runner = new QueueRunner({
    store: store.client(),
    config: () => mb,
    log,
    now: () => clock.now,
    smtpPort: opts.smtpPort,
    dns: () => ({
      resolveMx(domain: string) {
        const r = opts.dns?.[domain] ?? "ENOTFOUND";
        if (typeof r === "string") return Promise.reject(Object.assign(new Error(r), { code: r }));
        return Promise.resolve(r);
      },
    }),
  });
  runners.push(runner);
  /** One pass over the queue, waiting for every delivery it started. */
  const pass = async () => {
    runner.kick();
    await runner.idle();
  };
  return { clock, store, log, runner, pass };
}

/** A minimal MIME reader for the reports: header fields and the parts of a multipart. */
function parseMessage(raw: string) {
  const split = raw.indexOf("\r\n\r\n");
  const head = raw.slice(0, split).replace(/\r\n[ \t]+/g, " ");
  const headers = new Map<string, string>();
  for (const line of head.split("\r\n")) {
    const c = line.indexOf(":");
    headers.set(line.slice(0, c).toLowerCase(), line.slice(c + 1).trim());
  }
  return { headers, body: raw.slice(split + 4) };
}

function parseDsn(raw: Uint8Array) {
  const msg = parseMessage(dec.decode(raw));
  const type = msg.headers.get("content-type")!;
  expect(type).toMatch(/^multipart\/report; report-type=delivery-status;/);
  const boundary = /boundary="([^"]+)"/.exec(type)![1]!;
  const chunks = msg.body.split(`--${boundary}`);
  expect(chunks.at(-1)).toBe("--\r\n"); // the close delimiter ends the report
  const parts = chunks.slice(1, -1).map((p) => parseMessage(p.replace(/^\r\n/, "")));
  const statusPart = parts[1]!;
  // Per-message fields, then one block per recipient, separated by blank lines (RFC 3464 §2.1).
  const blocks = (parts[1]!.body.trim().split("\r\n\r\n")).map((b) => {
    const m = new Map<string, string>();
    for (const l of b.replace(/\r\n[ \t]+/g, " ").split("\r\n")) {
      const c = l.indexOf(":");
      m.set(l.slice(0, c).toLowerCase(), l.slice(c + 1).trim());
    }
    return m;
  });
  return {
    headers: msg.headers,
    parts,
    statusPart,
    perMessage: blocks[0]!,
    recipients: blocks.slice(1),
  };
}

describe("queue runner", () => {
  test("due entries for one hop go out in one transaction and are marked done", async () => {
    const s = server();
    const { store, pass } = setup(config(s.port));
    const ids = store.enqueue("alice@here.test", ["bob@there.test", "carol@there.test"], MSG);
    await pass();
    expect(store.done.sort()).toEqual(ids.sort());
    expect(store.entries.size).toBe(0);
    const [m] = s.messages();
    expect(m!.rcpts).toEqual(["RCPT TO:<bob@there.test>", "RCPT TO:<carol@there.test>"]);
    expect(dec.decode(m!.data)).toBe(MSG);
  });

  test("a permanent 5xx fails the entry with a well-formed RFC 3464 bounce to the sender", async () => {
    const s = server({
      reply: (
        l,
      ) => (l.startsWith("RCPT TO:<bob@") ? "550 5.1.1 <bob@there.test>: no such user" : undefined),
    });
    const { store, pass } = setup(config(s.port));
    const [bob, carol] = store.enqueue(
      "alice@here.test",
      ["bob@there.test", "carol@there.test"],
      MSG,
      {
        envid: "env-42",
      },
    );
    store.entries.get(bob!)!.orcpt = "rfc822;Bob@There.test";
    await pass();
    expect(store.failed.map((f) => f.queueId)).toEqual([bob!]);
    expect(store.done).toEqual([carol!]);
    const inbox = store.inbox("alice@here.test");
    expect(inbox.length).toBe(1);
    expect(inbox[0]!.sender).toBe(""); // the null reverse-path: never bounced again
    const dsn = parseDsn(inbox[0]!.body);
    expect(dsn.headers.get("to")).toBe("<alice@here.test>");
    expect(dsn.headers.get("from")).toBe("Mail Delivery System <MAILER-DAEMON@posthorn.test>");
    expect(dsn.headers.get("auto-submitted")).toBe("auto-replied");
    expect(dsn.parts.map((p) => p.headers.get("content-type"))).toEqual([
      "text/plain; charset=utf-8",
      "message/delivery-status",
      "message/rfc822",
    ]);
    expect(dsn.perMessage.get("reporting-mta")).toBe("dns; posthorn.test");
    expect(dsn.perMessage.get("original-envelope-id")).toBe("env-42");
    expect(dsn.recipients.length).toBe(1);
    const r = dsn.recipients[0]!;
    expect(r.get("final-recipient")).toBe("rfc822; bob@there.test");
    expect(r.get("original-recipient")).toBe("rfc822; Bob@There.test");
    expect(r.get("action")).toBe("failed");
    expect(r.get("status")).toBe("5.1.1");
    expect(r.get("remote-mta")).toBe("dns; 127.0.0.1");
    expect(r.get("diagnostic-code")).toBe("smtp; 550 5.1.1 <bob@there.test>: no such user");
    // RET absent: the full message comes back, byte for byte.
    expect(dsn.parts[2]!.body).toBe(MSG);
  });

  test("RET=HDRS returns only the header; NOTIFY=NEVER and a null sender get no bounce", async () => {
    const s = server({ reply: (l) => (l.startsWith("RCPT") ? "550 5.7.1 refused" : undefined) });
    const { store, pass } = setup(config(s.port));
    store.enqueue("alice@here.test", ["h@there.test"], MSG, { dsnRet: "HDRS" });
    store.enqueue("quiet@here.test", ["n@there.test"], MSG, { dsnNotify: ["NEVER"] });
    store.enqueue("", ["b@there.test"], MSG); // a bounce that cannot be delivered
    await pass();
    expect(store.failed.length).toBe(3);
    expect(store.entries.size).toBe(0);
    const inbox = store.inbox("alice@here.test");
    expect(inbox.length).toBe(1);
    const dsn = parseDsn(inbox[0]!.body);
    expect(dsn.parts[2]!.headers.get("content-type")).toBe("text/rfc822-headers");
    expect(dsn.parts[2]!.body).toBe(MSG.slice(0, MSG.indexOf("\r\n\r\n") + 4));
    expect(store.inbox("quiet@here.test")).toEqual([]);
    expect(store.mailboxes.size).toBe(1);
  });

  test("entries failed at receipt are bounced at once, never attempted, one report per message", async () => {
    const s = server();
    const { store, pass } = setup(config(s.port));
    const failed = { failedStatus: "5.2.2", lastError: "mailbox is over its storage quota" };
    // Two local recipients of one message that failed while others got it, one with ORCPT.
    const [bob, carol] = store.enqueue(
      "alice@here.test",
      ["bob@here.test", "carol@here.test"],
      MSG,
      { ...failed, envid: "env-7" },
    );
    store.entries.get(bob!)!.orcpt = "rfc822;Bob@Here.test";
    // NOTIFY=NEVER and a null sender: failed silently, no report (RFC 3461 §4.1, RFC 5321 §4.5.5).
    const [never] = store.enqueue("dave@here.test", ["erin@here.test"], MSG, {
      ...failed,
      dsnNotify: ["NEVER"],
    });
    const [nullSender] = store.enqueue("", ["frank@here.test"], MSG, failed);
    await pass();
    expect(s.messages()).toEqual([]); // no delivery attempted anywhere
    expect(store.failed.map((f) => f.queueId).sort()).toEqual(
      [bob!, carol!, never!, nullSender!].sort(),
    );
    expect(store.entries.size).toBe(0);
    expect(store.inbox("dave@here.test")).toEqual([]);
    const inbox = store.inbox("alice@here.test");
    expect(inbox.length).toBe(1);
    expect(inbox[0]!.sender).toBe("");
    const dsn = parseDsn(inbox[0]!.body);
    expect(dsn.perMessage.get("original-envelope-id")).toBe("env-7");
    expect(dsn.recipients.map((r) => r.get("final-recipient"))).toEqual([
      "rfc822; bob@here.test",
      "rfc822; carol@here.test",
    ]);
    const r = dsn.recipients[0]!;
    expect(r.get("original-recipient")).toBe("rfc822; Bob@Here.test");
    expect(r.get("action")).toBe("failed");
    expect(r.get("status")).toBe("5.2.2");
    expect(r.get("remote-mta")).toBeUndefined();
    expect(r.get("diagnostic-code")).toBe("x-posthorn; mailbox is over its storage quota");
    expect(dsn.parts[2]!.body).toBe(MSG);
    expect(store.mailboxes.size).toBe(1);
  });

  test("a 4xx defers with exponential back-off; the next attempt waits twice as long", async () => {
    const s = server({ reply: (l) => (l.startsWith("RCPT") ? "451 4.3.0 try later" : undefined) });
    const { store, pass, clock } = setup(config(s.port));
    const [id] = store.enqueue("alice@here.test", ["bob@there.test"], MSG);
    const t0 = clock.now;
    await pass();
    expect(store.defers).toEqual([{
      queueId: id!,
      error: "451 4.3.0 try later",
      nextAttemptAt: t0 + 60_000,
    }]);
    await pass(); // not due yet: nothing happens
    expect(store.defers.length).toBe(1);
    clock.now = t0 + 60_000;
    await pass();
    expect(store.defers[1]!.nextAttemptAt).toBe(clock.now + 120_000);
    expect(store.entries.get(id!)!.attempts).toBe(2);
    expect(store.mailboxes.size).toBe(0);
  });

  test("one delay notice after delayNoticeHours, then a 5.4.7 bounce past the lifetime", async () => {
    const s = server({ greeting: "421 4.3.2 not now" });
    const mb = config(s.port, { queue: { delayNoticeHours: 1, lifetimeHours: 3 } });
    const { store, pass, clock } = setup(mb);
    const [id] = store.enqueue("alice@here.test", ["bob@there.test"], MSG);
    const t0 = clock.now;
    clock.now = t0 + 3_600_000;
    await pass();
    expect(store.entries.get(id!)!.delayNotified).toBe(true);
    let inbox = store.inbox("alice@here.test");
    expect(inbox.length).toBe(1);
    const delay = parseDsn(inbox[0]!.body);
    expect(delay.recipients[0]!.get("action")).toBe("delayed");
    expect(delay.recipients[0]!.get("status")).toMatch(/^4\./);
    expect(delay.recipients[0]!.get("will-retry-until")).toContain("2027"); // t0 + 3h, in 2027
    expect(delay.parts[2]!.headers.get("content-type")).toBe("text/rfc822-headers");

    clock.now = t0 + 2 * 3_600_000;
    await pass();
    expect(store.inbox("alice@here.test").length).toBe(1); // no second notice
    expect(store.entries.has(id!)).toBe(true);

    clock.now = t0 + 3 * 3_600_000;
    await pass();
    expect(store.entries.has(id!)).toBe(false);
    inbox = store.inbox("alice@here.test");
    expect(inbox.length).toBe(2);
    const bounce = parseDsn(inbox[1]!.body);
    expect(bounce.recipients[0]!.get("action")).toBe("failed");
    expect(bounce.recipients[0]!.get("status")).toBe("5.4.7");
    expect(bounce.recipients[0]!.get("diagnostic-code")).toContain("421 4.3.2 not now");
  });

  test("every MX is tried in preference order before deferring", async () => {
    const good = server();
    const busy = server({ hostname: "127.0.0.2", port: good.port, greeting: "421 4.3.2 busy" });
    const dns = {
      "mx.test": [
        { exchange: "127.0.0.1", priority: 30 },
        { exchange: "127.0.0.2", priority: 10 },
        { exchange: "127.0.0.3", priority: 20 }, // nothing listens there
      ],
      "down.test": [{ exchange: "127.0.0.2", priority: 10 }, {
        exchange: "127.0.0.3",
        priority: 20,
      }],
    };
    const { store, pass, log } = setup(config(good.port, { routes: [] }), {
      dns,
      smtpPort: good.port,
    });
    const [ok] = store.enqueue("alice@here.test", ["x@mx.test"], MSG);
    const [down] = store.enqueue("alice@here.test", ["y@down.test"], MSG);
    await pass();
    expect(store.done).toEqual([ok!]);
    expect(busy.sessions.length).toBe(2);
    expect(good.messages().length).toBe(1);
    const tried = log.records.filter((r) => r.event === "host_failed").map((r) =>
      `${r.hop}:${r.host}`
    );
    expect(tried.sort()).toEqual([
      "down.test:127.0.0.2",
      "down.test:127.0.0.3",
      "mx.test:127.0.0.2",
      "mx.test:127.0.0.3",
    ]);
    expect(store.defers.map((d) => d.queueId)).toEqual([down!]);
  });

  test("a null MX fails at once with 5.1.10; a failed lookup defers", async () => {
    const { store, pass } = setup(config(1, { routes: [] }), {
      dns: { "nomail.test": [{ exchange: ".", priority: 0 }] },
    });
    const [nul] = store.enqueue("alice@here.test", ["x@nomail.test"], MSG);
    const [unk] = store.enqueue("alice@here.test", ["x@unknown.test"], MSG);
    await pass();
    expect(store.failed.map((f) => f.queueId)).toEqual([nul!]);
    expect(store.defers.map((d) => d.queueId)).toEqual([unk!]);
    const dsn = parseDsn(store.inbox("alice@here.test")[0]!.body);
    expect(dsn.recipients[0]!.get("status")).toBe("5.1.10");
  });

  test("a domain that does not exist (NXDOMAIN) bounces with 5.1.2 once it has lasted", async () => {
    const { store, pass, clock } = setup(
      config(1, { routes: [], queue: { unknownDomainMinutes: 30 } }),
      {
        dns: { "flaky.test": "ESERVFAIL" },
      },
    );
    const t0 = clock.now;
    const [typo] = store.enqueue("alice@here.test", ["x@exmaple.test"], MSG);
    const [flaky] = store.enqueue("alice@here.test", ["x@flaky.test"], MSG);
    await pass();
    // Young: retried, since a resolver cut off for a while says the same of every name.
    expect(store.failed).toEqual([]);
    expect(store.defers.map((d) => d.queueId).sort()).toEqual([typo!, flaky!].sort());
    clock.now = t0 + 31 * 60_000;
    await pass();
    expect(store.failed.map((f) => f.queueId)).toEqual([typo!]); // a server failure still waits
    const dsn = parseDsn(store.inbox("alice@here.test")[0]!.body);
    expect(dsn.recipients[0]!.get("status")).toBe("5.1.2");
    expect(dsn.recipients[0]!.get("diagnostic-code")).toContain("exmaple.test does not exist");
  });

  test("NXDOMAIN bounces only once DNS has said so for unknownDomainMinutes, however old the mail", async () => {
    const dns: Record<string, string> = { "late.test": "ESERVFAIL" };
    const { store, pass, clock } = setup(
      config(1, { routes: [], queue: { unknownDomainMinutes: 30 } }),
      { dns },
    );
    const t0 = clock.now;
    const [old] = store.enqueue("alice@here.test", ["x@late.test"], MSG);
    await pass();
    // Two hours of another failure, then the resolver says NXDOMAIN for the first time (a
    // resolver cut off for a minute): the mail is old, but the answer is new, so it waits.
    clock.now = t0 + 120 * 60_000;
    dns["late.test"] = "ENOTFOUND";
    await pass();
    expect(store.failed).toEqual([]);
    expect(store.defers.filter((d) => d.queueId === old).length).toBe(2);
    // Still NXDOMAIN past the grace: now it bounces.
    clock.now = t0 + 151 * 60_000;
    await pass();
    expect(store.failed.map((f) => f.queueId)).toEqual([old!]);
    const dsn = parseDsn(store.inbox("alice@here.test")[0]!.body);
    expect(dsn.recipients[0]!.get("status")).toBe("5.1.2");
  });

  test("a bounce the store cannot take keeps the entry (deferred), so nothing is lost", async () => {
    const s = server({ reply: (l) => (l.startsWith("RCPT") ? "550 5.1.1 gone" : undefined) });
    const { store, pass } = setup(config(s.port));
    const [id] = store.enqueue("alice@here.test", ["bob@there.test"], MSG);
    store.failing.add("queue.report");
    await pass();
    expect(store.failed).toEqual([]);
    expect(store.entries.get(id!)!.attempts).toBe(1);
    expect(store.defers[0]!.error).toContain("550 5.1.1 gone");
  });

  test("startTransport wakes on the store's queue topic and stops cleanly", async () => {
    const s = server();
    const store = new MemoryStore(["here.test"]);
    const mb = config(s.port);
    const ctx: EngineContext = {
      config: () => mb,
      tls: () => ({ cert: "", key: "" }),
      store: store.client(),
      log: memoryLogger("t"),
      workerIndex: 0,
    };
    const transport = await startTransport(ctx);
    runners.push(transport);
    store.enqueue("alice@here.test", ["bob@there.test"], MSG); // publishes on "queue"
    for (let i = 0; i < 400 && store.done.length === 0; i++) await Bun.sleep(10);
    expect(store.done.length).toBe(1);
    expect(s.messages().length).toBe(1);
    await transport.stop();
  });
});

describe("queue runner limits and shutdown", () => {
  test("at most smtp.queue.concurrency hops are delivered at once", async () => {
    let open = 0;
    let most = 0;
    const s = server({
      reply: (l) => {
        if (l === "<GREETING>") most = Math.max(most, ++open);
        if (l === "QUIT") open--;
        return undefined;
      },
    });
    const hops = ["one.test", "two.test", "three.test"];
    const mb = config(s.port, {
      routes: hops.map((domain) => ({
        domain,
        host: "127.0.0.1",
        port: s.port,
        tls: "none" as const,
      })),
      queue: { concurrency: 1 },
    });
    const { store, pass } = setup(mb);
    for (const h of hops) store.enqueue("alice@here.test", [`x@${h}`], MSG);
    await pass();
    // Every hop was served, one connection at a time: each end of a delivery takes the next.
    expect(store.done.length).toBe(3);
    expect(s.sessions.length).toBe(3);
    expect(most).toBe(1);
  });

  test("NOTIFY=SUCCESS through a server without DSN sends a 'relayed' report", async () => {
    const s = server();
    const { store, pass } = setup(config(s.port));
    store.enqueue("alice@here.test", ["bob@there.test"], MSG, { dsnNotify: ["SUCCESS"] });
    await pass();
    expect(store.done.length).toBe(1);
    const dsn = parseDsn(store.inbox("alice@here.test")[0]!.body);
    expect(dsn.recipients[0]!.get("action")).toBe("relayed");
    expect(dsn.recipients[0]!.get("status")).toBe("2.0.0");
  });

  test("stop() drops a delivery in progress and leaves its entry due and untouched", async () => {
    const s = server({ reply: (l) => (l === "<DATA>" ? "hang" : undefined) });
    const { store, runner } = setup(config(s.port));
    const [id] = store.enqueue("alice@here.test", ["bob@there.test"], MSG);
    runner.kick();
    for (let i = 0; i < 500 && s.sessions[0]?.commands.includes("DATA") !== true; i++) {
      await Bun.sleep(5);
    }
    await runner.stop();
    const e = store.entries.get(id!)!;
    expect(e.attempts).toBe(0);
    expect(store.defers).toEqual([]);
    expect(store.done).toEqual([]);
  });
});

describe("queue runner via the smarthost", () => {
  test("implicit TLS and AUTH with the password from smarthost.passwordFile", async () => {
    const dir = mkdtempSync(`${tmpdir()}/posthorn-smarthost-`);
    try {
      const pem = selfSignedCert(dir);
      writeFileSync(`${dir}/pw`, "hunter2\n");
      const s = server({
        tls: pem,
        implicitTls: true,
        extensions: ["AUTH PLAIN LOGIN", "PIPELINING"],
      });
      const mb = config(s.port, {
        routes: [],
        smarthost: {
          host: "127.0.0.1",
          port: s.port,
          tls: "implicit",
          username: "relay@here.test",
          passwordFile: `${dir}/pw`,
        },
      });
      const { store, pass } = setup(mb);
      store.enqueue("alice@here.test", ["x@anywhere.test"], MSG);
      await pass();
      expect(store.done.length).toBe(1);
      const session = s.sessions[0]!;
      expect(session.tls).toBe(true);
      const auth = session.commands.find((c) => c.startsWith("AUTH PLAIN "))!;
      expect(Buffer.from(auth.slice(11), "base64").toString()).toBe("\0relay@here.test\0hunter2");
      expect(dec.decode(s.messages()[0]!.data)).toBe(MSG);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe("queue runner and a failing store", () => {
  test("a store that cannot record outcomes is not hammered: no immediate re-delivery", async () => {
    const s = server();
    const { store, pass } = setup(config(s.port));
    store.enqueue("alice@here.test", ["bob@there.test"], MSG);
    store.failing.add("queue.settle");
    await pass();
    await pass(); // the entry is still due, but only the poll timer may take it again
    expect(s.messages().length).toBe(2);
    expect(store.entries.size).toBe(1);
  });
});

describe("queue runner bookkeeping is atomic and per transaction", () => {
  test("a bounce is committed with its entry: failing plain updates cannot repeat it", async () => {
    const s = server({ reply: (l) => (l.startsWith("RCPT") ? "550 5.1.1 gone" : undefined) });
    const { store, pass, clock } = setup(config(s.port));
    const [id] = store.enqueue("alice@here.test", ["bob@there.test"], MSG);
    // Before: the bounce was committed, then queue.fail failed and the entry stayed due, so
    // the next pass bounced it again. Now no plain update takes part in a bounce.
    store.failing.add("queue.settle");
    store.failing.add("queue.fail");
    store.failing.add("queue.defer");
    await pass();
    clock.now += 3_600_000;
    await pass();
    expect(store.entries.has(id!)).toBe(false);
    expect(store.failed.map((f) => f.queueId)).toEqual([id!]);
    expect(store.inbox("alice@here.test").length).toBe(1);
    expect(store.reports).toBe(1);
    expect(s.sessions.length).toBe(1); // the entry was gone: nothing to try on the second pass
  });

  test("a report the store cannot take changes nothing; the next pass sends exactly one", async () => {
    const s = server({ reply: (l) => (l.startsWith("RCPT") ? "550 5.1.1 gone" : undefined) });
    const { store, pass, clock } = setup(config(s.port));
    const [id] = store.enqueue("alice@here.test", ["bob@there.test"], MSG);
    store.failing.add("queue.report");
    await pass();
    expect(store.inbox("alice@here.test")).toEqual([]);
    expect(store.entries.get(id!)!.attempts).toBe(1); // kept, deferred: the failure is not lost
    store.failing.clear();
    clock.now = store.entries.get(id!)!.nextAttemptAt;
    await pass();
    await pass();
    expect(store.entries.has(id!)).toBe(false);
    expect(store.inbox("alice@here.test").length).toBe(1);
    expect(store.reports).toBe(1);
  });

  test("a delay notice and its mark are one update: at most one notice, even if settling fails", async () => {
    const s = server({ greeting: "421 4.3.2 not now" });
    const mb = config(s.port, { queue: { delayNoticeHours: 1, lifetimeHours: 10 } });
    const { store, pass, clock } = setup(mb);
    const [id] = store.enqueue("alice@here.test", ["bob@there.test"], MSG);
    store.failing.add("queue.settle");
    store.failing.add("queue.delayNotified");
    clock.now += 3_600_000;
    await pass();
    const e = store.entries.get(id!)!;
    expect(e.delayNotified).toBe(true);
    expect(e.attempts).toBe(1); // deferred by the same update that records the notice
    clock.now = e.nextAttemptAt;
    await pass();
    expect(store.inbox("alice@here.test").length).toBe(1);
    expect(store.reports).toBe(1);
  });

  test("three transactions, the connection drops after the second 250: two done, one deferred", async () => {
    const doneAtMail: number[][] = [];
    let mails = 0;
    const s = server({
      reply: (l) => {
        if (!l.startsWith("MAIL FROM")) return undefined;
        // What the store holds when each transaction starts: the ones before are recorded.
        doneAtMail.push([...store.done]);
        return ++mails === 3 ? "close" : undefined;
      },
    });
    const { store, pass } = setup(config(s.port, { queue: { connectionsPerHop: 1 } }));
    // Three messages (three bodies) for one hop, one connection allowed: three transactions
    // on one connection.
    const [first] = store.enqueue("alice@here.test", ["a@there.test"], MSG);
    const [second] = store.enqueue("alice@here.test", ["b@there.test"], MSG + "2\r\n");
    const [third] = store.enqueue("alice@here.test", ["c@there.test"], MSG + "3\r\n");
    await pass();
    expect(s.sessions.length).toBe(1);
    expect(doneAtMail).toEqual([[], [first!], [first!, second!]]);
    expect(store.done).toEqual([first!, second!]);
    expect(store.defers.map((d) => d.queueId)).toEqual([third!]);
    expect(store.defers[0]!.error).not.toBe("");
    expect(store.entries.get(third!)!.attempts).toBe(1);
  });

  test("a transaction's bounce is in the sender's mailbox before the next transaction starts", async () => {
    const inboxAtMail: number[] = [];
    const s = server({
      reply: (l) => {
        if (l.startsWith("MAIL FROM")) inboxAtMail.push(store.inbox("alice@here.test").length);
        return l.startsWith("RCPT TO:<a@") ? "550 5.1.1 no such user" : undefined;
      },
    });
    const { store, pass } = setup(config(s.port, { queue: { connectionsPerHop: 1 } }));
    const [first] = store.enqueue("alice@here.test", ["a@there.test"], MSG);
    const [second] = store.enqueue("alice@here.test", ["b@there.test"], MSG + "2\r\n");
    await pass();
    expect(inboxAtMail).toEqual([0, 1]);
    expect(store.failed.map((f) => f.queueId)).toEqual([first!]);
    expect(store.done).toEqual([second!]);
  });

  test("one hop's transactions share up to connectionsPerHop connections", async () => {
    const s = server();
    const { store, pass } = setup(config(s.port, { queue: { connectionsPerHop: 3 } }));
    const ids = Array.from(
      { length: 7 },
      (_, i) => store.enqueue("alice@here.test", [`r${i}@there.test`], MSG + `${i}\r\n`)[0]!,
    );
    await pass();
    // Seven messages (seven transactions) dealt over three connections, none lost or doubled.
    expect(s.sessions.length).toBe(3);
    expect(s.messages().length).toBe(7);
    expect([...store.done].sort((a, b) => a - b)).toEqual(ids);
    expect(store.entries.size).toBe(0);
  });

  test("when the store cannot record a transaction, the rest of the hop is not sent", async () => {
    const s = server();
    const { store, pass } = setup(config(s.port, { queue: { connectionsPerHop: 1 } }));
    store.enqueue("alice@here.test", ["a@there.test"], MSG);
    store.enqueue("alice@here.test", ["b@there.test"], MSG + "2\r\n");
    store.failing.add("queue.settle");
    await pass();
    // Only the first went out: sending more would only widen what a retry repeats.
    expect(s.messages().length).toBe(1);
    expect(store.entries.size).toBe(2);
    expect([...store.entries.values()].every((e) => e.attempts === 0)).toBe(true);
  });
});
